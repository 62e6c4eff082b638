"""Segmentation inference on images and videos: label PNGs (class indices), colour overlays, a JSON index."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ...files import normalize_image, write_image
from ...models import get_preset
from ..base import Predictor, Stored, checkpoint_settings, make_palette
from .datasets import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from .tta import predict_logits


class SegPredictor(Predictor):
    """A segmentation model with its test-time settings: ``predictor(image_rgb)`` -> (H, W) labels."""

    results_file = "segmentation.json"
    picture = "overlay"

    def __init__(self, model: nn.Module, num_classes: int, class_names: Sequence[str], *, align_corners: bool,
                 mode: str = "whole",
                 crop_size: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
                 scales: Sequence[float] = (1.0,), flip: bool = False, device: str = "cpu") -> None:
        super().__init__(model, device)
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.palette = make_palette(num_classes, CITYSCAPES_PALETTE)
        self.settings = dict(mode=mode, crop_size=crop_size, stride=stride, scales=tuple(scales), flip=flip,
                             align_corners=align_corners)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument("--mode", choices=["whole", "slide"], default="whole", help="inference mode")
        group.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="sliding-window size")
        group.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="sliding-window stride")
        group.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales")
        group.add_argument("--flip", action="store_true", help="flip test")

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> SegPredictor:
        return cls.from_checkpoint(
            args.weights, model=args.model, num_classes=args.num_classes, mode=args.mode,
            crop_size=tuple(args.crop) if args.crop else None, stride=tuple(args.stride) if args.stride else None,
            scales=tuple(args.scales), flip=args.flip, device=args.device, stored=stored)

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None, num_classes: int | None = None,
                        stored: Stored | None = None, **settings: Any) -> SegPredictor:
        """Our Lightning checkpoints carry the preset and classes; official files need ``model``
        (and ``num_classes`` when not 19). An ``.onnx`` file (``hrnet export onnx``) runs in onnxruntime, an
        ``.xml`` file (``hrnet export openvino``) in OpenVINO. ``stored``: what :func:`checkpoint_settings` already
        read of ``weights``."""
        exported, hparams = stored or checkpoint_settings(weights)
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. seg_hrnet_w48)")
        k = num_classes or hparams.get("num_classes", 19)
        names = hparams.get("class_names") or (CITYSCAPES_CLASSES if k == 19 else [f"class_{i}" for i in range(k)])
        net = cls.network(weights, name, exported, num_classes=k)
        return cls(net, k, names, align_corners=bool(get_preset(name).spec.align_corners), **settings)

    @staticmethod
    def head_args(hparams: dict[str, Any]) -> dict[str, Any]:
        """The head arguments a checkpoint's hyper-parameters imply (its class count)."""
        return {"num_classes": int(hparams["num_classes"])} if "num_classes" in hparams else {}

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(normalize_image(image))[None].to(self.device)
        logits = predict_logits(self.model, x, num_classes=self.num_classes, **self.settings)
        # the class axis made innermost first: argmax over it is then 3x as fast on the CPU (same values)
        return logits.contiguous(memory_format=torch.channels_last).argmax(1)[0].to(torch.uint8).cpu().numpy()

    def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """``image`` blended with the label colours (uint8 arithmetic, rounded: a tenth of float64's time)."""
        return cv2.addWeighted(image, 1 - alpha, self.palette[labels], alpha, 0.0)

    def draw(self, image: np.ndarray, result: np.ndarray) -> np.ndarray:
        return self.overlay(image, result)

    def record(self, result: np.ndarray, out: Path, stem: str) -> dict[str, Any]:
        """Writes ``<stem>_labels.png`` (class index per pixel); the record names it and gives class fractions."""
        write_image(out / f"{stem}_labels.png", result, rgb=False)
        counts = np.bincount(result.reshape(-1), minlength=self.num_classes)
        return {"labels": f"{stem}_labels.png",
                "class_fractions": {self.class_names[c]: round(float(n) / result.size, 4)
                                    for c, n in enumerate(counts) if n}}

    def header(self) -> dict[str, Any]:
        return {"classes": self.class_names}
