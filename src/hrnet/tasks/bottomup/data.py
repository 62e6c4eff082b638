"""Bottom-up (HigherHRNet) data: whole images of a COCO-format keypoints file, the official random affine, and
the training targets at 1/4 and 1/2 of the input: heatmaps, loss masks and the joints' tag indices.

Decided as in HRNet/HigherHRNet-Human-Pose-Estimation: ``lib/dataset/COCOKeypoints.py`` (which people and
masks), ``lib/dataset/transforms/transforms.py`` (``RandomAffineTransform``, ``RandomHorizontalFlip``),
``lib/dataset/target_generators/target_generators.py`` (``HeatmapGenerator``, ``JointsGenerator``) and the
``experiments/coco/higher_hrnet`` configs (the defaults here). Evaluation samples are the official test
inputs (:func:`hrnet.tasks.bottomup.decode.scaled_inputs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from ...files import coco_index, is_number_list, normalize_image, read_image, read_json
from ...keypoints.geometry import PIXEL_STD, affine_points
from ...keypoints.sets import COCO_KEYPOINTS, KeypointSpec, resolve_keypoints
from ...seeding import SeededSamples
from ..base import LoaderHooks, check_coco_images
from .decode import ordered_scales, scaled_inputs

log = logging.getLogger(__name__)

__all__ = ["BottomUpCoco", "BottomUpDataModule", "affine_matrix", "joint_indices", "render_heatmaps"]


# ---------------------------------------------------------------------------------------------- targets
def affine_matrix(center: Sequence[float], scale: float, size: int, rotation: float = 0.0) -> np.ndarray:
    """The official ``RandomAffineTransform._get_affine_matrix`` for a ``size`` square: the image square of side
    ``200 * scale`` around ``center`` zoomed onto it, then turned by ``rotation`` degrees about its centre (the
    direction of the top-down crop's rotation). 2x3 float64, image -> output pixels."""
    zoom = size / (PIXEL_STD * scale)
    rad = -np.deg2rad(rotation)
    turn = np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]]) * zoom
    return np.concatenate((turn, (size / 2 - turn @ np.asarray(center, np.float64))[:, None]), axis=1)


def render_heatmaps(joints: np.ndarray, size: int, sigma: float = 2.0) -> np.ndarray:
    """The official ``HeatmapGenerator``: ``(J, size, size)`` float32, every labelled joint (``v > 0``) whose
    integer part lies in the map a Gaussian of ``sigma`` with peak 1 centred on that pixel, maxed over people.
    ``joints`` ``(P, J, 3)`` in map pixels."""
    maps = np.zeros((joints.shape[1], size, size), np.float32)
    extent = np.arange(0, 6 * sigma + 3, 1, float)
    peak = 3 * sigma + 1
    kernel = np.exp(-((extent[None] - peak) ** 2 + (extent[:, None] - peak) ** 2) / (2 * sigma ** 2))
    for person in joints:
        for j, (x, y, v) in enumerate(person):
            x, y = int(x), int(y)
            if v <= 0 or x < 0 or y < 0 or x >= size or y >= size:
                continue
            x0, y0 = int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1))
            x1, y1 = int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2))
            patch = kernel[max(0, -y0):min(y1, size) - y0, max(0, -x0):min(x1, size) - x0]
            region = maps[j, max(0, y0):min(y1, size), max(0, x0):min(x1, size)]
            np.maximum(region, patch, out=region)
    return maps


def joint_indices(joints: np.ndarray, size: int, max_num_people: int = 30) -> tuple[np.ndarray, int]:
    """The official ``JointsGenerator`` (tag per joint): ``(max_num_people, J, 2)`` int64 rows, per person its
    labelled joints inside the map as ``(j * size**2 + y * size + x, 1)``, packed from the first slot.

    Rows hold the people with such a joint, in annotation order; the others get no row (they count in no tag
    loss, as officially). Beyond ``max_num_people`` people the rest are dropped (the official code stops with an
    IndexError there). Returns the rows and how many people were dropped.
    """
    xy = joints[..., :2].astype(np.int64)  # int(): truncation toward zero, as the official code
    inside = (joints[..., 2] > 0) & (xy >= 0).all(axis=2) & (xy < size).all(axis=2)
    people = np.flatnonzero(inside.any(axis=1))
    rows = np.zeros((max_num_people, joints.shape[1], 2), np.int64)
    for row, p in enumerate(people[:max_num_people]):
        j = np.flatnonzero(inside[p])
        rows[row, :len(j), 0] = j * size * size + xy[p, j, 1] * size + xy[p, j, 0]
        rows[row, :len(j), 1] = 1
    return rows, max(0, len(people) - max_num_people)


