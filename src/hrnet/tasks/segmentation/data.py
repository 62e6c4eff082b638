"""The segmentation DataModule: Cityscapes, a folder of images and masks, or the official list files."""

from __future__ import annotations

import lightning as L

from ..base import LoaderHooks
from .datasets import CityscapesSegmentation, FolderSegmentation, ListSegmentation, SegmentationDataset


class SegDataModule(LoaderHooks, L.LightningDataModule):
    """Segmentation data: ``cityscapes`` (real folder layout, label ids -> train ids), ``folder``
    (images + masks of class indices), or ``list`` (the official list files).

    Training, as official: random scale (``base_size`` long side x 0.5, 0.6, ... 2.1), pad, random
    ``crop_size`` (H, W) crop, flip; evaluation on whole images.
    """

    def __init__(
        self,
        dataset: str = "cityscapes",
        root: str = "data/cityscapes",
        train_split: str = "train",
        val_split: str = "val",
        images: str | None = None,
        masks: str | None = None,
        val_images: str | None = None,
        val_masks: str | None = None,
        classes: list[str] | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
        crop_size: tuple[int, int] = (512, 1024),
        base_size: int | None = 2048,
        scale_range: tuple[float, float] | None = (0.5, 2.1),
        scale_step: float | None = 0.1,
        flip: bool = True,
        ignore_index: int = 255,
        batch_size: int = 3,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in ("cityscapes", "folder", "list"):
            raise ValueError(f"data.dataset must be 'cityscapes', 'folder' or 'list', got {dataset!r}")
        self.save_hyperparameters()
        self.train_set: SegmentationDataset | None = None
        self.val_set: SegmentationDataset | None = None

    def _dataset(self, train: bool) -> SegmentationDataset:
        h = self.hparams
        aug = dict(train=train, crop_size=tuple(h.crop_size), base_size=h.base_size,
                   scale_range=tuple(h.scale_range) if h.scale_range else None, scale_step=h.scale_step,
                   flip=h.flip, ignore_index=h.ignore_index, seed=h.seed)
        if h.dataset == "cityscapes":
            return CityscapesSegmentation(h.root, split=h.train_split if train else h.val_split, **aug)
        if h.dataset == "folder":
            images, masks = (h.images, h.masks) if train else (h.val_images, h.val_masks)
            if not images or not masks or not h.classes:
                raise ValueError("data.dataset 'folder' needs images/masks (val_images/val_masks) and classes")
            return FolderSegmentation(images, masks, h.classes, **aug)
        list_file = h.train_list if train else h.val_list
        if not list_file:
            raise ValueError("data.dataset 'list' needs train_list / val_list")
        return ListSegmentation(h.root, list_file, **aug)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(True)
        if stage in ("fit", "validate", "test") and self.val_set is None:
            self.val_set = self._dataset(False)
