"""Top-down human pose estimation (HRNetV1, paper Sec. 5) as a LightningModule: training, flip-test
inference, decoding, OKS-NMS and COCO (pycocotools) / PCKh evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ...files import write_atomic
from ...keypoints.codec import HeatmapCodec, JointsMSELoss
from ...keypoints.evaluation import coco_keypoint_eval, rescore_and_nms, to_coco_results
from ...keypoints.sets import resolve_keypoints
from ...keypoints.topdown import (
    TopDownDataset,
    heatmaps_to_image_keypoints,
    predict_heatmaps,
)
from ..base import (
    EvaluationHooks,
    broadcast_from_zero,
    build_task_model,
    gather_to_all,
    loss_precision,
)
from .coco import CocoKeypoints
from .mpii import MpiiKeypoints, headsize_from_boxes, pckh


class PoseEstimation(EvaluationHooks, L.LightningModule):
    """HRNetV1 top-down pose: MSE on Gaussian heatmaps with joint weights; flip-test evaluation.

    Args:
        model: a pose preset (``pose_hrnet_w32``, ``pose_hrnet_w48``, ``pose_hrnet_w18_small_v2`` ...).
        keypoints: ``coco``, ``mpii`` or a mapping with ``joint_names``, ``flip_pairs``, ``sigmas`` ...
        input_size: model input ``(H, W)``; heatmaps are at 1/4.
        sigma: Gaussian sigma in heatmap pixels (2 at 256x192, 3 at 384x288 as official).
        pretrained: an ImageNet classification checkpoint for the backbone (loaded ``strict=False``).
        decode: ``argmax`` (official, quarter-pixel offset) or ``dark``.
        unbiased: DARK's unbiased (sub-pixel) targets instead of the official integer-centred ones
            (a data-side setting; recorded here so a checkpoint says how it was trained).
        lr, lr_steps, lr_factor: Adam with step decay (official: 1e-3, epochs 170/200, 0.1).
        use_joint_weights: weight joints in the loss by ``KeypointSpec.joint_weights``.
        channels_last: NHWC memory format (faster convolutions on CPUs with oneDNN and on tensor cores).
        nonfinite: what a NaN/inf training loss does: ``stop`` (a one-line error naming the step and the last
            checkpoint) or ``skip`` (the batch, with a warning).
    """

    def __init__(
        self,
        model: str = "pose_hrnet_w32",
        keypoints: str | dict[str, Any] = "coco",
        input_size: tuple[int, int] = (256, 192),
        sigma: float = 2.0,
        pretrained: str | None = None,
        decode: str = "argmax",
        unbiased: bool = False,
        flip_test: bool = True,
        shift_heatmap: bool = True,
        use_target_weight: bool = True,
        use_joint_weights: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_steps: tuple[int, ...] = (170, 200),
        lr_factor: float = 0.1,
        in_vis_thre: float = 0.2,
        oks_thre: float = 0.9,
        grad_checkpointing: bool = False,
        channels_last: bool = False,
        nonfinite: str = "stop",
        results_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"model.nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        self.keypoints = resolve_keypoints(keypoints)
        self.model, self.memory_format = build_task_model(model, pretrained, grad_checkpointing, channels_last,
                                                          num_joints=self.keypoints.num_joints)
        self.codec = HeatmapCodec.from_spec(self.keypoints, input_size, sigma=sigma, decode=decode,
                                            unbiased=unbiased, use_joint_weights=use_joint_weights)
        self.criterion = JointsMSELoss(use_target_weight)
        self._predictions: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        heatmaps = self(batch["image"])
        loss = self.criterion(loss_precision(heatmaps), batch["target"], batch["target_weight"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return self._checked_loss(loss, batch_idx)

    def _evaluate_batch(self, batch: dict[str, Tensor]) -> None:
        flip_index = self.keypoints.flip_index if self.hparams.flip_test else None
        heatmaps = predict_heatmaps(self, batch["image"], flip_index, self.hparams.shift_heatmap)
        kpts = heatmaps_to_image_keypoints(self.codec, heatmaps, batch["center"], batch["scale"])
        for i in range(kpts.shape[0]):
            self._predictions.append({
                "keypoints": kpts[i], "image_id": int(batch["image_id"][i]), "score": float(batch["score"][i]),
                "area": float(batch["area"][i]), "index": int(batch["index"][i]),
            })
            if "target" in batch:  # per sample, so the mean over ranks is the mean over samples
                target, weight = batch["target"][i:i + 1], batch["target_weight"][i:i + 1]
                self._predictions[-1]["loss"] = float(self.criterion(heatmaps[i:i + 1].to(target.dtype), target, weight))

    def _finish_evaluation(self, stage: str) -> None:
        """Gather predictions from every rank (in sample order, as one process makes them), OKS-NMS +
        rescoring, pycocotools on rank 0; the heatmap loss is the mean over samples."""
        preds, self._predictions = self._predictions, []
        world = self.trainer.world_size
        preds = sorted(gather_to_all(preds, world), key=lambda p: p["index"])
        metrics = self.evaluate(preds, stage) if self.trainer.is_global_zero else {}
        if preds and "loss" in preds[0]:
            metrics["loss"] = math.fsum(p["loss"] for p in preds) / len(preds)  # exactly rounded: any order
        metrics = broadcast_from_zero(metrics, world)
        self.last_metrics = metrics
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("AP", "PCKh"), rank_zero_only=False)

    def evaluate(self, predictions: list[dict[str, Any]], stage: str) -> dict[str, float]:
        """COCO keypoint AP (COCO-format data) or PCKh@0.5 (MPII) of ``predictions``."""
        dataset = self._eval_dataset(stage)
        if isinstance(dataset, MpiiKeypoints):
            return self._evaluate_pckh(predictions, dataset)
        kept = rescore_and_nms(predictions, self.keypoints.sigmas or None, self.hparams.in_vis_thre,
                               self.hparams.oks_thre)
        results = to_coco_results(kept, category_id=dataset.category_id)
        self._write_results(results, stage)
        return coco_keypoint_eval(dataset.coco, results, sigmas=self.keypoints.sigmas or None)

    def _evaluate_pckh(self, predictions: list[dict[str, Any]], dataset: MpiiKeypoints) -> dict[str, float]:
        """Official MPII protocol: one prediction per annotated person, PCKh against 0.6 x head diagonal."""
        if dataset.headboxes is None:
            raise ValueError("MPII evaluation needs head boxes: set data.val_headboxes (the official gt_valid.mat)")
        n = len(dataset.records)
        preds = np.zeros((n, self.keypoints.num_joints, 2))
        for p in predictions:
            preds[p["index"]] = p["keypoints"][:, :2]
        gt = np.stack([r.joints for r in dataset.records])
        visible = np.stack([r.joints_vis for r in dataset.records])
        metrics = pckh(preds, gt, visible, headsize_from_boxes(dataset.headboxes), joint_names=self.keypoints.joint_names)
        return {("PCKh" if k == "Mean" else k): v for k, v in metrics.items() if not np.isnan(v)}

    def _write_results(self, results: list[dict[str, Any]], stage: str) -> None:
        if self.hparams.results_dir:
            write_atomic(Path(self.hparams.results_dir) / f"keypoints_{stage}_results.json", json.dumps(results))

    def _eval_dataset(self, stage: str) -> TopDownDataset:
        dm = self.trainer.datamodule
        dataset = dm.val_set if stage == "val" else dm.test_set
        if not isinstance(dataset, (CocoKeypoints, MpiiKeypoints)):
            raise TypeError(f"pose evaluation needs a CocoKeypoints or MpiiKeypoints {stage} set, "
                            f"got {type(dataset).__name__}")
        return dataset

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(self.hparams.lr_steps), self.hparams.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