@dataclass(frozen=True)
class ImageRecord:
    """One image: ``joints`` ``(P, J, 3)`` of the people kept (non-crowd, or crowd with keypoints) in image pixels,
    and the annotations whose region the loss ignores (crowds and people without keypoints)."""

    image_file: str
    image_id: int
    height: int
    width: int
    joints: np.ndarray
    masked: tuple[dict[str, Any], ...]


# ---------------------------------------------------------------------------------------------- dataset
class BottomUpCoco(SeededSamples, Dataset):
    """A COCO-format person keypoints file as whole-image bottom-up samples.

    People and masks (official ``CocoKeypoints``): the person-category annotations with ``iscrowd == 0`` or
    ``num_keypoints > 0`` are people (their labelled joints, ``v > 0``, are targets); the regions of crowds and of
    people without keypoints are left out of the heatmap loss (their ``segmentation`` decoded by pycocotools'
    ``annToMask``; an annotation without one masks nothing, and the official CrowdPose loader masks nothing at
    all). Training skips images without annotations (official); evaluation takes every image.

    Training samples (official ``RandomAffineTransform`` + ``RandomHorizontalFlip``, draws in that order from the
    sample's generator: :class:`~hrnet.seeding.SeededSamples`): the square of side ``short side * s``,
    ``s ~ U(min_scale, max_scale)``, around the image centre shifted by integers ``dx, dy`` in
    ``[-t, t)``, ``t = max_translate * short side * s / 200``, turned by ``U(-max_rotation, max_rotation)``
    degrees, warped to the ``input_size`` square (bilinear, zero border) and, with probability ``flip``,
    mirrored with the keypoint set's flip index. Each output resolution ``r`` (``input_size / 4``, ``/ 2``) gets
    its own warp of joints and mask; a mirrored joint goes to ``r - 1 - x`` there (official; the image's mirror
    is ``input_size - 1 - x``, so the two differ by ``1 - r / input_size`` map pixels). Keys: ``image`` (3, S, S)
    float32 normalised; ``heatmaps`` (J, S/4, S/4), ``heatmaps_2x`` (J, S/2, S/2) (:func:`render_heatmaps`,
    ``sigma`` at both); ``mask``, ``mask_2x`` (S/4, S/4), (S/2, S/2) float32, 1 where the loss counts (also 0
    outside the warped image, official); ``joints`` (``max_num_people``, J, 2) int64 (:func:`joint_indices` at
    1/4); ``image_id``, ``index``.

    Evaluation samples: ``images``, the official test inputs at the ``test_scales`` (largest first, a list of
    (3, h, w) float32), those ``scales``, ``center``, ``scale`` and ``base_size`` (w, h) of the scale-1 input,
    ``image_id``, ``index``.
    """

    def __init__(
        self,
        *,
        ann_file: str | Path,
        img_dir: str | Path,
        train: bool,
        keypoints: KeypointSpec = COCO_KEYPOINTS,
        input_size: int = 512,
        sigma: float = 2.0,
        max_num_people: int = 30,
        min_scale: float = 0.75,
        max_scale: float = 1.5,
        max_rotation: float = 30.0,
        max_translate: float = 40.0,
        flip: float = 0.5,
        test_scales: Sequence[float] = (1.0,),
        seed: int | None = None,
    ) -> None:
        if input_size % 4 or input_size <= 0:
            raise ValueError(f"input_size must be a positive multiple of 4 (maps at 1/4 and 1/2), got {input_size}")
        self.ann_file, self.img_dir = str(ann_file), str(img_dir)
        self.keypoints, self.train, self.input_size = keypoints, bool(train), int(input_size)
        self.sigma, self.max_num_people = float(sigma), int(max_num_people)
        self.min_scale, self.max_scale, self.max_rotation = float(min_scale), float(max_scale), float(max_rotation)
        self.max_translate, self.flip, self.test_scales = float(max_translate), float(flip), ordered_scales(test_scales)
        self.seed, self.epoch = seed, 0
        self._warned = False
        dataset = read_json(self.ann_file, "ann_file")
        self.category_id = self._validate(dataset)
        self.coco = coco_index(dataset)
        self.records = self._records()

    @property
    def output_sizes(self) -> tuple[int, int]:
        """The maps' sides: 1/4 (heatmaps and tags) and 1/2 (heatmaps) of the input."""
        return self.input_size // 4, self.input_size // 2

    def __len__(self) -> int:
        return len(self.records)

    # -- loading --------------------------------------------------------------------------------------------
    def _validate(self, data: Any) -> int:
        """Check the file record by record; return the person category (named ``person``, else the first)."""
        where = f"ann_file {self.ann_file}"
        image_ids = check_coco_images(data, where)
        if not isinstance(data.get("annotations"), list):
            raise ValueError(f"{where}: missing 'annotations' list")
        cats = data.get("categories") or []
        person = next((c["id"] for c in cats if c.get("name") == "person"), cats[0]["id"] if cats else 1)
        expected = 3 * self.keypoints.num_joints
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: annotations[{i}] is not an object")
            ident = ann.get("id", f"#{i}")
            for key in ("id", "image_id", "category_id"):
                if key not in ann:
                    raise ValueError(f"{where}: annotation id {ident} has no {key!r} field")
            if ann["image_id"] not in image_ids:
                raise ValueError(f"{where}: annotation id {ident} refers to unknown image_id {ann['image_id']}")
            ann.setdefault("iscrowd", 0)
            if ann["iscrowd"] not in (0, 1):
                raise ValueError(f"{where}: annotation id {ident} iscrowd {ann['iscrowd']!r} is not 0 or 1")
            if ann["category_id"] != person:
                continue
            kps = ann.setdefault("keypoints", [0] * expected)
            if not is_number_list(kps) or len(kps) != expected:
                raise ValueError(f"{where}: annotation id {ident} keypoints is not a list of 3*K={expected} numbers "
                                 f"for KeypointSpec {self.keypoints.name!r} (K={self.keypoints.num_joints})")
            ann.setdefault("num_keypoints", int(sum(v > 0 for v in kps[2::3])))
            if "segmentation" in ann and not isinstance(ann["segmentation"], (list, dict)):
                raise ValueError(f"{where}: annotation id {ident} segmentation is not polygons (a list) or an RLE "
                                 "(an object)")
        return int(person)

    def _records(self) -> list[ImageRecord]:
        records = []
        for image_id in self.coco.getImgIds():
            info = self.coco.imgs[image_id]
            anns = [a for a in self.coco.imgToAnns.get(image_id, []) if a["category_id"] == self.category_id]
            if self.train and not anns:
                continue
            people = [a for a in anns if a["iscrowd"] == 0 or a["num_keypoints"] > 0]
            joints = np.array([a["keypoints"] for a in people], np.float64)
            joints = joints.reshape(len(people), self.keypoints.num_joints, 3)
            masked = tuple(a for a in anns if (a["iscrowd"] or a["num_keypoints"] == 0) and a.get("segmentation"))
            records.append(ImageRecord(os.path.join(self.img_dir, info["file_name"]), int(image_id),
                                       int(info["height"]), int(info["width"]), joints, masked))
        return records

    def valid_mask(self, record: ImageRecord) -> np.ndarray:
        """(H, W) bool: True where the loss counts (official ``get_mask``: outside crowds and unlabelled people)."""
        covered = np.zeros((record.height, record.width), np.float64)
        for ann in record.masked:
            covered += self.coco.annToMask(ann)
        return covered < 0.5

    # -- samples --------------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = read_image(record.image_file)
        if image.shape[:2] != (record.height, record.width):
            raise ValueError(f"image file {record.image_file} is {image.shape[0]}x{image.shape[1]} (H x W), its "
                             f"record in {self.ann_file} says {record.height}x{record.width}")
        ids = {"image_id": torch.tensor(record.image_id), "index": torch.tensor(index)}
        if not self.train:
            inputs = scaled_inputs(image, self.input_size, self.test_scales)
            return {"images": [torch.from_numpy(x) for x in inputs.images], "scales": torch.tensor(inputs.scales),
                    "center": torch.from_numpy(inputs.center.astype(np.float32)),
                    "scale": torch.from_numpy(inputs.scale.astype(np.float32)),
                    "base_size": torch.tensor(inputs.base_size), **ids}
        return {**self.training_sample(image, record, self.rng_for(index)), **ids}

    def training_sample(self, image: np.ndarray, record: ImageRecord, rng: np.random.Generator) -> dict[str, Any]:
        """The augmented input and its targets at both resolutions (see the class docstring)."""
        short = min(record.height, record.width)
        scale = short / PIXEL_STD * (rng.random() * (self.max_scale - self.min_scale) + self.min_scale)
        rotation = (rng.random() * 2 - 1) * self.max_rotation
        center = np.array([record.width / 2, record.height / 2])
        limit = int(self.max_translate * scale)  # the official randint's bounds: truncated, the upper one left out
        if limit > 0:
            center += rng.integers(-limit, limit, size=2)
        mirror = rng.random() < self.flip
        warped = cv2.warpAffine(image, affine_matrix(center, scale, self.input_size, rotation),
                                (self.input_size, self.input_size))
        sample: dict[str, Any] = {"image": torch.from_numpy(normalize_image(warped[:, ::-1] if mirror else warped))}
        mask = self.valid_mask(record).astype(np.uint8) * 255
        for size, suffix in zip(self.output_sizes, ("", "_2x")):
            matrix = affine_matrix(center, scale, size, rotation)
            valid = cv2.warpAffine(mask, matrix, (size, size)) / 255 > 0.5
            joints = record.joints.copy()
            joints[..., :2] = affine_points(joints[..., :2], matrix).reshape(joints[..., :2].shape)
            if mirror:
                valid, joints = valid[:, ::-1], joints[:, self.keypoints.flip_index]
                joints[..., 0] = size - joints[..., 0] - 1
            sample[f"heatmaps{suffix}"] = torch.from_numpy(render_heatmaps(joints, size, self.sigma))
            sample[f"mask{suffix}"] = torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32))
            if not suffix:
                rows, dropped = joint_indices(joints, size, self.max_num_people)
                sample["joints"] = torch.from_numpy(rows)
                self._tell_dropped(dropped, record)
        return sample

    def _tell_dropped(self, dropped: int, record: ImageRecord) -> None:
        if dropped and not self._warned:
            self._warned = True
            log.warning("image %s has more than max_num_people=%d people in view: %d of them get no tag target "
                        "(their heatmaps stay); said once per process", record.image_file, self.max_num_people,
                        dropped)


