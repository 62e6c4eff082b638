"""Bottom-up multi-person pose (HigherHRNet, associative embedding) as a LightningModule: the official losses,
the official test (flip, optional multi-scale, grouping) and COCO / CrowdPose keypoint AP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ...files import write_atomic
from ...keypoints.evaluation import (
    coco_keypoint_eval,
    crowd_keypoint_eval,
    require_xtcocotools,
    to_coco_results,
)
from ...keypoints.sets import resolve_keypoints
from ..base import (
    EvaluationHooks,
    broadcast_from_zero,
    build_task_model,
    gather_to_all,
    loss_precision,
)
from .data import BottomUpCoco
from .decode import ScaledInputs, find_people, grouping_params
from .losses import ae_loss, heatmap_loss

__all__ = ["BottomUpPose", "coco_results"]


def coco_results(predictions: list[dict[str, Any]], category_id: int = 1, max_detections: int = 20) -> list[dict]:
    """COCO keypoint results of per-image predictions (``image_id``, ``keypoints`` (N, J, 3), ``scores`` (N,)):
    the ``max_detections`` best-scoring people of each image (COCO keypoint evaluation keeps 20,
    ``maxDets``)."""
    people = []
    for p in predictions:
        for k in np.argsort(-np.asarray(p["scores"]), kind="stable")[:max_detections]:
            people.append({"image_id": p["image_id"], "keypoints": p["keypoints"][k], "score": p["scores"][k]})
    return to_coco_results(people, category_id=category_id)


class BottomUpPose(EvaluationHooks, L.LightningModule):
    """HigherHRNet: heatmaps at 1/4 and 1/2, associative-embedding tags at 1/4; the official COCO recipe.

    Loss (official ``MultiLossFactory`` with the COCO configs): the masked heatmap MSE of both outputs (weight 1
    each) plus ``ae_weight`` times the push and pull tag losses of the 1/4 output, each averaged over the batch.

    Args:
        model: a bottom-up preset (``higher_hrnet_w32``, ``higher_hrnet_w48``, ``higher_hrnet_w18_small``).
        keypoints: ``coco``, ``crowdpose`` or a mapping with ``joint_names``, ``flip_pairs``, ``sigmas`` ...
        input_size: the training square ``(S, S)``; at test time the image's short side goes to ``S``.
        pretrained: an ImageNet classification checkpoint for the backbone (loaded ``strict=False``).
        flip_test: the official flip test (``TEST.FLIP_TEST``); the test scales are the data's
            (``data.test_scales``, official ``TEST.SCALE_FACTOR``).
        project2image: group on maps resized to the input (official ``TEST.PROJECT2IMAGE``, on in the COCO
            configs); off groups on the network's 1/2-resolution maps, a quarter of the pixels.
        detection_threshold, tag_threshold, max_num_people: the grouping (official ``TEST.DETECTION_THRESHOLD``
            0.1, ``TEST.TAG_THRESHOLD`` 1, ``DATASET.MAX_NUM_PEOPLE`` 30).
        max_detections: people per image in the results (COCO keypoint evaluation keeps 20).
        ae_weight: push and pull factor (official 1e-3).
        lr, weight_decay, lr_steps, lr_factor: Adam with step decay (official: 1e-3, 0, epochs 200/260, 0.1).
        channels_last, grad_checkpointing, nonfinite, results_dir: as the other tasks.

    CrowdPose (``keypoints: crowdpose``) is evaluated as its benchmark, with xtcocotools (``keypoints_crowd``:
    AP, AR and AP easy / medium / hard); that needs xtcocotools (under numpy 2 built from source:
    :data:`~hrnet.keypoints.evaluation.XTCOCOTOOLS_FROM_SOURCE`), checked when a run starts.
    """

    def __init__(
        self,
        model: str = "higher_hrnet_w32",
        keypoints: str | dict[str, Any] = "coco",
        input_size: tuple[int, int] = (512, 512),
        pretrained: str | None = None,
        flip_test: bool = True,
        project2image: bool = True,
        detection_threshold: float = 0.1,
        tag_threshold: float = 1.0,
        max_num_people: int = 30,
        max_detections: int = 20,
        ae_weight: float = 1e-3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_steps: tuple[int, ...] = (200, 260),
        lr_factor: float = 0.1,
        grad_checkpointing: bool = False,
        channels_last: bool = False,
        nonfinite: str = "stop",
        results_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"model.nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        if len(input_size) != 2 or input_size[0] != input_size[1]:
            raise ValueError(f"model.input_size must be a square (S, S), got {tuple(input_size)}")
        self.keypoints = resolve_keypoints(keypoints)
        self.model, self.memory_format = build_task_model(model, pretrained, grad_checkpointing, channels_last,
                                                          num_joints=self.keypoints.num_joints)
        self.grouping = grouping_params(self.keypoints.num_joints, detection_threshold, tag_threshold,
                                        max_num_people)
        self._predictions: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}

    @property
    def crowd_eval(self) -> bool:
        """Whether evaluation is CrowdPose's (xtcocotools ``keypoints_crowd``)."""
        return self.keypoints.name == "crowdpose"

    def setup(self, stage: str) -> None:
        if self.crowd_eval and stage != "predict":
            require_xtcocotools()

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def losses(self, outputs: list[Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch-mean losses: ``heatmaps`` (1/4), ``heatmaps_2x`` (1/2), ``push``, ``pull`` (weighted) and
        their sum ``loss``."""
        j = self.keypoints.num_joints
        low, high = (loss_precision(o) for o in outputs)
        push, pull = ae_loss(low[:, j:], batch["joints"])
        parts = {"heatmaps": heatmap_loss(low[:, :j], batch["heatmaps"], batch["mask"]).mean(),
                 "heatmaps_2x": heatmap_loss(high, batch["heatmaps_2x"], batch["mask_2x"]).mean(),
                 "push": self.hparams.ae_weight * push.mean(), "pull": self.hparams.ae_weight * pull.mean()}
        return {**parts, "loss": sum(parts.values())}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        losses = self.losses(self(batch["image"]), batch)
        size = batch["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        for name in ("heatmaps", "heatmaps_2x", "push", "pull"):
            self.log(f"train/{name}", losses[name], batch_size=size)
        return self._checked_loss(losses["loss"], batch_idx)

    def _evaluate_batch(self, batch: dict[str, Any]) -> None:
        """The official test of every image of the batch (one at a time: each has its own size)."""
        flip_index = self.keypoints.flip_index if self.hparams.flip_test else None
        for i, images in enumerate(batch["images"]):
            inputs = ScaledInputs([x.cpu().numpy() for x in images], tuple(batch["scales"][i].tolist()),
                                  batch["center"][i].cpu().numpy(), batch["scale"][i].cpu().numpy(),
                                  tuple(batch["base_size"][i].tolist()))
            keypoints, scores = find_people(self, inputs, self.keypoints.num_joints, self.grouping, flip_index,
                                            self.device, self.hparams.project2image)
            self._predictions.append({"image_id": int(batch["image_id"][i]), "index": int(batch["index"][i]),
                                      "keypoints": keypoints, "scores": scores})

    def _finish_evaluation(self, stage: str) -> None:
        """Gather every rank's images (in sample order, as one process makes them); pycocotools (xtcocotools for
        CrowdPose) on rank 0; every rank gets the metrics."""
        preds, self._predictions = self._predictions, []
        world = self.trainer.world_size
        preds = sorted(gather_to_all(preds, world), key=lambda p: p["index"])
        metrics = self.evaluate(preds, stage) if self.trainer.is_global_zero else {}
        metrics = broadcast_from_zero(metrics, world)
        self.last_metrics = metrics
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "AP", rank_zero_only=False)

    def evaluate(self, predictions: list[dict[str, Any]], stage: str) -> dict[str, float]:
        """Keypoint AP of per-image ``predictions`` against the ``stage`` set's annotations."""
        dataset = self._eval_dataset(stage)
        results = coco_results(predictions, dataset.category_id, self.hparams.max_detections)
        if self.hparams.results_dir:
            write_atomic(Path(self.hparams.results_dir) / f"keypoints_{stage}_results.json", json.dumps(results))
        sigmas = self.keypoints.sigmas or None
        if self.crowd_eval:
            return crowd_keypoint_eval(dataset.coco.dataset, results, sigmas, where=dataset.ann_file)
        return coco_keypoint_eval(dataset.coco, results, sigmas=sigmas)

    def _eval_dataset(self, stage: str) -> BottomUpCoco:
        dm = self.trainer.datamodule
        dataset = dm.val_set if stage == "val" else (dm.test_set or dm.val_set)
        if not isinstance(dataset, BottomUpCoco):
            raise TypeError(f"bottom-up evaluation needs a BottomUpCoco {stage} set, got {type(dataset).__name__}")
        return dataset

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(self.hparams.lr_steps), self.hparams.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
