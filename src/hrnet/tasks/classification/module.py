"""Image classification with HRNet-C (paper appendix) as a LightningModule: the official ImageNet recipe (SGD,
nesterov, steps) or a modern one (cosine, label smoothing, mixup / cutmix), fine-tuning without code (new classifier,
backbone learning-rate multiplier, frozen early stages), optional EMA weights, top-1 / top-5 gathered over ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel

from ...files import write_atomic
from ...models import BACKBONE_PARTS, load_checkpoint
from ..base import (
    EvaluationHooks,
    broadcast_from_zero,
    build_task_model,
    gather_to_all,
    loss_precision,
)

SCHEDULES = ("step", "cosine")
EMA_PREFIX = "ema."


def ema_decay_at(decay: float, updates: int) -> float:
    """The EMA decay after ``updates`` updates: ``min(decay, (1 + n) / (10 + n))``, TensorFlow's
    ``ExponentialMovingAverage(num_updates=n)`` warm-up, so that early weights fade fast (the first update copies)."""
    return min(decay, (1 + updates) / (10 + updates))


def exponential_moving_average(decay: float) -> Any:
    """A ``multi_avg_fn`` for ``AveragedModel``: ``ema = d * ema + (1 - d) * current`` with ``d`` from
    :func:`ema_decay_at`, over all tensors of one dtype at once; integer buffers (BN's ``num_batches_tracked``) are
    copied."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor | int) -> None:
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1.0 - ema_decay_at(decay, int(updates)))
        else:
            torch._foreach_copy_(averaged, current)

    return update


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, Tensor]:
    """(B, C) logits, (B,) labels -> for each k, a (B,) bool: the label is among the k largest logits (ties
    broken by ``torch.topk``)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return {k: hit[:, :k].any(dim=1) for k in ks}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


class ImageClassification(EvaluationHooks, L.LightningModule):
    """HRNet-C on ImageNet or a folder of your own classes.

    Args:
        model: a classification preset (``hrnet_w18_small`` ... ``hrnet_w64``).
        num_classes: the classifier's classes (ImageNet 1000; fine-tuning: your dataset's).
        pretrained: an official or timm checkpoint to start from; its classifier is kept when it has
            ``num_classes`` outputs, else replaced by a freshly initialised one (``reset_classifier``).
        weights: a whole checkpoint of this model and ``num_classes``, loaded exactly (evaluation).
        lr, momentum, nesterov, weight_decay: SGD (official: 0.05 for 4 x 32 images, 0.9, true, 1e-4);
            ``optimizer: adamw`` for AdamW with ``lr`` and ``weight_decay``.
        schedule: ``step`` (x ``lr_factor`` at the epochs of ``lr_steps``; official 30/60/90 of 100) or
            ``cosine`` (to 0 over the run), each after ``warmup_epochs`` of linear warm-up.
        label_smoothing, mixup_alpha, cutmix_alpha: the modern recipe (torchvision's ``MixUp`` / ``CutMix``, one
            of them per batch when both are set).
        ema_decay: above 0, an exponential moving average of the weights and BN statistics is kept
            (:func:`ema_decay_at`, updated after every optimizer step); evaluation uses it, and checkpoints hold it
            as ``state_dict_ema`` (timm's key), which ``hrnet predict`` / ``export`` / ``load_checkpoint`` prefer.
        backbone_lr_mult: the backbone's learning rate is ``lr x backbone_lr_mult`` (the head's is ``lr``).
        freeze_parts: the first that many of stem, stage 1, ..., stage 4 are frozen (``requires_grad=False``).
        class_names: saved for prediction (default: the training set's folder names).
        results_dir: evaluation writes ``classification_{stage}.json`` there (metrics, per-class accuracy, and
            the confusion matrix when there are at most ``confusion_max_classes`` classes).
    """

    def __init__(
        self,
        model: str = "hrnet_w18",
        num_classes: int = 1000,
        pretrained: str | None = None,
        weights: str | None = None,
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        schedule: str = "step",
        lr_steps: tuple[int, ...] = (30, 60, 90),
        lr_factor: float = 0.1,
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        ema_decay: float = 0.0,
        backbone_lr_mult: float = 1.0,
        freeze_parts: int = 0,
        class_names: list[str] | None = None,
        channels_last: bool = False,
        grad_checkpointing: bool = False,
        nonfinite: str = "stop",
        results_dir: str | None = None,
        confusion_max_classes: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, value, allowed in (("optimizer", optimizer, ("sgd", "adamw")), ("schedule", schedule, SCHEDULES),
                                     ("nonfinite", nonfinite, ("stop", "skip"))):
            if value not in allowed:
                raise ValueError(f"model.{name} must be one of {allowed}, got {value!r}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"model.ema_decay must be in [0, 1) (0: no EMA), got {ema_decay}")
        if not 0 <= freeze_parts <= len(BACKBONE_PARTS):
            raise ValueError(f"model.freeze_parts must be in 0..{len(BACKBONE_PARTS)}, got {freeze_parts}")
        self.model, self.memory_format = build_task_model(model, None, grad_checkpointing, channels_last)
        if pretrained:
            load_checkpoint(self.model, pretrained, strict=False)
        if num_classes != self.model.head.classifier.out_features:
            self.model.reset_classifier(num_classes)
        if weights:
            load_checkpoint(self.model, weights)
        for part in BACKBONE_PARTS[:freeze_parts]:
            self.model.backbone.part(part).requires_grad_(False)
        self.mix = self._mixing(num_classes, mixup_alpha, cutmix_alpha)
        self.ema = (AveragedModel(self.model, multi_avg_fn=exponential_moving_average(ema_decay), use_buffers=True)
                    if ema_decay > 0 else None)
        if self.ema is not None:
            self.ema.requires_grad_(False)  # never trained: DDP must not wait for its gradients
        self._predictions: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}

    @staticmethod
    def _mixing(num_classes: int, mixup_alpha: float, cutmix_alpha: float) -> Any:
        """torchvision's batch MixUp / CutMix (one chosen per batch when both are on), or ``None``."""
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            return None
        from torchvision.transforms import v2

        chosen = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []) + \
                 ([v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else [])
        return chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and self.hparams.class_names is None and getattr(dm, "class_names", None):
            self.hparams.class_names = list(dm.class_names)

    @property
    def network(self) -> nn.Module:
        """The weights evaluation and prediction use: the EMA's when kept, else the trained model."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, images: Tensor) -> Tensor:
        """Training: the trained model; evaluation: :attr:`network`."""
        network = self.model if self.training else self.network
        return network(images.contiguous(memory_format=self.memory_format))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The EMA leaves ``state_dict`` (which stays the trained model, as official and timm) for
        ``state_dict_ema``, under the model's own names; its update count stays for resuming."""
        state = checkpoint["state_dict"]
        ema = {k: state.pop(k) for k in [k for k in state if k.startswith(EMA_PREFIX)]}
        if self.ema is not None:
            checkpoint["ema_updates"] = int(ema.pop(EMA_PREFIX + "n_averaged"))
            module = EMA_PREFIX + "module."
            checkpoint["state_dict_ema"] = {"model." + k[len(module):]: v for k, v in ema.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Puts ``state_dict_ema`` back under the EMA's names before Lightning loads ``state_dict``; a checkpoint
        without one starts the EMA from its weights."""
        if self.ema is None:
            return
        state = checkpoint["state_dict"]
        source = checkpoint.get("state_dict_ema") or {k: v for k, v in state.items() if k.startswith("model.")}
        state.update({EMA_PREFIX + "module." + k[len("model."):]: v for k, v in source.items()})
        state[EMA_PREFIX + "n_averaged"] = torch.tensor(checkpoint.get("ema_updates", 0))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        images, labels = batch["image"], batch["label"]
        if self.mix is not None:
            images, labels = self.mix(images, labels)
        loss = F.cross_entropy(loss_precision(self(images)), labels, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return self._checked_loss(loss, batch_idx)

    def _evaluate_batch(self, batch: dict[str, Tensor]) -> None:
        logits = self(batch["image"]).float()
        labels = batch["label"]
        losses = F.cross_entropy(logits, labels, reduction="none")
        hits = topk_correct(logits, labels)
        for i in range(logits.shape[0]):
            self._predictions.append({"index": int(batch["index"][i]), "label": int(labels[i]),
                                      "prediction": int(logits[i].argmax()), "top1": bool(hits[1][i]),
                                      "top5": bool(hits[5][i]), "loss": float(losses[i])})

    def _finish_evaluation(self, stage: str) -> None:
        """Every rank's predictions gathered in sample order; top-1 / top-5 / loss on rank 0, broadcast."""
        preds, self._predictions = self._predictions, []
        world = self.trainer.world_size
        preds = sorted(gather_to_all(preds, world), key=lambda p: p["index"])
        metrics = self.evaluate(preds, stage) if self.trainer.is_global_zero else {}
        self.last_metrics = broadcast_from_zero(metrics, world)
        for name, value in self.last_metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "top1", rank_zero_only=False)

    def evaluate(self, predictions: list[dict[str, Any]], stage: str = "val") -> dict[str, float]:
        """Top-1, top-5 and mean loss of ``predictions`` (one per sample); per-class accuracy and the confusion
        matrix go to ``results_dir``."""
        n = len(predictions)
        metrics = {"top1": sum(p["top1"] for p in predictions) / n, "top5": sum(p["top5"] for p in predictions) / n,
                   "loss": math.fsum(p["loss"] for p in predictions) / n}
        if self.hparams.results_dir:
            k = self.hparams.num_classes
            labels = np.array([p["label"] for p in predictions])
            matrix = confusion_matrix(labels, np.array([p["prediction"] for p in predictions]), k)
            counts = matrix.sum(1)
            names = self.hparams.class_names or [str(c) for c in range(k)]
            report = {**metrics, "per_class_accuracy": {names[c]: float(matrix[c, c] / counts[c])
                                                        for c in range(k) if counts[c]}}
            if k <= self.hparams.confusion_max_classes:
                report["confusion_matrix"] = {"classes": names, "rows_true_columns_predicted": matrix.tolist()}
            write_atomic(Path(self.hparams.results_dir) / f"classification_{stage}.json", json.dumps(report, indent=1))
        return metrics

    def configure_optimizers(self) -> Any:
        h = self.hparams
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        body = [p for p in self.model.backbone.parameters() if p.requires_grad]
        groups = [{"params": body, "lr": h.lr * h.backbone_lr_mult}, {"params": head, "lr": h.lr}]
        opt = (torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, nesterov=h.nesterov, weight_decay=h.weight_decay)
               if h.optimizer == "sgd" else torch.optim.AdamW(groups, lr=h.lr, weight_decay=h.weight_decay))
        per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))
        warmup, total = h.warmup_epochs * per_epoch, self.trainer.estimated_stepping_batches

        def factor(step: int) -> float:
            """Linear warm-up, then step decay at the epochs of ``lr_steps`` or a cosine to 0."""
            if step < warmup:
                return (step + 1) / warmup
            if h.schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            return h.lr_factor ** sum(step >= s * per_epoch for s in h.lr_steps)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
