"""COCO instances for detection and instance segmentation: the dataset and the DataModule."""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...files import is_number_list, read_image, read_json
from ...seeding import SeededSamples
from ..base import LoaderHooks, check_coco_images

log = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    """One image and its non-crowd objects: ``boxes`` (N, 4) x1, y1, x2, y2 in pixels, ``labels`` (N,) in
    1..K (0 is the background), ``segmentations`` (N) COCO polygons or RLEs."""

    image_id: int
    file: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    segmentations: list[Any]


def collate_detection(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Detection batches stay lists (images differ in size; torchvision's transform batches them)."""
    return {key: [s[key] for s in samples] for key in samples[0]}


class CocoInstances(SeededSamples, Dataset):
    """COCO-format instances (``instances_{train,val}2017.json`` or any file with its own ``categories``).

    As mmdetection's ``CocoDataset``: category ids map to contiguous labels 1..K in id order (0 is the
    background, torchvision's convention; :attr:`category_ids` maps back); crowd regions are left out of the
    targets (COCO's evaluation ignores them); a box of width or height below 1 pixel, or outside the image,
    is skipped and counted (:attr:`skipped`); in training, images left without objects are skipped. A record
    of the wrong type, an unknown ``category_id`` or a polygon of fewer than 3 points is a one-line error
    naming the file and the annotation.

    ``__getitem__`` gives ``image`` float32 (3, H, W) in 0..1 (the detector normalises and resizes) and
    ``target`` with ``boxes`` (N, 4), ``labels`` (N,), ``masks`` uint8 (N, H, W) when ``masks``, ``image_id``;
    training flips horizontally with probability 0.5 (seeded per sample and epoch).
    """

    def __init__(self, ann_file: str | Path, img_dir: str | Path, *, train: bool, flip: bool = True,
                 masks: bool = True, seed: int | None = 0) -> None:
        self.ann_file, self.img_dir = str(ann_file), Path(img_dir)
        self.train, self.flip, self.masks, self.seed = train, flip, masks, seed
        data = read_json(ann_file, "ann_file")
        where = f"ann_file {self.ann_file}"
        image_ids = check_coco_images(data, where)
        if not isinstance(data.get("annotations"), list):
            raise ValueError(f"{where}: missing 'annotations' list")
        if not isinstance(data.get("categories"), list) or not data["categories"]:
            raise ValueError(f"{where}: missing 'categories' list")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in categories]
        self.class_names = [str(c.get("name", c["id"])) for c in categories]
        label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        self.skipped: Counter[str] = Counter()
        objects: dict[int, list[tuple[list[float], int, Any]]] = {i: [] for i in image_ids}
        for i, ann in enumerate(data["annotations"]):
            box = self._checked(ann, i, where, image_ids, label_of)
            if box is not None:
                objects[ann["image_id"]].append((box, label_of[ann["category_id"]], ann.get("segmentation")))
        self.records = [self._record(img, objects[img["id"]]) for img in data["images"]]
        if train:
            empty = sum(1 for r in self.records if not len(r.labels))
            self.records = [r for r in self.records if len(r.labels)]
            if empty:
                self.skipped["images without objects"] += empty
        if self.skipped:
            log.info("%s: skipped %s", self.ann_file, ", ".join(f"{n} {why}" for why, n in self.skipped.items()))
        with contextlib.redirect_stdout(io.StringIO()):
            from pycocotools.coco import COCO

            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()

    def _checked(self, ann: Any, i: int, where: str, image_ids: set[int],
                 label_of: dict[int, int]) -> list[float] | None:
        """The annotation's box as x1, y1, x2, y2 clipped to its image, or ``None`` for crowd / skipped ones."""
        if not isinstance(ann, dict):
            raise ValueError(f"{where}: annotations[{i}] is not an object")
        ident = ann.get("id", f"#{i}")
        for key in ("image_id", "bbox", "category_id"):
            if key not in ann:
                raise ValueError(f"{where}: annotation id {ident} has no {key!r} field")
        if ann["image_id"] not in image_ids:
            raise ValueError(f"{where}: annotation id {ident} refers to unknown image_id {ann['image_id']}")
        if ann["category_id"] not in label_of:
            raise ValueError(f"{where}: annotation id {ident} has category_id {ann['category_id']!r}, not one of "
                             f"the categories {sorted(label_of)}")
        if not is_number_list(ann["bbox"], 4):
            raise ValueError(f"{where}: annotation id {ident} bbox {ann['bbox']!r} is not [x, y, w, h]")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise ValueError(f"{where}: annotation id {ident} iscrowd {ann['iscrowd']!r} is not 0 or 1")
        if self.masks:
            _check_segmentation(ann.get("segmentation"), f"{where}: annotation id {ident}")
        if ann.get("iscrowd", 0):
            self.skipped["crowd regions"] += 1
            return None
        x, y, w, h = ann["bbox"]
        if w < 1 or h < 1:
            self.skipped["boxes under 1 pixel"] += 1
            return None
        return [float(x), float(y), float(x + w), float(y + h)]

    def _record(self, img: dict[str, Any], objects: list[tuple[list[float], int, Any]]) -> ImageRecord:
        width, height = int(img["width"]), int(img["height"])
        kept = []
        for box, label, segmentation in objects:
            x1, y1, x2, y2 = max(box[0], 0.0), max(box[1], 0.0), min(box[2], width), min(box[3], height)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                self.skipped["boxes outside their image"] += 1
                continue
            kept.append(([x1, y1, x2, y2], label, segmentation))
        boxes = np.array([k[0] for k in kept], np.float32).reshape(-1, 4)
        return ImageRecord(int(img["id"]), str(self.img_dir / img["file_name"]), width, height, boxes,
                           np.array([k[1] for k in kept], np.int64), [k[2] for k in kept])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = read_image(rec.file)
        if image.shape[:2] != (rec.height, rec.width):
            raise ValueError(f"image file {rec.file} is {image.shape[0]}x{image.shape[1]} but ann_file "
                             f"{self.ann_file} says {rec.height}x{rec.width} (H x W)")
        target: dict[str, Tensor] = {"boxes": torch.from_numpy(rec.boxes.copy()),
                                     "labels": torch.from_numpy(rec.labels.copy())}
        masks = decode_masks(rec.segmentations, rec.height, rec.width) if self.masks else None
        if self.train and self.flip and self.rng_for(index).random() < 0.5:
            image = image[:, ::-1]
            target["boxes"] = target["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1.0, 1, -1, 1]) + \
                torch.tensor([rec.width, 0.0, rec.width, 0])
            masks = None if masks is None else masks[:, :, ::-1]
        if masks is not None:
            target["masks"] = torch.from_numpy(np.ascontiguousarray(masks))
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        return {"image": tensor, "target": target, "image_id": rec.image_id}


def _check_segmentation(segmentation: Any, where: str) -> None:
    """A COCO ``segmentation``: a list of polygons (each ``[x1, y1, x2, y2, ...]``, >= 3 points) or an RLE dict."""
    if isinstance(segmentation, dict):
        if not {"counts", "size"} <= set(segmentation):
            raise ValueError(f"{where}: segmentation RLE needs 'counts' and 'size', got keys {sorted(segmentation)}")
        return
    if not isinstance(segmentation, list) or not segmentation:
        raise ValueError(f"{where}: segmentation must be a list of polygons or an RLE dict, got {segmentation!r:.80}")
    for polygon in segmentation:
        if not is_number_list(polygon) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"{where}: polygon {polygon!r:.80} is not [x1, y1, x2, y2, ...] with at least 3 points")


def decode_masks(segmentations: list[Any], height: int, width: int) -> np.ndarray:
    """COCO polygons / RLEs -> uint8 (N, H, W) masks (pycocotools: polygons merged per object)."""
    from pycocotools import mask as mask_utils

    out = np.zeros((len(segmentations), height, width), np.uint8)
    for i, segmentation in enumerate(segmentations):
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        out[i] = mask_utils.decode(rle)
    return out


class DetectionDataModule(LoaderHooks, L.LightningDataModule):
    """COCO-format instances: ``train_ann`` / ``train_images`` and ``val_ann`` / ``val_images`` (the official
    layout: ``annotations/instances_train2017.json`` and ``train2017/``). ``masks`` must be true for Mask
    R-CNN models (the CLI links it to the model)."""

    collate_fn = staticmethod(collate_detection)

    def __init__(self, train_ann: str | None = None, train_images: str | None = None, val_ann: str | None = None,
                 val_images: str | None = None, masks: bool = True, flip: bool = True, batch_size: int = 2,
                 eval_batch_size: int | None = None, num_workers: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()

    def _dataset(self, ann: str | None, images: str | None, train: bool, what: str) -> CocoInstances:
        if not ann or not images:
            raise ValueError(f"data: {what}_ann and {what}_images are required for this stage")
        h = self.hparams
        return CocoInstances(ann, images, train=train, flip=h.flip, masks=h.masks, seed=h.seed)

    def setup(self, stage: str) -> None:
        h = self.hparams
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(h.train_ann, h.train_images, True, "train")
        if stage in ("fit", "validate", "test") and self.val_set is None and h.val_ann:
            self.val_set = self._dataset(h.val_ann, h.val_images, False, "val")
