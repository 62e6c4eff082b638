"""The classification presets' preprocessing (:class:`DataConfig`, timm's ``pretrained_cfg``), without Lightning, so
prediction and export use it too.

* evaluation (timm ``transforms_imagenet_eval``, official ``tools/valid.py``): resize the short side to
  ``floor(size / crop_pct)`` (224 / 0.875 = 256), centre crop ``input_size``, ``ToTensor``, ``Normalize``;
* training (official ``tools/train.py``): ``RandomResizedCrop(size)`` (scale 0.08-1, ratio 3/4-4/3), horizontal
  flip, ``ToTensor``, ``Normalize``; the random draws come from the sample's numpy generator, so they depend on
  (seed, epoch, sample) only.

Images are decoded with PIL and converted to RGB, as torchvision's ``ImageFolder`` (``pil_loader``) does for
the official code and timm.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ...files import IMAGENET_MEAN, IMAGENET_STD, truncation

INTERPOLATIONS = ("bilinear", "bicubic")
"""torchvision ``InterpolationMode`` values the data configs use."""


def _functional() -> Any:
    """``torchvision.transforms.functional``, imported on first use (torchvision takes about 1.5 s to import, and
    ``hrnet predict``'s command line imports this module for every task)."""
    from torchvision.transforms import functional

    return functional


def _mode(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name)

Picture = np.ndarray | Image.Image
Transform = Callable[[Picture, np.random.Generator | None], Tensor]
"""An image (RGB uint8 (H, W, 3) array or PIL image) and the sample's generator -> float32 (3, H, W)."""


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DataConfig:
    """Preprocessing of a preset, as timm's ``pretrained_cfg``: ``input_size`` (H, W), ``crop_pct`` (eval resize
    to ``floor(size / crop_pct)``), ``interpolation`` (``bilinear`` / ``bicubic``), RGB ``mean`` / ``std``."""

    input_size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"input_size must be (H, W) with positive sizes, got {self.input_size!r}")
        if not self.crop_pct > 0:
            raise ValueError(f"crop_pct must be positive, got {self.crop_pct!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean / std must be 3 values (RGB), std positive; got {self.mean!r} / {self.std!r}")

    @property
    def resize_size(self) -> tuple[int, int]:
        """The evaluation resize target (H, W): ``floor(size / crop_pct)`` per side (timm)."""
        return math.floor(self.input_size[0] / self.crop_pct), math.floor(self.input_size[1] / self.crop_pct)


CLASSIFICATION_PRESETS = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w30", "hrnet_w32",
                          "hrnet_w40", "hrnet_w44", "hrnet_w48", "hrnet_w64")
# timm/models/hrnet.py ``default_cfgs``: every preset's ``ms_in1k`` (the official weights) is ``_cfg()`` itself;
# the other tags change one field. timm's default tag (the first listed) is gluon_in1k for the two small models
# and ms_aug_in1k for hrnet_w18.
_TIMM_TAGS: dict[tuple[str, str], dict[str, Any]] = {
    ("hrnet_w18_small", "gluon_in1k"): {"interpolation": "bicubic"},
    ("hrnet_w18_small_v2", "gluon_in1k"): {"interpolation": "bicubic"},
    ("hrnet_w18", "ms_aug_in1k"): {"crop_pct": 0.95},
}


def data_config(preset: str, tag: str = "ms_in1k") -> DataConfig:
    """The preprocessing of ``preset`` for timm's pretrained ``tag``. ``ms_in1k`` (the official
    HRNet-Image-Classification weights) is timm's ``_cfg``: 224 x 224, crop_pct 0.875, bilinear, ImageNet
    mean/std, the same as the official ``tools/valid.py`` (``Resize(int(224 / 0.875))``, ``CenterCrop(224)``).
    ``gluon_in1k`` (hrnet_w18_small, hrnet_w18_small_v2) is bicubic; ``ms_aug_in1k`` (hrnet_w18) crops 0.95."""
    if preset not in CLASSIFICATION_PRESETS:
        raise ValueError(f"preset {preset!r} is not a classification preset; expected one of {CLASSIFICATION_PRESETS}")
    tags = ["ms_in1k", *(tag for name, tag in _TIMM_TAGS if name == preset)]
    if tag not in tags:
        raise ValueError(f"tag {tag!r} unknown for {preset}; expected one of {tags} (timm's pretrained tags)")
    return DataConfig(**_TIMM_TAGS.get((preset, tag), {}))


