"""The detection task: an HRNetV2p detector (Faster / Mask / Cascade R-CNN, FCOS) trained with the paper's
recipe and evaluated with pycocotools (box AP, and mask AP for models with masks)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from ...files import write_atomic
from ...models import create_model, get_preset, load_checkpoint
from ..base import EvaluationHooks, broadcast_from_zero, gather_to_all
from .data import CocoInstances
from .evaluation import coco_instance_eval, to_coco_results


class Detection(EvaluationHooks, L.LightningModule):
    """A detection preset (``model``: ``hrnet models --task detection``) with ``num_classes`` (background
    included: COCO 81) and the mmdetection HRNet recipe: SGD ``lr`` 0.02 for 16 images (scale it with the
    global batch), momentum 0.9, weight decay 1e-4, linear warm-up over ``warmup_iters`` from
    ``warmup_ratio`` x ``lr``, then x0.1 at the epochs of ``lr_steps`` (1x: 8, 11 of 12). ``optimizer: adamw``
    (with ``lr`` and ``weight_decay``) trains small models from scratch faster, as the demo does.

    ``pretrained`` loads an ImageNet HRNet-C checkpoint (official or timm) into the body (``strict=False``);
    ``batch_norm`` is the body's BN in training (``eval``: the official frozen statistics; ``train`` for
    training from scratch, as the demo does); ``min_size`` / ``max_size`` are torchvision's resize (the paper's
    1333x800); ``neck_channels`` / ``head_channels`` / ``detector_args`` (keywords of torchvision's detector class,
    e.g. ``box_batch_size_per_image``) size smaller models; ``class_names`` (K names; by default the training set's) are saved for prediction. Validation writes ``{results_dir}/detections_{stage}_results.json`` when ``results_dir`` is set.
    """

    def __init__(
        self,
        model: str = "maskrcnn_hrnetv2p_w32",
        num_classes: int = 81,
        pretrained: str | None = None,
        batch_norm: str = "eval",
        trainable_backbone_layers: int = 5,
        min_size: int = 800,
        max_size: int = 1333,
        neck_channels: int = 256,
        head_channels: int | None = None,
        detector_args: dict[str, Any] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_iters: int = 500,
        warmup_ratio: float = 0.001,
        lr_steps: tuple[int, ...] = (8, 11),
        lr_factor: float = 0.1,
        class_names: list[str] | None = None,
        nonfinite: str = "stop",
        results_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if get_preset(model).task != "detection":
            raise ValueError(f"model.model {model!r} is not a detection preset (hrnet models --task detection)")
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"model.nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"model.optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        self.model = create_model(model, num_classes=num_classes, batch_norm=batch_norm, min_size=min_size,
                                  max_size=max_size, trainable_backbone_layers=trainable_backbone_layers,
                                  neck_channels=neck_channels, head_channels=head_channels, **(detector_args or {}))
        if pretrained:
            load_checkpoint(self.model.backbone.body, pretrained, strict=False)
        self.has_masks = "masks" in get_preset(model).outputs
        self._results: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if self.has_masks and dm is not None and not dm.hparams.get("masks", True):
            raise ValueError(f"model.model {self.hparams.model} predicts masks: set data.masks true")
        if dm is not None and self.hparams.class_names is None:
            dataset = dm.train_set or dm.val_set
            if dataset is not None:
                self.hparams.class_names = list(dataset.class_names)

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.model(images)

    def training_step(self, batch: dict[str, list[Any]], batch_idx: int) -> Tensor | None:
        losses = self.model(batch["image"], batch["target"])
        loss = sum(losses.values())
        n = len(batch["image"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=n)
        return self._checked_loss(loss, batch_idx)

    def _evaluate_batch(self, batch: dict[str, list[Any]]) -> None:
        """Detections become COCO results (masks as RLEs) batch by batch."""
        dataset = self._eval_dataset("test" if self.trainer.testing else "val")
        detections = [{"image_id": int(i), **d} for i, d in zip(batch["image_id"], self.model(batch["image"]))]
        self._results += to_coco_results(detections, dataset.category_ids)

    def _finish_evaluation(self, stage: str) -> None:
        """Every rank's results gathered in image order, COCOeval on rank 0."""
        dataset = self._eval_dataset(stage)
        results, self._results = self._results, []
        results = sorted(gather_to_all(results, self.trainer.world_size), key=lambda r: r["image_id"])
        metrics: dict[str, float] = {}
        if self.trainer.is_global_zero:
            metrics = {f"box_{k}": v for k, v in coco_instance_eval(dataset.coco, results, "bbox").items()}
            if self.has_masks:
                metrics |= {f"mask_{k}": v for k, v in coco_instance_eval(dataset.coco, results, "segm").items()}
            if self.hparams.results_dir:
                write_atomic(Path(self.hparams.results_dir) / f"detections_{stage}_results.json", json.dumps(results))
        self.last_metrics = broadcast_from_zero(metrics, self.trainer.world_size)
        for name, value in self.last_metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("box_AP", "mask_AP"), rank_zero_only=False)

    def _eval_dataset(self, stage: str) -> CocoInstances:
        dm = self.trainer.datamodule
        dataset = dm.val_set if stage == "val" or dm.test_set is None else dm.test_set
        if not isinstance(dataset, CocoInstances):
            raise TypeError(f"detection evaluation needs a CocoInstances {stage} set, got {type(dataset).__name__}")
        return dataset

    def configure_optimizers(self) -> Any:
        h = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = (torch.optim.SGD(params, lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
               if h.optimizer == "sgd" else torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay))
        steps = list(h.lr_steps)
        per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))

        def factor(step: int) -> float:
            """mmdetection's ``step`` policy with linear warm-up, evaluated per optimizer step."""
            warm = 1.0 if step >= h.warmup_iters else h.warmup_ratio + (1 - h.warmup_ratio) * step / h.warmup_iters
            return warm * h.lr_factor ** sum(step >= s * per_epoch for s in steps)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
