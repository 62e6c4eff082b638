"""Facial landmark detection (HRNetV2-W18 heatmaps, paper Sec. 7) as a LightningModule: MSE on Gaussian
heatmaps, flip-test inference, DARK / argmax / official decoding, NME, failure rate and AUC per dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ...files import write_atomic
from ...keypoints.codec import HeatmapCodec
from ...keypoints.sets import resolve_keypoints
from ...models import load_checkpoint
from ..base import (
    EvaluationHooks,
    broadcast_from_zero,
    build_task_model,
    gather_to_all,
    loss_precision,
)
from .data import FaceLandmarks
from .decode import predict_landmarks
from .metrics import nme, normalizers, subset_table, summarize

DECODERS = ("dark", "argmax", "official")


class FaceLandmarkDetection(EvaluationHooks, L.LightningModule):
    """HRNetV2 face landmarks: plain MSE on Gaussian heatmaps (the official ``nn.MSELoss``), Adam with steps.

    Args:
        model: a face preset (``face_hrnet_w18``); its head is sized to ``keypoints``.
        keypoints: ``wflw`` (98), ``300w`` (68), ``cofw`` (29), ``aflw`` (19) or a mapping with ``joint_names``,
            ``flip_pairs`` and ``extra: {interocular: [a, b]}``.
        input_size, sigma, unbiased: the crop, the target sigma in heatmap pixels (official 1.5, 300W 1.0), and
            DARK's unbiased targets (the default) instead of integer-centred ones.
        pretrained: an ImageNet HRNet-W18-C checkpoint for the backbone (loaded ``strict=False``).
        weights: a whole face model's checkpoint (ours or official, e.g. ``HR18-WFLW.pth``), loaded exactly: to
            evaluate or fine-tune it.
        decode: ``dark`` (default), ``argmax`` (float back-projection) or ``official`` (the official arithmetic,
            with ``flip_test: false`` and ``data.crop: official`` an official checkpoint scores as officially).
        normalizer: ``interocular`` (the official NME: outer eye corners; AFLW the box size) or ``interpupil``
            (eye centres, 300W and WFLW).
        lr, lr_steps, lr_factor: Adam with step decay (official: 1e-4, AFLW 2e-4; epochs 30/50 of 60).
        results_dir: where evaluation writes ``landmarks_{stage}_results.json`` (per image landmarks and NME)
            and ``landmarks_{stage}_subsets.json`` (the per-subset table).
    """

    def __init__(
        self,
        model: str = "face_hrnet_w18",
        keypoints: str | dict[str, Any] = "300w",
        input_size: tuple[int, int] = (256, 256),
        sigma: float = 1.5,
        unbiased: bool = True,
        pretrained: str | None = None,
        weights: str | None = None,
        decode: str = "dark",
        flip_test: bool = True,
        normalizer: str = "interocular",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        lr_steps: tuple[int, ...] = (30, 50),
        lr_factor: float = 0.1,
        grad_checkpointing: bool = False,
        channels_last: bool = False,
        nonfinite: str = "stop",
        results_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if decode not in DECODERS:
            raise ValueError(f"model.decode must be one of {DECODERS}, got {decode!r}")
        if normalizer not in ("interocular", "interpupil"):
            raise ValueError(f"model.normalizer must be 'interocular' or 'interpupil', got {normalizer!r}")
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"model.nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        self.keypoints = resolve_keypoints(keypoints)
        self.model, self.memory_format = build_task_model(model, pretrained, grad_checkpointing, channels_last,
                                                          num_landmarks=self.keypoints.num_joints)
        if weights:
            load_checkpoint(self.model, weights)
        self.codec = HeatmapCodec.from_spec(self.keypoints, input_size, sigma=sigma, unbiased=unbiased,
                                            decode="argmax" if decode == "official" else decode)
        self._predictions: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        loss = F.mse_loss(loss_precision(self(batch["image"])), loss_precision(batch["target"]))
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return self._checked_loss(loss, batch_idx)

    def _evaluate_batch(self, batch: dict[str, Tensor]) -> None:
        flip_index = self.keypoints.flip_index if self.hparams.flip_test else None
        landmarks, heatmaps = predict_landmarks(self, batch["image"], batch["center"], batch["scale"], self.codec,
                                                self.hparams.decode, flip_index)
        losses = F.mse_loss(heatmaps, batch["target"].float(), reduction="none").flatten(1).mean(1)
        for i in range(landmarks.shape[0]):
            self._predictions.append({"index": int(batch["index"][i]), "landmarks": landmarks[i],
                                      "loss": float(losses[i])})

    def _finish_evaluation(self, stage: str) -> None:
        """Every rank's predictions gathered in sample order; NME, FR, AUC (and the subsets) on rank 0."""
        preds, self._predictions = self._predictions, []
        world = self.trainer.world_size
        preds = sorted(gather_to_all(preds, world), key=lambda p: p["index"])
        metrics = {}
        if self.trainer.is_global_zero:
            dm = self.trainer.datamodule
            subsets = dm.subset_files() if hasattr(dm, "subset_files") else {}
            metrics = self.evaluate(preds, self._eval_dataset(stage), subsets, stage)
        metrics = broadcast_from_zero(metrics, world)
        self.last_metrics = metrics
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "nme", rank_zero_only=False)

    def evaluate(self, predictions: list[dict[str, Any]], dataset: FaceLandmarks,
                 subsets: dict[str, set[str]] | None = None, stage: str = "val") -> dict[str, float]:
        """NME, failure rates and AUC of ``predictions`` (``{index, landmarks (K, 2) image pixels, loss}`` per
        sample of ``dataset``), and ``{subset}/nme`` for each of ``subsets`` (name -> image files)."""
        records = [dataset.records[p["index"]] for p in predictions]
        pred = np.stack([p["landmarks"] for p in predictions]).astype(np.float64)
        gt = np.stack([r.joints for r in records]).astype(np.float64)
        box = np.array([r.box_size for r in records], dtype=np.float64)
        errors = nme(pred, gt, normalizers(gt, self.keypoints.extra, box, self.hparams.normalizer))
        metrics = {**summarize(errors), "loss": float(np.mean([p["loss"] for p in predictions]))}
        table = subset_table({name: errors[[r.image_file in files for r in records]]
                              for name, files in (subsets or {}).items()})
        for row in table:
            metrics[f"{row['subset']}/nme"] = row["nme"]
        if self.hparams.results_dir:
            out = Path(self.hparams.results_dir)
            write_atomic(out / f"landmarks_{stage}_results.json", json.dumps([
                {"image_file": r.image_file, "landmarks": np.round(p, 3).tolist(), "nme": float(e)}
                for r, p, e in zip(records, pred, errors)]))
            write_atomic(out / f"landmarks_{stage}_subsets.json", json.dumps(table, indent=1))
        return metrics

    def _eval_dataset(self, stage: str) -> FaceLandmarks:
        dm = self.trainer.datamodule
        dataset = dm.val_set if stage == "val" or dm.test_set is None else dm.test_set
        if not isinstance(dataset, FaceLandmarks):
            raise TypeError(f"face evaluation needs a FaceLandmarks {stage} set, got {type(dataset).__name__}")
        return dataset

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(self.hparams.lr_steps), self.hparams.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