# ------------------------------------------------------------------------------------------ transforms
def decode_image(data: bytes, where: str) -> Image.Image:
    """Encoded image bytes -> an RGB PIL image (torchvision's ``pil_loader``: ``Image.open(f).convert("RGB")``).
    A truncated or undecodable file is a one-line ``ValueError`` naming ``where``."""
    problem = truncation(data)
    if problem:
        raise ValueError(f"{where} is truncated ({problem})")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except Exception as err:
        raise ValueError(f"{where} unreadable ({type(err).__name__}: {err})") from err


def _as_pil(image: Picture) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {got}")
    return Image.fromarray(image)


def _to_normalized(image: Image.Image, cfg: DataConfig) -> Tensor:
    """PIL RGB -> float32 (3, H, W): ``ToTensor`` then ``Normalize``, the very calls timm makes."""
    F = _functional()
    return F.normalize(F.to_tensor(image), torch.tensor(cfg.mean), torch.tensor(cfg.std))


@dataclass(frozen=True)
class EvalTransform:
    """timm's ``transforms_imagenet_eval`` (crop mode ``center``) for ``cfg``: a square ``resize_size`` resizes the
    short side (torchvision ``Resize(int)``; the long side ``int(s * long / short)``); a non-square one scales by
    ``min(h / H', w / W')`` with rounded sides (timm ``ResizeKeepRatio``, with ``cfg.interpolation`` as timm >= 1.0.31).
    Then ``CenterCrop(input_size)``, ``ToTensor``, ``Normalize``. The generator is ignored."""

    cfg: DataConfig

    def __call__(self, image: Picture, rng: np.random.Generator | None = None) -> Tensor:
        F, pil = _functional(), _as_pil(image)
        (sh, sw), mode = self.cfg.resize_size, _mode(self.cfg.interpolation)
        if sh == sw:
            pil = F.resize(pil, sh, interpolation=mode)
        else:
            ratio = min(pil.height / sh, pil.width / sw)
            pil = F.resize(pil, [round(pil.height / ratio), round(pil.width / ratio)], interpolation=mode)
        return _to_normalized(F.center_crop(pil, list(self.cfg.input_size)), self.cfg)


def eval_transform(cfg: DataConfig) -> EvalTransform:
    """The evaluation transform of ``cfg``: RGB uint8 (H, W, 3) -> float32 (3, *input_size) (:class:`EvalTransform`)."""
    return EvalTransform(cfg)


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng``: up to 10 tries of an
    area fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, else the centre crop with the
    aspect ratio clamped to ``ratio``."""
    area, log_ratio = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class TrainTransform:
    """The official training transform: :func:`random_resized_crop_box` resized to ``input_size`` with
    ``cfg.interpolation``, a horizontal flip with probability 1/2 (``flip``), then ``augment(image, rng)`` if given
    (any extra PIL -> PIL augmentation drawing from ``rng``), ``ToTensor``, ``Normalize``. Without a generator
    (``rng=None``) it draws fresh OS entropy."""

    cfg: DataConfig
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    augment: Callable[[Image.Image, np.random.Generator], Image.Image] | None = None

    def __call__(self, image: Picture, rng: np.random.Generator | None = None) -> Tensor:
        rng = rng if rng is not None else np.random.default_rng()
        pil = _as_pil(image)
        top, left, h, w = random_resized_crop_box(pil.height, pil.width, rng, self.scale, self.ratio)
        F = _functional()
        pil = F.resized_crop(pil, top, left, h, w, list(self.cfg.input_size), interpolation=_mode(self.cfg.interpolation))
        if self.flip and rng.random() < 0.5:
            pil = F.hflip(pil)
        if self.augment is not None:
            pil = self.augment(pil, rng)
        return _to_normalized(pil, self.cfg)


def train_transform(cfg: DataConfig, scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                    augment: Callable[[Image.Image, np.random.Generator], Image.Image] | None = None) -> TrainTransform:
    """The training transform of ``cfg`` (:class:`TrainTransform`): (image, rng) -> float32 (3, *input_size)."""
    return TrainTransform(cfg, tuple(scale), tuple(ratio), flip, augment)
