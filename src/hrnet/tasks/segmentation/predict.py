"""Segmentation inference on images: label PNGs (class indices) and colour overlays."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ...export import load_exported
from ...files import iter_inputs, normalize_image, read_image, write_atomic
from ...models import create_model, get_preset
from ..base import read_hparams
from .datasets import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from .tta import predict_logits


def make_palette(num_classes: int) -> np.ndarray:
    """Cityscapes' colours for its 19 classes, otherwise well-separated generated colours."""
    if num_classes == len(CITYSCAPES_CLASSES):
        return np.asarray(CITYSCAPES_PALETTE, dtype=np.uint8)
    hues = (np.arange(num_classes) * 0.618034) % 1.0
    hsv = np.stack([hues * 179, np.full(num_classes, 200), np.full(num_classes, 230)], axis=1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


class SegPredictor:
    """A segmentation model with its test-time settings: ``predictor(image_rgb)`` -> (H, W) labels."""

    def __init__(self, model: nn.Module, num_classes: int, class_names: Sequence[str], *, align_corners: bool,
                 mode: str = "whole",
                 crop_size: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
                 scales: Sequence[float] = (1.0,), flip: bool = False, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.palette = make_palette(num_classes)
        self.settings = dict(mode=mode, crop_size=crop_size, stride=stride, scales=tuple(scales), flip=flip,
                             align_corners=align_corners)
        self.device = device

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None, num_classes: int | None = None,
                        **settings: Any) -> "SegPredictor":
        """Our Lightning checkpoints carry the preset and classes; official files need ``model``
        (and ``num_classes`` when not 19). An ``.onnx`` file (``hrnet export onnx``) runs in onnxruntime, an
        ``.xml`` file (``hrnet export openvino``) in OpenVINO."""
        exported = load_exported(weights)
        hparams = read_hparams(weights) if exported is None else {"model": exported.preset, **exported.settings}
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. seg_hrnet_w48)")
        k = num_classes or hparams.get("num_classes", 19)
        names = hparams.get("class_names") or (CITYSCAPES_CLASSES if k == 19 else [f"class_{i}" for i in range(k)])
        net = exported if exported is not None else create_model(name, weights=weights, num_classes=k)
        return cls(net, k, names, align_corners=bool(get_preset(name).spec.align_corners), **settings)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(normalize_image(image))[None].to(self.device)
        logits = predict_logits(self.model, x, num_classes=self.num_classes, **self.settings)
        return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()

    def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        return (image * (1 - alpha) + self.palette[labels] * alpha).astype(np.uint8)


def run_seg_prediction(source: Path, out: Path, predictor: SegPredictor) -> Path:
    """Label PNG (``<stem>_labels.png``, class index per pixel) and overlay per image; a JSON index."""
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for path in iter_inputs(source):
        image = read_image(str(path))
        labels = predictor(image)
        cv2.imwrite(str(out / f"{path.stem}_labels.png"), labels)
        cv2.imwrite(str(out / f"{path.stem}_overlay.jpg"), cv2.cvtColor(predictor.overlay(image, labels),
                                                                        cv2.COLOR_RGB2BGR))
        counts = np.bincount(labels.reshape(-1), minlength=predictor.num_classes)
        index.append({"file": path.name, "labels": f"{path.stem}_labels.png",
                      "class_fractions": {predictor.class_names[c]: round(float(n) / labels.size, 4)
                                          for c, n in enumerate(counts) if n}})
    target = out / "segmentation.json"
    write_atomic(target, json.dumps({"classes": predictor.class_names, "images": index}))
    return target
