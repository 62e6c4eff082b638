"""The face DataModule: the official landmark lists (WFLW, 300W, AFLW CSV), COFW's ``.mat`` files or mmpose's
COCO-style face JSON as top-down samples (256x256 crops of side ``200 * scale``), Gaussian targets at 1/4."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from ...keypoints.codec import HeatmapCodec
from ...keypoints.geometry import AugmentParams
from ...keypoints.sets import KeypointSpec, resolve_keypoints
from ...keypoints.topdown import (
    EncodeTargets,
    PersonRecord,
    SampleTransform,
    TopDownDataset,
)
from ..base import LoaderHooks
from .datasets import (
    FaceRecord,
    is_matlab_image,
    read_coco_faces,
    read_cofw_mat,
    read_face_image,
    read_landmark_csv,
)
from .official import official_crop

FORMATS = ("csv", "cofw", "coco")
CROPS = ("float", "official")


@dataclass(frozen=True)
class FaceAugment:
    """The official face augmentation (``lib/datasets/face300w.py`` ``__getitem__``): scale x U(1 - sf, 1 + sf),
    rotation U(-rf, rf) degrees with probability ``rotation_prob``, horizontal flip with ``flip_prob``. Uniform
    draws, where pose draws clipped normals (:class:`hrnet.keypoints.geometry.TopDownAugment`)."""

    scale_factor: float = 0.25
    rotation_factor: float = 30.0
    rotation_prob: float = 0.6
    flip: bool = True
    flip_prob: float = 0.5

    def sample(self, joints: np.ndarray, joints_vis: np.ndarray, center: np.ndarray, scale: np.ndarray,
               spec: KeypointSpec, aspect_ratio: float, rng: np.random.Generator) -> AugmentParams:
        sf, rf = self.scale_factor, self.rotation_factor
        scale = np.asarray(scale, np.float32) * np.float32(rng.uniform(1.0 - sf, 1.0 + sf))
        rotation = float(rng.uniform(-rf, rf)) if rng.random() <= self.rotation_prob else 0.0
        flip = bool(self.flip and rng.random() <= self.flip_prob)
        return AugmentParams(np.asarray(center, np.float32).copy(), scale, rotation, flip, False)


class FaceLandmarks(TopDownDataset):
    """:class:`FaceRecord` s as top-down samples (the dict of :class:`TopDownDataset`, plus ``box_size``).

    ``crop``: ``float`` (the affine warp pose uses, the default) or ``official``: evaluation crops made as the
    official ``crop()`` makes them, contrast-stretched to 0..255 as ``scipy.misc.imresize`` did
    (:func:`hrnet.tasks.face.official.official_crop`), so an official checkpoint sees what it was trained on.
    """

    def __init__(self, records: Sequence[FaceRecord], *, keypoints: KeypointSpec, input_size: tuple[int, int],
                 train: bool, augment: FaceAugment | None = None, seed: int | None = None, crop: str = "float",
                 sample_transform: SampleTransform | None = None) -> None:
        if crop not in CROPS:
            raise ValueError(f"data.crop must be one of {CROPS}, got {crop!r}")
        super().__init__(records, keypoints=keypoints, input_size=input_size, train=train,
                         augment=augment or FaceAugment(), seed=seed, sample_transform=sample_transform)
        self.crop = crop

    def read_image(self, record: PersonRecord) -> np.ndarray:
        return read_face_image(record.image_file)

    def load_sample(self, index: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        sample = super().load_sample(index, rng)
        if self.crop == "official" and not self.train:
            rec = self.records[index]
            # The CSV loaders hand crop() float32 (stretched when pre-shrunk), COFW's uint8.
            sample["image"] = official_crop(self.read_image(rec), rec.center, float(rec.scale[0]), self.input_size,
                                            stretch_source=not is_matlab_image(rec.image_file))
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        sample["box_size"] = float(self.records[index].box_size)
        return sample


def read_records(dataset: str, path: str, image_root: str | None, keypoints: KeypointSpec,
                 split: str) -> list[FaceRecord]:
    """The records of one list: ``csv`` (official lists, image names relative to ``image_root``), ``cofw``
    (``COFW_{train,test}_color.mat``), ``coco`` (mmpose's face JSON, file names relative to ``image_root``)."""
    if dataset == "csv":
        return read_landmark_csv(path, image_root or Path(path).parent, keypoints)
    if dataset == "cofw":
        return read_cofw_mat(path, split)
    return read_coco_faces(path, image_root or Path(path).parent, keypoints)


class FaceDataModule(LoaderHooks, L.LightningDataModule):
    """Face landmark data in an official format (``dataset``: ``csv``, ``cofw`` or ``coco``) with the keypoint
    set ``keypoints`` (``wflw``, ``300w``, ``cofw``, ``aflw`` or a mapping). ``subsets`` maps names to lists
    (e.g. WFLW's ``face_landmarks_wflw_test_largepose.csv``) whose images are scored apart at evaluation.

    ``input_size``, ``sigma``, ``unbiased`` and ``keypoints`` must equal the model's (the CLI links them). The
    official recipe: sigma 1.5 (300W 1.0), scale 0.25, rotation 30 with p 0.6, flip, batch 16.
    """

    def __init__(
        self,
        dataset: str = "csv",
        keypoints: str | dict[str, Any] = "300w",
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        image_root: str | None = None,
        subsets: dict[str, str] | None = None,
        input_size: tuple[int, int] = (256, 256),
        sigma: float = 1.5,
        unbiased: bool = True,
        crop: str = "float",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        scale_factor: float = 0.25,
        rotation_factor: float = 30.0,
        rotation_prob: float = 0.6,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in FORMATS:
            raise ValueError(f"data.dataset must be one of {FORMATS}, got {dataset!r}")
        if crop not in CROPS:
            raise ValueError(f"data.crop must be one of {CROPS}, got {crop!r}")
        self.save_hyperparameters()
        self.keypoints = resolve_keypoints(keypoints)
        codec = HeatmapCodec.from_spec(self.keypoints, input_size, sigma=sigma, unbiased=unbiased)
        self.encode = EncodeTargets(codec)
        self.train_set: FaceLandmarks | None = None
        self.val_set: FaceLandmarks | None = None
        self.test_set: FaceLandmarks | None = None

    def _dataset(self, path: str | None, train: bool, what: str) -> FaceLandmarks:
        if not path:
            raise ValueError(f"data.{what}_list is required for this stage")
        h = self.hparams
        records = read_records(h.dataset, path, h.image_root, self.keypoints, "train" if train else "test")
        augment = FaceAugment(h.scale_factor, h.rotation_factor, h.rotation_prob, h.flip)
        return FaceLandmarks(records, keypoints=self.keypoints, input_size=tuple(h.input_size), train=train,
                             augment=augment, seed=h.seed, crop=h.crop, sample_transform=self.encode)

    def subset_files(self) -> dict[str, set[str]]:
        """The image files of each of ``subsets`` (scored apart at evaluation)."""
        h = self.hparams
        return {name: {r.image_file for r in read_records(h.dataset, path, h.image_root, self.keypoints, "test")}
                for name, path in (h.subsets or {}).items()}

    def setup(self, stage: str) -> None:
        h = self.hparams
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(h.train_list, True, "train")
        if stage in ("fit", "validate") and self.val_set is None and h.val_list:
            self.val_set = self._dataset(h.val_list, False, "val")
        if stage == "test" and self.test_set is None:
            self.test_set = self._dataset(h.test_list or h.val_list, False, "test")
