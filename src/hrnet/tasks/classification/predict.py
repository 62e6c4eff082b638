"""Classification of a user's photos: the preset's evaluation transform (timm's and the official: resize the short
side to size / crop_pct, center crop, ImageNet mean/std), the network, the top-5 classes; JSON and pictures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ..base import Predictor, Stored, checkpoint_settings
from .transforms import data_config, eval_transform


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (shipped with torchvision)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


class ClassificationPredictor(Predictor):
    """``predictor(image_rgb)`` -> the ``top_k`` classes ``[{label, name, probability}]``, best first."""

    results_file = "classes.json"
    picture = "classes"

    def __init__(self, model: nn.Module, class_names: list[str], preset: str, device: str = "cpu",
                 top_k: int = 5) -> None:
        super().__init__(model, device)
        self.class_names, self.top_k = class_names, top_k
        self.transform = eval_transform(data_config(preset))

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> ClassificationPredictor:
        return cls.from_checkpoint(args.weights, model=args.model, num_classes=args.num_classes, device=args.device,
                                   top_k=args.top_k, stored=stored)

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None, num_classes: int | None = None,
                        device: str = "cpu", top_k: int = 5, stored: Stored | None = None) -> ClassificationPredictor:
        """Our checkpoints carry the model, classes and class names; official / timm files (``hrnet_w18_small_v1.pth``)
        need ``model`` and are ImageNet's 1000 classes unless ``num_classes`` says otherwise."""
        exported, hparams = stored or checkpoint_settings(weights)
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. hrnet_w18)")
        k = num_classes or hparams.get("num_classes", 1000)
        names = hparams.get("class_names") or (imagenet_class_names() if k == 1000 else [str(c) for c in range(k)])
        if len(names) != k:
            raise ValueError(f"{weights}: {len(names)} class names for {k} classes")
        return cls(cls.network(weights, name, exported, num_classes=k), list(names), name, device, top_k)

    @staticmethod
    def head_args(hparams: dict[str, Any]) -> dict[str, Any]:
        """The head arguments a checkpoint's hyper-parameters imply (its class count)."""
        return {"num_classes": hparams["num_classes"]} if "num_classes" in hparams else {}

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> list[dict[str, Any]]:
        """RGB uint8 (H, W, 3) -> the ``top_k`` most probable classes, best first."""
        x = self.transform(image)[None].to(self.device)
        probabilities = torch.softmax(self.model(x).float(), dim=1)[0]
        values, labels = probabilities.topk(min(self.top_k, probabilities.numel()))
        return [{"label": int(c), "name": self.class_names[int(c)], "probability": float(p)}
                for p, c in zip(values.tolist(), labels.tolist())]

    def draw(self, image: np.ndarray, result: list[dict[str, Any]]) -> np.ndarray:
        drawn = image.copy()
        scale = max(0.4, min(image.shape[:2]) / 500)
        for row, c in enumerate(result[:3]):
            y = int((row + 1) * 24 * scale)
            text = f"{c['name']} {c['probability']:.2f}"
            cv2.putText(drawn, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(drawn, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return drawn

    def record(self, result: list[dict[str, Any]], out: Path, stem: str) -> dict[str, Any]:
        print(f"{stem}: " + ", ".join(f"{c['name']} {c['probability']:.3f}" for c in result))
        return {"classes": [{**c, "probability": round(c["probability"], 5)} for c in result]}

    def header(self) -> dict[str, Any]:
        return {"num_classes": len(self.class_names)}
