"""Semantic segmentation with HRNetV2 (paper Sec. 6) and HRNet-OCR: training with (OHEM)
cross-entropy and poly SGD, whole/sliding/multi-scale/flip evaluation, confusion-matrix metrics
reduced across DDP ranks, as a LightningModule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from ...models import OCRHead
from ..base import EvaluationHooks, build_task_model, loss_precision
from .datasets import (
    CITYSCAPES_CLASSES,
)
from .losses import CITYSCAPES_CLASS_WEIGHTS, CrossEntropy, OhemCrossEntropy
from .metrics import ConfusionMatrix
from .tta import predict_logits


class Segmentation(EvaluationHooks, L.LightningModule):
    """HRNetV2 / HRNet-OCR semantic segmentation.

    Args:
        model: a segmentation preset (``seg_hrnet_w48``, ``seg_hrnet_w48_ocr``, ``seg_hrnet_w18_small_v1`` ...).
        num_classes: output classes (Cityscapes 19, LIP 20, PASCAL-Context 59).
        class_names: names for the per-class IoU logs (default: Cityscapes' when 19 classes).
        pretrained: ImageNet classification checkpoint for the backbone (loaded ``strict=False``).
        loss: ``ce`` or ``ohem`` (official OCR Cityscapes: OHEM, threshold 0.9, min kept 131072).
        class_weights: ``cityscapes`` (the official weights), a list, or ``None``.
        aux_weights: loss weights of ``[aux, ocr]`` for OCR models (official 0.4, 1).
        optimizer, lr, momentum, weight_decay, poly_power: ``sgd`` (official: lr 0.01, momentum 0.9,
            weight decay 5e-4) or ``adamw``, with poly decay (power 0.9) per iteration.
        eval_mode, eval_crop, eval_stride, eval_scales, eval_flip, eval_window, eval_base_size: validation
            inference (whole image or sliding window - ``pad`` as the official base code, ``clamp`` as
            its Cityscapes override; multi-scale; flip); see :func:`hrnet.tasks.segmentation.tta.predict_logits`.
        nonfinite: what a NaN/inf training loss does: ``stop`` (a one-line error naming the step and the last
            checkpoint) or ``skip`` (the batch, with a warning).
    """

    def __init__(
        self,
        model: str = "seg_hrnet_w48",
        num_classes: int = 19,
        class_names: Sequence[str] | None = None,
        pretrained: str | None = None,
        loss: str = "ce",
        ohem_thresh: float = 0.9,
        ohem_min_kept: int = 131072,
        class_weights: str | list[float] | None = "cityscapes",
        aux_weights: tuple[float, ...] = (0.4, 1.0),
        ignore_index: int = 255,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        poly_power: float = 0.9,
        eval_mode: str = "whole",
        eval_crop: tuple[int, int] | None = None,
        eval_stride: tuple[int, int] | None = None,
        eval_scales: tuple[float, ...] = (1.0,),
        eval_flip: bool = False,
        eval_window: str = "pad",
        eval_base_size: int | None = None,
        grad_checkpointing: bool = False,
        channels_last: bool = False,
        nonfinite: str = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"model.nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        if loss not in ("ce", "ohem"):
            raise ValueError(f"loss must be 'ce' or 'ohem', got {loss!r}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        self.model, self.memory_format = build_task_model(model, pretrained, grad_checkpointing, channels_last,
                                                          num_classes=num_classes)
        self.align_corners = bool(self.model.backbone.spec.align_corners)
        if class_names is None:
            class_names = CITYSCAPES_CLASSES if num_classes == len(CITYSCAPES_CLASSES) else \
                [f"class_{i}" for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        self.class_names = list(class_names)
        weight = self._class_weights(class_weights, num_classes)
        common = dict(ignore_index=ignore_index, weight=weight, align_corners=self.align_corners,
                      balance_weights=list(aux_weights) if self.is_multi_output else [1.0])
        self.criterion = (OhemCrossEntropy(thresh=ohem_thresh, min_kept=ohem_min_kept, **common) if loss == "ohem"
                          else CrossEntropy(**common))
        self.confusion = ConfusionMatrix(num_classes, ignore_index)
        self.last_metrics: dict[str, float] = {}

    @property
    def is_multi_output(self) -> bool:
        """OCR models return ``[aux, ocr]`` logits; the loss weighs both, prediction uses the last."""
        return isinstance(self.model.head, OCRHead)

    @staticmethod
    def _class_weights(spec: str | list[float] | None, num_classes: int) -> Tensor | None:
        if spec is None:
            return None
        if spec == "cityscapes":
            if num_classes != len(CITYSCAPES_CLASS_WEIGHTS):
                raise ValueError(f"class_weights 'cityscapes' has 19 weights; num_classes is {num_classes}")
            return torch.tensor(CITYSCAPES_CLASS_WEIGHTS, dtype=torch.float32)
        if isinstance(spec, str) or len(spec) != num_classes:
            raise ValueError(f"class_weights must be 'cityscapes', None or {num_classes} numbers, got {spec!r}")
        return torch.tensor(spec, dtype=torch.float32)

    def forward(self, images: Tensor) -> Tensor | list[Tensor]:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        outputs = self(batch["image"])
        outputs = [loss_precision(o) for o in outputs] if isinstance(outputs, list) else loss_precision(outputs)
        loss = self.criterion(outputs, batch["mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return self._checked_loss(loss, batch_idx)

    def predict_logits(self, images: Tensor, model: nn.Module | None = None) -> Tensor:
        """(B, 3, H, W) -> (B, C, H, W) logits with the configured test-time inference, run by this task's
        network or by ``model`` (e.g. its ``hrnet.inference.prepare`` version)."""
        h = self.hparams
        return predict_logits(self if model is None else model, images, num_classes=h.num_classes,
                              mode=h.eval_mode, crop_size=h.eval_crop, stride=h.eval_stride,
                              scales=h.eval_scales, flip=h.eval_flip, align_corners=self.align_corners,
                              window=h.eval_window, base_size=h.eval_base_size)

    def _evaluate_batch(self, batch: dict[str, Tensor]) -> None:
        logits = self.predict_logits(batch["image"])
        self.confusion.update(logits.argmax(1), batch["mask"])

    def evaluate(self) -> dict[str, float]:
        """Sum the confusion matrices of every rank, then mIoU / accuracies / per-class IoU; reset."""
        self.confusion.all_reduce()
        result = self.confusion.compute()
        self.confusion.reset()
        metrics = {"mIoU": result["mIoU"], "pixel_accuracy": result["pixel_accuracy"],
                   "mean_accuracy": result["mean_accuracy"]}
        metrics |= {f"IoU/{name}": iou for name, iou in zip(self.class_names, result["IoU"]) if iou == iou}
        return metrics

    def _finish_evaluation(self, stage: str) -> None:
        self.last_metrics = self.evaluate()
        for name, value in self.last_metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "mIoU")

    def configure_optimizers(self) -> Any:
        h = self.hparams
        if h.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        else:
            opt = torch.optim.SGD(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay,
                                  nesterov=h.nesterov)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        poly = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / total) ** h.poly_power)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": poly, "interval": "step"}}


