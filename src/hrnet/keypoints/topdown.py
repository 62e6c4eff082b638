"""Top-down keypoints: one crop per person, and heatmaps back to image pixels.

``TopDownDataset`` is the shared sample pipeline (read image, augment, crop, normalise); datasets such as
``hrnet.tasks.pose.coco.CocoKeypoints`` and ``hrnet.tasks.pose.mpii.MpiiKeypoints`` only build its list of
person records. ``EncodeTargets`` adds the codec's training targets; ``predict_heatmaps`` (flip test) and
``heatmaps_to_image_keypoints`` decode predictions through each crop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..files import normalize_image, read_image
from ..seeding import SeededSamples
from .codec import HeatmapCodec, flip_back
from .geometry import PIXEL_STD, TopDownAugment, top_down_transform, transform_preds
from .sets import KeypointSpec

__all__ = [
    "EncodeTargets", "PersonRecord", "TopDownDataset", "heatmaps_to_image_keypoints", "predict_heatmaps",
]

SampleTransform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class PersonRecord:
    """One top-down sample before augmentation: joints in image pixels, ``joints_vis`` 0/1."""

    image_file: str
    image_id: int
    center: np.ndarray  # (2,) float32
    scale: np.ndarray  # (2,) float32, box size / 200
    joints: np.ndarray  # (K, 2) float32
    joints_vis: np.ndarray  # (K,) float32
    score: float = 1.0
    ann_id: int = -1


class TopDownDataset(SeededSamples, Dataset):
    """Shared top-down sample pipeline over a list of ``PersonRecord``.

    ``__getitem__`` returns a dict of tensors:

    * ``image`` float32 (3, H, W), ImageNet-normalised (RGB unless ``color_rgb=False``);
    * ``joints`` float32 (K, 2) in input-crop pixels (x, y); invisible joints are (0, 0);
    * ``joints_vis`` float32 (K,) 0/1 (see ``drop_out_of_crop``);
    * ``center``, ``scale`` float32 (2,) of the crop actually taken (after augmentation; the center is in
      flipped-image coordinates when ``flipped``), ``rotation`` float32 degrees, ``flipped`` bool;
    * ``image_id`` int64, ``ann_id`` int64 (-1 for detections / MPII), ``score`` float32 (box score, 1 for
      ground-truth boxes), ``area`` float32 ``prod(scale * 200)`` (the box area the official evaluation uses
      for OKS rescoring); ``index`` int64; plus ``image_file`` (str).

    Randomness: with ``seed`` set, sample ``i`` of epoch ``e`` uses ``numpy.random.default_rng((seed, e, i))``,
    so results do not depend on worker count or order; call ``set_epoch`` each epoch. With ``seed=None``
    each call draws fresh OS entropy.

    ``sample_transform`` (optional) gets the finished dict (tensors) and may add keys, e.g. heatmap targets
    from :mod:`hrnet.keypoints.codec`; it runs inside DataLoader workers.
    """

    def __init__(
        self,
        records: Sequence[PersonRecord],
        *,
        keypoints: KeypointSpec,
        input_size: tuple[int, int],
        train: bool,
        augment: TopDownAugment | None,
        color_rgb: bool = True,
        seed: int | None = None,
        drop_out_of_crop: bool = False,
        sample_transform: SampleTransform | None = None,
    ) -> None:
        if len(input_size) != 2 or min(int(v) for v in input_size) <= 0:
            raise ValueError(f"input_size must be (H, W) with positive entries, got {input_size!r}")
        self.records = list(records)
        self.keypoints = keypoints
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = bool(train)
        self.augment = augment if train else None
        self.color_rgb = color_rgb
        self.seed = seed
        self.epoch = 0
        self.drop_out_of_crop = drop_out_of_crop
        self.sample_transform = sample_transform

    @property
    def num_joints(self) -> int:
        return self.keypoints.num_joints

    @property
    def aspect_ratio(self) -> float:
        """Model input ``W / H``."""
        return self.input_size[1] / self.input_size[0]

    def __len__(self) -> int:
        return len(self.records)

    def read_image(self, record: PersonRecord) -> np.ndarray:
        """The (H, W, 3) uint8 image of ``record`` (RGB unless ``color_rgb=False``); datasets whose images
        are not plain files override it."""
        return read_image(record.image_file, self.color_rgb)

    def load_sample(self, index: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """The numpy sample (uint8 (H, W, 3) crop, float joints, ...) before normalisation."""
        rec = self.records[index]
        image = self.read_image(rec)
        if self.augment is not None and rng is None:
            rng = self.rng_for(index)
        out = top_down_transform(
            image, rec.joints, rec.joints_vis, rec.center, rec.scale, self.input_size, self.keypoints,
            augment=self.augment, rng=rng, drop_out_of_crop=self.drop_out_of_crop,
        )
        out.update(image_file=rec.image_file, image_id=rec.image_id, ann_id=rec.ann_id, score=rec.score,
                   area=float(np.prod(out["scale"].astype(np.float64) * PIXEL_STD)), index=index)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.load_sample(index)
        sample = {
            "image": torch.from_numpy(normalize_image(s["image"])),
            "joints": torch.from_numpy(s["joints"]),
            "joints_vis": torch.from_numpy(s["joints_vis"]),
            "center": torch.from_numpy(np.asarray(s["center"], dtype=np.float32)),
            "scale": torch.from_numpy(np.asarray(s["scale"], dtype=np.float32)),
            "rotation": torch.tensor(s["rotation"], dtype=torch.float32),
            "flipped": torch.tensor(s["flipped"]),
            "image_id": torch.tensor(s["image_id"], dtype=torch.int64),
            "ann_id": torch.tensor(s["ann_id"], dtype=torch.int64),
            "score": torch.tensor(s["score"], dtype=torch.float32),
            "area": torch.tensor(s["area"], dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.int64),
            "image_file": s["image_file"],
        }
        return self.sample_transform(sample) if self.sample_transform is not None else sample


@torch.no_grad()
def predict_heatmaps(model: torch.nn.Module, images: Tensor, flip_index: Sequence[int] | None = None,
                     shift: bool = True) -> Tensor:
    """(B, 3, H, W) -> (B, K, H/4, W/4); with ``flip_index``, averaged with the flipped image's
    heatmaps mirrored back (and shifted one pixel, as the official flip test)."""
    heatmaps = model(images).float()
    if flip_index is not None:
        flipped = model(torch.flip(images, dims=[3])).float()
        heatmaps = (heatmaps + flip_back(flipped, flip_index, shift=shift)) / 2
    return heatmaps


def heatmaps_to_image_keypoints(codec: HeatmapCodec, heatmaps: Tensor, centers: Tensor, scales: Tensor,
                                method: str | None = None) -> np.ndarray:
    """Decode heatmaps and map them back through each crop: (B, K, 3) [x, y, confidence] in image pixels."""
    coords, maxvals = codec.decode(heatmaps.detach().float().cpu().numpy(), method)
    size_wh = (codec.heatmap_size[1], codec.heatmap_size[0])
    out = np.zeros((*coords.shape[:2], 3), dtype=np.float32)
    for i in range(coords.shape[0]):
        out[i, :, :2] = transform_preds(coords[i], centers[i].cpu().numpy(), scales[i].cpu().numpy(), size_wh)
    out[..., 2] = maxvals[..., 0]
    return out


class EncodeTargets:
    """DataLoader-side target encoding: adds ``target`` (K, h, w) and ``target_weight`` (K, 1)."""

    def __init__(self, codec: HeatmapCodec) -> None:
        self.codec = codec

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        target, weight = self.codec.encode(sample["joints"].numpy(), sample["joints_vis"].numpy())
        sample["target"] = torch.from_numpy(target)
        sample["target_weight"] = torch.from_numpy(weight).reshape(-1, 1)
        return sample
