"""Detection inference on images and videos: COCO-format detections (boxes, labels, scores, mask RLEs) and
pictures with boxes, labels and masks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ..base import Predictor, Stored, load_detector, make_palette


class DetectionPredictor(Predictor):
    """A detector: ``predictor(image_rgb)`` -> ``{boxes (N, 4) x1 y1 x2 y2, scores, labels (1..K), masks?}``
    as numpy, detections under ``score_threshold`` dropped."""

    results_file = "detections.json"
    picture = "detections"

    def __init__(self, model: nn.Module, class_names: Sequence[str], *, score_threshold: float = 0.3,
                 device: str = "cpu") -> None:
        super().__init__(model, device)
        self.class_names = list(class_names)
        self.score_threshold = score_threshold
        self.palette = make_palette(len(class_names) + 1)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument("--score-threshold", type=float, default=0.3, help="keep detections scoring at least this")

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> DetectionPredictor:
        return cls.from_checkpoint(args.weights, model=args.model, num_classes=args.num_classes,
                                   score_threshold=args.score_threshold, device=args.device, stored=stored)

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None, num_classes: int | None = None,
                        stored: Stored | None = None, **settings: Any) -> DetectionPredictor:
        """Our Lightning checkpoints carry the preset, class count and names; other files need ``model``
        (:func:`hrnet.tasks.base.load_detector`)."""
        net, names = load_detector(weights, model, num_classes, stored)
        return cls(net, names, **settings)

    def accelerate(self, precision: str = "fp32", compile: bool = False, backend: str = "torch",
                   calibration_batches: int = 8, cache: str | Path | bool = True) -> None:
        """``hrnet.inference.prepare`` on the backbone and neck (BN folded, channels-last, bf16 where native,
        ``torch.compile``); the RPN and RoI heads stay fp32 eager. int8 and OpenVINO (and so ``cache``) are not
        offered for detectors."""
        from ...inference import prepare

        if precision == "int8" or backend != "torch":
            raise ValueError("detectors run with --backend torch and --precision fp32 or bf16")
        if precision != "fp32" or compile:
            self.model.backbone = prepare(self.model.backbone, precision, compile=compile or None)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).to(self.device)
        det = self.model([x])[0]
        keep = det["scores"] >= self.score_threshold
        return {k: v[keep].float().cpu().numpy() for k, v in det.items()}

    def draw(self, image: np.ndarray, result: dict[str, np.ndarray]) -> np.ndarray:
        out = image.copy()
        for i, (box, label, score) in enumerate(zip(result["boxes"], result["labels"], result["scores"])):
            colour = tuple(int(c) for c in self.palette[int(label)])
            if "masks" in result:
                on = result["masks"][i, 0] >= 0.5
                out[on] = (out[on] * 0.5 + np.asarray(colour) * 0.5).astype(np.uint8)
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(out, f"{self.class_names[int(label) - 1]} {score:.2f}", (x1, max(y1 - 3, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        return out

    def record(self, result: dict[str, np.ndarray], out: Path, stem: str) -> dict[str, Any]:
        """Detections of one image in COCO's result style (``bbox`` x, y, w, h; mask RLEs)."""
        from pycocotools import mask as mask_utils

        detections = []
        for i, (box, label, score) in enumerate(zip(result["boxes"], result["labels"], result["scores"])):
            x1, y1, x2, y2 = (round(float(v), 2) for v in box)
            detection = {"label": self.class_names[int(label) - 1], "label_index": int(label),
                         "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(float(score), 4)}
            if "masks" in result:
                rle = mask_utils.encode(np.asfortranarray((result["masks"][i, 0] >= 0.5).astype(np.uint8)))
                detection["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            detections.append(detection)
        return {"detections": detections}

    def header(self) -> dict[str, Any]:
        return {"classes": self.class_names}
