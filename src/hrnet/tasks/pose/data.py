"""The pose DataModule: COCO-format or MPII keypoints, top-down, targets encoded in the loader workers."""

from __future__ import annotations

from typing import Any

import lightning as L

from ...keypoints.codec import HeatmapCodec
from ...keypoints.sets import resolve_keypoints
from ...keypoints.topdown import EncodeTargets, TopDownDataset
from ..base import LoaderHooks
from .coco import CocoKeypoints
from .mpii import MpiiKeypoints


class PoseDataModule(LoaderHooks, L.LightningDataModule):
    """Keypoint data: ``dataset: coco`` (any COCO-format JSON; GT boxes for training, GT or detector
    boxes for evaluation) or ``dataset: mpii`` (the official MPII JSON; PCKh needs ``*_headboxes``).

    ``input_size``, ``sigma``, ``unbiased``, ``keypoints``, ``use_joint_weights`` must equal the
    model's (the CLI links them).
    """

    def __init__(
        self,
        dataset: str = "coco",
        train_ann: str | None = None,
        train_images: str | None = None,
        val_ann: str | None = None,
        val_images: str | None = None,
        val_boxes: str | None = None,
        test_ann: str | None = None,
        test_images: str | None = None,
        test_boxes: str | None = None,
        val_headboxes: str | None = None,
        test_headboxes: str | None = None,
        box_score_threshold: float = 0.0,
        keypoints: str | dict[str, Any] = "coco",
        input_size: tuple[int, int] = (256, 192),
        sigma: float = 2.0,
        unbiased: bool = False,
        use_joint_weights: bool = False,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        scale_factor: float = 0.35,
        rotation_factor: float = 45.0,
        rotation_prob: float = 0.6,
        flip: bool = True,
        half_body_prob: float = 0.3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in ("coco", "mpii"):
            raise ValueError(f"data.dataset must be 'coco' or 'mpii', got {dataset!r}")
        self.save_hyperparameters()
        self.keypoints = resolve_keypoints(keypoints)
        codec = HeatmapCodec.from_spec(self.keypoints, input_size, sigma=sigma, unbiased=unbiased,
                                       use_joint_weights=use_joint_weights)
        self.encode = EncodeTargets(codec)
        self.train_set: TopDownDataset | None = None
        self.val_set: TopDownDataset | None = None
        self.test_set: TopDownDataset | None = None

    def _dataset(self, ann: str | None, images: str | None, train: bool, boxes: str | None = None,
                 headboxes: str | None = None, what: str = "") -> TopDownDataset:
        if not ann or not images:
            raise ValueError(f"data: {what}_ann and {what}_images are required for this stage")
        h = self.hparams
        common = dict(ann_file=ann, img_dir=images, train=train, keypoints=self.keypoints,
                      input_size=tuple(h.input_size), scale_factor=h.scale_factor, rotation_factor=h.rotation_factor,
                      rotation_prob=h.rotation_prob, flip=h.flip, half_body_prob=h.half_body_prob, seed=h.seed,
                      sample_transform=self.encode if boxes is None else None)
        if h.dataset == "coco":
            return CocoKeypoints(**common, boxes=boxes, box_score_threshold=h.box_score_threshold)
        return MpiiKeypoints(**common, headboxes=headboxes)

    def setup(self, stage: str) -> None:
        h = self.hparams
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(h.train_ann, h.train_images, True, what="train")
        if stage in ("fit", "validate") and self.val_set is None and h.val_ann:
            self.val_set = self._dataset(h.val_ann, h.val_images, False, h.val_boxes, h.val_headboxes, what="val")
        if stage == "test" and self.test_set is None:
            self.test_set = self._dataset(h.test_ann or h.val_ann, h.test_images or h.val_images, False,
                                          h.test_boxes, h.test_headboxes or h.val_headboxes, what="test")
