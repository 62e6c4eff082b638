"""COCO person keypoints as top-down samples: one crop per annotated person (or per detected box)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...files import coco_index, is_number_list, read_json
from ...keypoints.geometry import TopDownAugment, box_to_center_scale, sanitize_box
from ...keypoints.sets import COCO_KEYPOINTS, KeypointSpec
from ...keypoints.topdown import PersonRecord, SampleTransform, TopDownDataset
from ..base import check_coco_images, read_detections


class CocoKeypoints(TopDownDataset):
    """COCO-format person keypoints, top-down: one sample per person instance or detected box.

    Ground-truth mode (``boxes=None``), as the official pipeline: per image (file order) the non-crowd
    annotations of the person category whose box survives ``sanitize_box`` with ``area > 0`` and that have
    at least one labelled keypoint (``v > 0``); ``v = 2`` counts as visible (1). Images without such persons
    give no sample. The rule is the same for ``train`` and validation (COCO eval ignores such people anyway).

    Detection mode (``boxes="dets.json"``, COCO results format ``[{image_id, category_id, bbox, score}]``):
    every person-category box with ``score >= box_score_threshold`` (and positive size) is a sample with
    unknown joints (all 0, ``joints_vis`` 0); detection boxes are not clipped (official).

    ``input_size`` is ``(H, W)``; the person category is the one named ``person`` in ``categories``, else
    the first listed (the official ``cls == 1``), unless ``category_id`` is given. Image files are
    ``img_dir / images[i].file_name``.
    """

    def __init__(
        self,
        *,
        ann_file: str | Path,
        img_dir: str | Path,
        train: bool,
        keypoints: KeypointSpec = COCO_KEYPOINTS,
        input_size: tuple[int, int] = (256, 192),
        boxes: str | Path | None = None,
        box_score_threshold: float = 0.0,
        scale_factor: float = 0.35,
        rotation_factor: float = 45.0,
        rotation_prob: float = 0.6,
        flip: bool = True,
        half_body_prob: float = 0.3,
        num_joints_half_body: int = 8,
        padding: float = 1.25,
        color_rgb: bool = True,
        seed: int | None = None,
        category_id: int | None = None,
        drop_out_of_crop: bool = False,
        sample_transform: SampleTransform | None = None,
    ) -> None:
        self.ann_file = str(ann_file)
        self.img_dir = str(img_dir)
        self.boxes_file = None if boxes is None else str(boxes)
        self.padding = float(padding)
        dataset = read_json(self.ann_file, "ann_file")
        self._validate(dataset, keypoints, gt_mode=boxes is None)
        self.coco = coco_index(dataset)
        self.category_id = self._person_category(dataset) if category_id is None else int(category_id)
        augment = TopDownAugment(
            scale_factor=scale_factor, rotation_factor=rotation_factor, rotation_prob=rotation_prob, flip=flip,
            half_body_prob=half_body_prob, num_joints_half_body=num_joints_half_body,
        )
        super().__init__(
            [], keypoints=keypoints, input_size=input_size, train=train, augment=augment, color_rgb=color_rgb,
            seed=seed, drop_out_of_crop=drop_out_of_crop, sample_transform=sample_transform,
        )
        if boxes is None:
            self.records = self._gt_records()
        else:
            self.records = self._detection_records(float(box_score_threshold))

    # -- loading ------------------------------------------------------------------------------------------
    @staticmethod
    def _person_category(dataset: Mapping[str, Any]) -> int:
        cats = dataset.get("categories") or []
        for cat in cats:
            if cat.get("name") == "person":
                return int(cat["id"])
        return int(cats[0]["id"]) if cats else 1

    def _validate(self, data: Any, spec: KeypointSpec, gt_mode: bool) -> None:
        where = f"ann_file {self.ann_file}"
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object with 'images' and 'annotations', "
                             f"got {type(data).__name__}")
        image_ids = check_coco_images(data, where)
        if not gt_mode and "annotations" not in data:
            return
        if not isinstance(data.get("annotations"), list):
            raise ValueError(f"{where}: missing 'annotations' list")
        person = self._person_category(data)
        expected = 3 * spec.num_joints
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: annotations[{i}] is not an object")
            ident = ann.get("id", f"#{i}")
            for key in ("id", "image_id", "bbox", "category_id"):
                if key not in ann:
                    raise ValueError(f"{where}: annotation id {ident} has no {key!r} field")
            if ann["image_id"] not in image_ids:
                raise ValueError(f"{where}: annotation id {ident} refers to unknown image_id {ann['image_id']}")
            if not is_number_list(ann["bbox"], 4):
                raise ValueError(f"{where}: annotation id {ident} bbox {ann['bbox']!r} is not [x, y, w, h]")
            ann.setdefault("iscrowd", 0)
            if ann["iscrowd"] not in (0, 1):
                raise ValueError(f"{where}: annotation id {ident} iscrowd {ann['iscrowd']!r} is not 0 or 1")
            if ann["iscrowd"] or ann["category_id"] != person:
                continue
            if "keypoints" not in ann:
                raise ValueError(f"{where}: annotation id {ident} (person) has no 'keypoints' field")
            if not is_number_list(ann["keypoints"]):
                raise ValueError(f"{where}: annotation id {ident} keypoints is not a list of numbers")
            if len(ann["keypoints"]) != expected:
                raise ValueError(
                    f"{where}: annotation id {ident} has {len(ann['keypoints'])} keypoint values, expected "
                    f"3*K={expected} for KeypointSpec {spec.name!r} (K={spec.num_joints})"
                )
            if "area" not in ann:
                w, h = ann["bbox"][2], ann["bbox"][3]
                ann["area"] = float(w * h)

    def _image_file(self, image_id: int) -> str:
        return os.path.join(self.img_dir, self.coco.imgs[image_id]["file_name"])

    def _gt_records(self) -> list[PersonRecord]:
        k = self.num_joints
        records = []
        for image_id in self.coco.getImgIds():
            info = self.coco.imgs[image_id]
            for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False)):
                if ann["category_id"] != self.category_id:
                    continue
                box = sanitize_box(ann["bbox"], info["width"], info["height"])
                if box is None or not ann["area"] > 0:
                    continue
                kps = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)
                vis = (kps[:, 2] > 0).astype(np.float32)
                if vis.sum() == 0:
                    continue
                center, scale = box_to_center_scale(box, self.aspect_ratio, self.padding)
                records.append(PersonRecord(
                    image_file=self._image_file(image_id), image_id=int(image_id), center=center, scale=scale,
                    joints=(kps[:, :2] * vis[:, None]).astype(np.float32), joints_vis=vis, score=1.0,
                    ann_id=int(ann["id"]),
                ))
        return records

    def _detection_records(self, threshold: float) -> list[PersonRecord]:
        k = self.num_joints
        records = []
        for i, det in enumerate(read_detections(self.boxes_file, require=("image_id", "bbox", "score"))):
            if (det.category_id if det.category_id is not None else self.category_id) != self.category_id:
                continue
            if det.score < threshold or det.bbox[2] <= 0 or det.bbox[3] <= 0:
                continue
            if det.image_id not in self.coco.imgs:
                raise ValueError(f"boxes file {self.boxes_file}: entry {i} image_id {det.image_id} is not in ann_file "
                                 f"{self.ann_file}")
            center, scale = box_to_center_scale(list(det.bbox), self.aspect_ratio, self.padding)
            records.append(PersonRecord(
                image_file=self._image_file(det.image_id), image_id=int(det.image_id), center=center,
                scale=scale, joints=np.zeros((k, 2), np.float32), joints_vis=np.zeros(k, np.float32),
                score=det.score,
            ))
        return records