# ------------------------------------------------------------------------------------------- datamodule
class BottomUpDataModule(LoaderHooks, L.LightningDataModule):
    """COCO-format keypoints (COCO, CrowdPose with ``keypoints: crowdpose``, or a custom keypoint set) for
    HigherHRNet: :class:`BottomUpCoco` training and evaluation sets.

    ``input_size`` (a square, ``(S, S)``), ``keypoints`` and ``max_num_people`` must equal the model's (the CLI
    links them); ``test_scales`` are the evaluation's (official ``TEST.SCALE_FACTOR``; several must include 1).
    The defaults are the official COCO W32-512 recipe (12 images per GPU).
    """

    def __init__(
        self,
        train_ann: str | None = None,
        train_images: str | None = None,
        val_ann: str | None = None,
        val_images: str | None = None,
        test_ann: str | None = None,
        test_images: str | None = None,
        keypoints: str | dict[str, Any] = "coco",
        input_size: tuple[int, int] = (512, 512),
        sigma: float = 2.0,
        max_num_people: int = 30,
        test_scales: tuple[float, ...] = (1.0,),
        batch_size: int = 12,
        eval_batch_size: int | None = 1,
        num_workers: int = 4,
        min_scale: float = 0.75,
        max_scale: float = 1.5,
        max_rotation: float = 30.0,
        max_translate: float = 40.0,
        flip: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(input_size) != 2 or input_size[0] != input_size[1]:
            raise ValueError(f"data.input_size must be a square (S, S) (HigherHRNet trains on squares), got "
                             f"{tuple(input_size)}")
        self.save_hyperparameters()
        self.keypoints = resolve_keypoints(keypoints)
        self.train_set: BottomUpCoco | None = None
        self.val_set: BottomUpCoco | None = None
        self.test_set: BottomUpCoco | None = None

    def _dataset(self, ann: str | None, images: str | None, train: bool, what: str) -> BottomUpCoco:
        if not ann or not images:
            raise ValueError(f"data: {what}_ann and {what}_images are required for this stage")
        h = self.hparams
        return BottomUpCoco(ann_file=ann, img_dir=images, train=train, keypoints=self.keypoints,
                            input_size=int(h.input_size[0]), sigma=h.sigma, max_num_people=h.max_num_people,
                            min_scale=h.min_scale, max_scale=h.max_scale, max_rotation=h.max_rotation,
                            max_translate=h.max_translate, flip=h.flip, test_scales=h.test_scales, seed=h.seed)

    def setup(self, stage: str) -> None:
        h = self.hparams
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(h.train_ann, h.train_images, True, "train")
        if stage in ("fit", "validate") and self.val_set is None and h.val_ann:
            self.val_set = self._dataset(h.val_ann, h.val_images, False, "val")
        if stage == "test" and self.test_set is None:
            self.test_set = self._dataset(h.test_ann or h.val_ann, h.test_images or h.val_images, False, "test")
