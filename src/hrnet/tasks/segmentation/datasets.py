"""Semantic segmentation data: Cityscapes, plain image/mask folders and the official list files.

``SegmentationDataset`` is the shared sample pipeline (read image and mask, map label ids, augment,
normalise); ``CityscapesSegmentation``, ``FolderSegmentation`` and ``ListSegmentation`` only build its list
of ``SegItem`` (image file, mask file or ``None``, name).

Training augmentation follows the official HRNet-Semantic-Segmentation pipeline (``BaseDataset.gen_sample``
with ``MULTI_SCALE`` and ``FLIP`` on):

1. random scale: ``r = 0.5 + randint(0, SCALE_FACTOR) / 10`` with ``SCALE_FACTOR = 16``, i.e. one of the
   17 values 0.5, 0.6, ..., 2.1 (both ends included) - here ``scale_range=(0.5, 2.1), scale_step=0.1``;
   the image is resized so that its long side is ``int(base_size * r + 0.5)`` (the short side
   ``int(short * long / long_side + 0.5)``), bilinear for the image, nearest for the mask (cv2
   ``INTER_LINEAR`` / ``INTER_NEAREST``, as official);
2. pad the bottom and right up to ``crop_size``: the image with 0 (black, in pixel space, i.e. before the
   mean/std normalisation, as official), the mask with ``ignore_index``;
3. random ``crop_size`` (H, W) crop, top-left corner uniform over all positions (both ends included);
4. horizontal flip with probability 1/2;
5. ``(x / 255 - mean) / std`` with the ImageNet mean/std, RGB channel order (the official code reads BGR
   with cv2 and reverses the channels in ``input_transform``).

Evaluation (``train=False``): no augmentation, the whole image (the official Cityscapes validation runs on
the full 1024x2048 frames). ``eval_long_side`` optionally resizes the *image* (bilinear) to that long side;
the mask then stays at its original resolution, so metrics are computed at full label resolution - upsample
the logits to ``mask.shape`` (the official test path resizes predictions back to the original size too).

Deviations from the official code, all deliberate: the per-sample RNG (reproducible and independent of
worker count, see ``SegmentationDataset``); with ``scale_range=None`` the training crop still happens at the
native size (officially turning ``MULTI_SCALE`` off also turns the crop off); no ``DOWNSAMPLERATE`` (always
1 in the released configs) and no ``RANDOM_BRIGHTNESS`` (off in the released configs); masks are checked
(values outside the class set raise instead of flowing into the loss); ``name`` is the image stem (without
``_leftImg8bit`` for Cityscapes) where the official code uses the label file's stem.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ...files import IMAGENET_MEAN, IMAGENET_STD, normalize_image, read_image
from ...seeding import SeededSamples

__all__ = [
    "CITYSCAPES_CLASSES", "CITYSCAPES_LABEL_NAMES", "CITYSCAPES_LABEL_TO_TRAIN", "CITYSCAPES_PALETTE",
    "CITYSCAPES_TRAIN_TO_LABEL", "CityscapesSegmentation", "FolderSegmentation", "IGNORE_INDEX",
    "ListSegmentation", "SegItem", "SegmentationDataset", "colorize_mask", "label_lut", "official_scale_range",
    "read_mask", "voc_palette",
]

SampleTransform = Callable[[dict[str, Any]], dict[str, Any]]

IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# ------------------------------------------------------------------------------------------- Cityscapes
# The 19 evaluated classes, in train-id order (cityscapesScripts ``helpers/labels.py``).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)

# Their standard colours (RGB), same order.
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# All label ids of ``gtFine/*_labelIds.png`` with their names (-1 = license plate, never in the PNGs).
CITYSCAPES_LABEL_NAMES: dict[int, str] = {
    0: "unlabeled", 1: "ego vehicle", 2: "rectification border", 3: "out of roi", 4: "static", 5: "dynamic",
    6: "ground", 7: "road", 8: "sidewalk", 9: "parking", 10: "rail track", 11: "building", 12: "wall",
    13: "fence", 14: "guard rail", 15: "bridge", 16: "tunnel", 17: "pole", 18: "polegroup",
    19: "traffic light", 20: "traffic sign", 21: "vegetation", 22: "terrain", 23: "sky", 24: "person",
    25: "rider", 26: "car", 27: "truck", 28: "bus", 29: "caravan", 30: "trailer", 31: "train",
    32: "motorcycle", 33: "bicycle", -1: "license plate",
}

# Train id of each evaluated class -> its label id (for writing results in label ids).
CITYSCAPES_TRAIN_TO_LABEL: tuple[int, ...] = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

# Label id -> train id: the 19 evaluated classes get 0..18, every other id (void, parking, rail track,
# guard rail, bridge, tunnel, polegroup, caravan, trailer, license plate) the ignore value 255. This is the
# official ``Cityscapes.label_mapping`` with ``IGNORE_LABEL: 255``.
CITYSCAPES_LABEL_TO_TRAIN: dict[int, int] = {
    label_id: (CITYSCAPES_TRAIN_TO_LABEL.index(label_id) if label_id in CITYSCAPES_TRAIN_TO_LABEL else IGNORE_INDEX)
    for label_id in CITYSCAPES_LABEL_NAMES
}


def official_scale_range(scale_factor: int = 16) -> tuple[float, float]:
    """The official ``TRAIN.SCALE_FACTOR`` as our ``scale_range`` (with ``scale_step=0.1``): 16 -> (0.5, 2.1)."""
    return 0.5, 0.5 + int(scale_factor) / 10.0


def voc_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bits of the class index spread over R, G, B from the high bit down)."""
    colours = []
    for index in range(num_classes):
        rgb = [0, 0, 0]
        value, bit = index, 7
        while value and bit >= 0:
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << bit
            value >>= 3
            bit -= 1
        colours.append((rgb[0], rgb[1], rgb[2]))
    return tuple(colours)


def colorize_mask(mask: np.ndarray | torch.Tensor, palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE,
                  ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Class-index mask (H, W) -> uint8 RGB (H, W, 3); indices outside the palette get ``ignore_color``."""
    if len(palette) > 255:
        raise ValueError(f"colorize_mask supports at most 255 colours, got {len(palette)}")
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    lut = np.empty((256, 3), np.uint8)
    lut[:] = np.asarray(ignore_color, np.uint8)
    if len(palette):
        lut[:len(palette)] = np.asarray(palette, np.uint8)
    m = np.where((m >= 0) & (m < 256), m, 255).astype(np.uint8)
    return lut[m]


def _ranges(values: Sequence[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0..3, 7'."""
    out: list[str] = []
    vals = sorted(set(int(v) for v in values))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}..{vals[j]}" if j > i + 1 else f"{vals[i]}, {vals[j]}")
        i = j + 1
    return ", ".join(out)


def label_lut(num_classes: int, ignore_index: int = IGNORE_INDEX,
              label_map: Mapping[int, int] | None = None, size: int = 256) -> np.ndarray:
    """int64 look-up table raw mask value -> class index, -1 where the value is not allowed.

    Without ``label_map`` the allowed values are ``0..num_classes-1`` and ``ignore_index`` (kept as is). With
    it, the keys are the allowed raw values (negative keys, e.g. Cityscapes' license plate -1, cannot occur
    in an image and are skipped); ``ignore_index`` is always allowed and maps to itself unless it is a key.
    """
    if label_map is None:
        label_map = {i: i for i in range(num_classes)}
    size = max(size, ignore_index + 1, max((int(k) for k in label_map), default=0) + 1)
    lut = np.full(size, -1, np.int64)
    for key, value in label_map.items():
        key, value = int(key), int(value)
        if not (0 <= value < num_classes or value == ignore_index):
            raise ValueError(f"label_map sends {key} to {value}, expected 0..{num_classes - 1} or {ignore_index}")
        if key >= 0:
            lut[key] = value
    if ignore_index >= 0 and lut[ignore_index] < 0:
        lut[ignore_index] = ignore_index
    return lut


def read_mask(path: str) -> np.ndarray:
    """Single-channel mask (8/16-bit grey or palette PNG: the palette indices) as an integer array.

    A three-channel image is accepted only when its channels are equal (a grey mask saved as RGB).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask file {path} not found")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds for broken files
        raise ValueError(f"mask file {path} unreadable ({type(err).__name__}: {err})") from err
    if arr.ndim == 3:
        if mode in ("LA", "PA"):
            arr = arr[..., 0]
        elif arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0],
                                                                                            arr[..., 2]):
            arr = arr[..., 0]
        else:
            raise ValueError(f"mask file {path} is a colour image (mode {mode}); expected single-channel class "
                             f"indices (8-bit grey or palette PNG)")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"mask file {path} has mode {mode}; expected an integer single-channel image")
    return arr


@dataclass(frozen=True)
class SegItem:
    """One sample: image file, mask file (``None`` for unlabelled test images) and a name for outputs."""

    image: str
    mask: str | None
    name: str


def _as_items(items: Sequence[SegItem | tuple[str, str | None, str]]) -> list[SegItem]:
    out = []
    for it in items:
        if isinstance(it, SegItem):
            out.append(it)
        else:
            image, mask, name = it
            out.append(SegItem(str(image), None if mask is None else str(mask), str(name)))
    return out


def _resolve_label_map(label_map: Mapping[int, int] | str | None) -> Mapping[int, int] | None:
    if isinstance(label_map, str):
        if label_map.lower() != "cityscapes":
            raise ValueError(f"label_map must be a dict, None or 'cityscapes', got {label_map!r}")
        return CITYSCAPES_LABEL_TO_TRAIN
    return label_map


class SegmentationDataset(SeededSamples, Dataset):
    """Shared segmentation sample pipeline over a list of ``SegItem`` (see the module docstring for the
    augmentation).

    ``__getitem__`` returns a dict:

    * ``image`` float32 (3, H, W), RGB, normalised with ``mean``/``std``;
    * ``mask`` int64 (H, W) class indices, ``ignore_index`` where unlabelled or padded (absent when the
      item has no mask file);
    * ``name`` (str), ``size`` int64 (2,) the original (H, W), ``index`` int64.

    Training gives ``crop_size`` samples; evaluation gives whole images (sizes may differ between images).

    Args:
        classes: class names; their number fixes the allowed mask values.
        train: augment (scale, pad, crop, flip) or not.
        crop_size: training crop (H, W); official Cityscapes 512x1024.
        base_size: long side at scale 1 (official Cityscapes 2048 = the native long side); ``None`` uses each
            image's own long side.
        scale_range: (min, max) of the random scale; ``None`` turns random scaling off.
        scale_step: scales are ``min + k * scale_step`` for k = 0..(max-min)/step (the official discrete
            choice); ``None`` draws uniformly from the range.
        flip: random horizontal flip in training.
        ignore_index: the mask value that is not a class (padding uses it too).
        label_map: raw mask value -> class index (``"cityscapes"``: label ids -> train ids); every value
            found in a mask must be a key (or ``ignore_index``).
        eval_long_side: in evaluation, resize the image (not the mask) to this long side.
        seed: with a seed, sample ``i`` of epoch ``e`` uses ``numpy.random.default_rng((seed, e, i))``, so
            results do not depend on worker count or order; call ``set_epoch`` each epoch. ``None`` draws
            fresh OS entropy each call.
        sample_transform: gets the finished dict (tensors) and may change it; runs in DataLoader workers.
    """

    def __init__(
        self,
        items: Sequence[SegItem | tuple[str, str | None, str]],
        *,
        classes: Sequence[str],
        train: bool,
        crop_size: tuple[int, int] = (512, 1024),
        base_size: int | None = 2048,
        scale_range: tuple[float, float] | None = (0.5, 2.1),
        scale_step: float | None = 0.1,
        flip: bool = True,
        ignore_index: int = IGNORE_INDEX,
        label_map: Mapping[int, int] | str | None = None,
        eval_long_side: int | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int | None = None,
        sample_transform: SampleTransform | None = None,
    ) -> None:
        if len(crop_size) != 2 or min(int(v) for v in crop_size) <= 0:
            raise ValueError(f"crop_size must be (H, W) with positive entries, got {crop_size!r}")
        if base_size is not None and int(base_size) <= 0:
            raise ValueError(f"base_size must be positive or None, got {base_size!r}")
        if scale_range is not None:
            lo, hi = (float(v) for v in scale_range)
            if not (0 < lo <= hi):
                raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range!r}")
            scale_range = (lo, hi)
        if scale_step is not None and scale_step <= 0:
            raise ValueError(f"scale_step must be positive or None, got {scale_step!r}")
        if eval_long_side is not None and int(eval_long_side) <= 0:
            raise ValueError(f"eval_long_side must be positive or None, got {eval_long_side!r}")
        if not 0 <= int(ignore_index) <= 65535:
            raise ValueError(f"ignore_index must be in 0..65535, got {ignore_index!r}")
        self.classes = tuple(str(c) for c in classes)
        if not self.classes:
            raise ValueError("classes is empty")
        if int(ignore_index) < len(self.classes):
            raise ValueError(f"ignore_index {ignore_index} is a class index ({len(self.classes)} classes)")
        self.items = _as_items(items)
        self.train = bool(train)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.base_size = None if base_size is None else int(base_size)
        self.scale_range = scale_range
        self.scale_step = scale_step
        self.flip = bool(flip)
        self.ignore_index = int(ignore_index)
        self.label_map = _resolve_label_map(label_map)
        self.lut = label_lut(len(self.classes), self.ignore_index, self.label_map)
        self.eval_long_side = None if eval_long_side is None else int(eval_long_side)
        if palette is None:
            palette = CITYSCAPES_PALETTE if self.classes == CITYSCAPES_CLASSES else voc_palette(len(self.classes))
        self.palette = tuple(tuple(int(c) for c in p) for p in palette)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.seed = seed
        self.epoch = 0
        self.sample_transform = sample_transform

    # --------------------------------------------------------------------------------------------- basics
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def colorize(self, mask: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class-index mask -> RGB with this dataset's palette (ignore: black)."""
        return colorize_mask(mask, self.palette)

    # ----------------------------------------------------------------------------------------------- I/O
    def read_mask(self, path: str) -> np.ndarray:
        """Mask file -> int64 class indices (``label_map`` applied), checked against the class set."""
        raw = read_mask(path)
        top = int(raw.max()) if raw.size else 0
        lut = self.lut
        if top >= len(lut):
            lut = np.concatenate([lut, np.full(top + 1 - len(lut), -1, np.int64)])
        if raw.size and int(raw.min()) < 0:
            raise ValueError(f"mask {path} has value {int(raw.min())}, expected {self._allowed()}")
        mask = lut[raw]
        bad = mask < 0
        if bad.any():
            value = int(raw[bad].flat[0])
            raise ValueError(f"mask {path} has value {value}, expected {self._allowed()}")
        return mask

    def _allowed(self) -> str:
        if self.label_map is None:
            return f"0..{self.num_classes - 1} or {self.ignore_index}"
        keys = sorted({int(k) for k in self.label_map if int(k) >= 0} | {self.ignore_index})
        return f"one of {_ranges(keys)} (the label map's keys)"

    def load_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The un-augmented uint8 RGB image (H, W, 3) and int64 mask (H, W) or ``None``."""
        item = self.items[index]
        image = read_image(item.image, color_rgb=True)
        if item.mask is None:
            return image, None
        mask = self.read_mask(item.mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"image {item.image} is {image.shape[0]}x{image.shape[1]} but mask {item.mask} is "
                             f"{mask.shape[0]}x{mask.shape[1]} (H x W)")
        return image, mask

    # ------------------------------------------------------------------------------------- augmentation
    def draw_scale(self, rng: np.random.Generator) -> float:
        """One random scale (official: ``0.5 + randint(0, 16) / 10``)."""
        if self.scale_range is None:
            return 1.0
        lo, hi = self.scale_range
        if self.scale_step is None:
            return float(rng.uniform(lo, hi))
        n = int(math.floor((hi - lo) / self.scale_step + 1e-9))
        k = int(rng.integers(0, n + 1))
        inv = 1.0 / self.scale_step
        if abs(inv - round(inv)) < 1e-9:  # lo + k / 10 exactly as the official code computes it
            return lo + k / float(round(inv))
        return lo + k * self.scale_step

    @staticmethod
    def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
        """(H, W) with the long side ``long_side`` (official rounding ``int(x + 0.5)``)."""
        if height > width:
            return long_side, max(1, int(width * long_side / height + 0.5))
        return max(1, int(height * long_side / width + 0.5)), long_side

    def augment(self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """Training transform on uint8 RGB + int64 mask: scale, pad, crop, flip. Returns the parameters too."""
        h, w = image.shape[:2]
        scale = self.draw_scale(rng)
        if self.scale_range is not None:
            base = self.base_size if self.base_size is not None else max(h, w)
            nh, nw = self.resized_shape(h, w, int(base * scale + 0.5))
            if (nh, nw) != (h, w):
                image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
                if mask is not None:
                    # cv2 INTER_NEAREST has no int64 path: go through int32 (values < 65536).
                    mask = cv2.resize(mask.astype(np.int32), (nw, nh), interpolation=cv2.INTER_NEAREST)
                    mask = mask.astype(np.int64)
        ch, cw = self.crop_size
        h, w = image.shape[:2]
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
            if mask is not None:
                mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
            h, w = h + pad_h, w + pad_w
        x = int(rng.integers(0, w - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        image = image[y:y + ch, x:x + cw]
        if mask is not None:
            mask = mask[y:y + ch, x:x + cw]
        flipped = bool(rng.integers(0, 2)) if self.flip else False
        if flipped:
            image = image[:, ::-1]
            if mask is not None:
                mask = mask[:, ::-1]
        params = {"scale": scale, "pad": (pad_h, pad_w), "crop_xy": (x, y), "flipped": flipped}
        return np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask), params

    def load_sample(self, index: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """The numpy sample before normalisation: uint8 RGB ``image``, int64 ``mask`` (or None), ``size``,
        ``name``, ``index`` and the augmentation ``params`` (training)."""
        item = self.items[index]
        image, mask = self.load_arrays(index)
        size = image.shape[:2]
        params: dict[str, Any] = {}
        if self.train:
            image, mask, params = self.augment(image, mask, rng if rng is not None else self.rng_for(index))
        elif self.eval_long_side is not None:
            nh, nw = self.resized_shape(size[0], size[1], self.eval_long_side)
            if (nh, nw) != tuple(size):
                image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return {"image": image, "mask": mask, "size": size, "name": item.name, "index": index, "params": params}

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.load_sample(index)
        sample: dict[str, Any] = {"image": torch.from_numpy(normalize_image(s["image"], self.mean, self.std))}
        if s["mask"] is not None:
            sample["mask"] = torch.from_numpy(s["mask"].astype(np.int64, copy=False))
        sample["name"] = s["name"]
        sample["size"] = torch.tensor(s["size"], dtype=torch.int64)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return self.sample_transform(sample) if self.sample_transform is not None else sample


# ----------------------------------------------------------------------------------------- datasets
def _check_files(items: Sequence[SegItem], what: str) -> None:
    """Raise naming the first missing file (and how many are missing) before any training starts."""
    missing = [(kind, p) for it in items for kind, p in (("image", it.image), ("mask", it.mask))
               if p is not None and not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{what}: {missing[0][0]} file {missing[0][1]} not found{more}")


class CityscapesSegmentation(SegmentationDataset):
    """Cityscapes in its released folder layout, label ids mapped to the 19 train ids.

    ``root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` with the masks
    ``root/<annotation>/<split>/<city>/<city>_<seq>_<frame>_<annotation>_labelIds.png``
    (``annotation`` ``"gtFine"`` or ``"gtCoarse"``). ``with_masks=None`` loads masks for every split except
    ``"test"`` (whose released masks are empty). ``cities`` restricts to some cities. Other keyword
    arguments go to ``SegmentationDataset`` (classes, palette and label map are Cityscapes').
    """

    def __init__(self, root: str | Path, split: str = "train", *, annotation: str = "gtFine",
                 cities: Sequence[str] | None = None, with_masks: bool | None = None, **kwargs: Any) -> None:
        root = Path(root)
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise FileNotFoundError(f"Cityscapes image folder {image_dir} not found (expected "
                                    f"<root>/leftImg8bit/{split}/<city>/*_leftImg8bit.png)")
        if with_masks is None:
            with_masks = split != "test"
        city_dirs = sorted(p for p in image_dir.iterdir() if p.is_dir())
        if cities is not None:
            wanted = set(cities)
            unknown = wanted - {p.name for p in city_dirs}
            if unknown:
                raise FileNotFoundError(f"cities {sorted(unknown)} not found under {image_dir}")
            city_dirs = [p for p in city_dirs if p.name in wanted]
        suffix = "_leftImg8bit.png"
        items = []
        for city in city_dirs:
            for image in sorted(city.glob(f"*{suffix}")):
                stem = image.name[:-len(suffix)]
                mask = root / annotation / split / city.name / f"{stem}_{annotation}_labelIds.png" \
                    if with_masks else None
                items.append(SegItem(str(image), None if mask is None else str(mask), stem))
        if not items:
            raise FileNotFoundError(f"no *{suffix} images under {image_dir}/<city>/")
        _check_files(items, f"Cityscapes {split} ({root})")
        kwargs.setdefault("train", split in ("train", "train_extra", "trainval"))
        super().__init__(items, classes=CITYSCAPES_CLASSES, label_map=CITYSCAPES_LABEL_TO_TRAIN,
                         palette=CITYSCAPES_PALETTE, **kwargs)
        self.root, self.split, self.annotation = root, split, annotation


class FolderSegmentation(SegmentationDataset):
    """Images in one folder, masks in another, matched by file stem (``<stem><mask_suffix>.png``).

    Masks hold class indices ``0..len(classes)-1`` and ``ignore_index``, or raw values remapped by
    ``label_map``. ``masks_dir=None`` gives image-only samples (inference). Other keyword arguments go to
    ``SegmentationDataset``.
    """

    def __init__(self, images_dir: str | Path, masks_dir: str | Path | None, classes: Sequence[str], *,
                 mask_suffix: str = "", mask_extensions: Sequence[str] = (".png",),
                 image_extensions: Sequence[str] = IMAGE_EXTENSIONS, **kwargs: Any) -> None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise FileNotFoundError(f"image folder {images_dir} not found")
        exts = {e.lower() for e in image_extensions}
        images = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in exts)
        if not images:
            raise FileNotFoundError(f"image folder {images_dir} holds no images ({', '.join(sorted(exts))})")
        stems: dict[str, Path] = {}
        for p in images:
            if p.stem in stems:
                raise ValueError(f"image folder {images_dir} has two images with stem {p.stem!r}: "
                                 f"{stems[p.stem].name} and {p.name}")
            stems[p.stem] = p
        items = []
        if masks_dir is not None:
            masks_dir = Path(masks_dir)
            if not masks_dir.is_dir():
                raise FileNotFoundError(f"mask folder {masks_dir} not found")
            missing: list[tuple[Path, Path]] = []
            for stem, image in stems.items():
                found = [m for m in (masks_dir / f"{stem}{mask_suffix}{e}" for e in mask_extensions) if m.is_file()]
                if not found:
                    missing.append((masks_dir / f"{stem}{mask_suffix}{mask_extensions[0]}", image))
                    continue
                items.append(SegItem(str(image), str(found[0]), stem))
            if missing:
                more = f" (and {len(missing) - 1} more images without a mask)" if len(missing) > 1 else ""
                raise FileNotFoundError(f"mask file {missing[0][0]} not found for image {missing[0][1]}{more}")
        else:
            items = [SegItem(str(image), None, stem) for stem, image in stems.items()]
        super().__init__(items, classes=classes, **kwargs)
        self.images_dir, self.masks_dir = images_dir, masks_dir


class ListSegmentation(SegmentationDataset):
    """The official list files: one sample a line, ``image_path label_path`` (or ``image_path`` alone for
    unlabelled test images), paths relative to ``root`` (or absolute); blank lines and ``#`` comments are
    skipped. ``list_file`` is used as given when it exists, else relative to ``root``.

    ``classes=None`` means Cityscapes (the official lists point at ``*_gtFine_labelIds.png``), and then
    ``label_map="auto"`` is the Cityscapes label-id mapping; with your own ``classes``, ``"auto"`` means no
    mapping. Other keyword arguments go to ``SegmentationDataset``.
    """

    def __init__(self, root: str | Path, list_file: str | Path, *, classes: Sequence[str] | None = None,
                 label_map: Mapping[int, int] | str | None = "auto", **kwargs: Any) -> None:
        root = Path(root)
        path = Path(list_file)
        if not path.is_file():
            if (root / path).is_file():
                path = root / path
            else:
                raise FileNotFoundError(f"list file {list_file} not found (also looked for {root / path})")
        items: list[SegItem] = []
        labelled: bool | None = None
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) not in (1, 2):
                raise ValueError(f"list file {path} line {number}: expected 'image_path [label_path]', got {line!r}")
            if labelled is None:
                labelled = len(fields) == 2
            elif labelled != (len(fields) == 2):
                raise ValueError(f"list file {path} line {number}: mixes lines with and without a label path")
            image = root / fields[0]
            mask = root / fields[1] if len(fields) == 2 else None
            items.append(SegItem(str(image), None if mask is None else str(mask), Path(fields[0]).stem))
        if not items:
            raise ValueError(f"list file {path} lists no samples")
        _check_files(items, f"list file {path}")
        if isinstance(label_map, str) and label_map == "auto":
            label_map = CITYSCAPES_LABEL_TO_TRAIN if classes is None else None
        super().__init__(items, classes=CITYSCAPES_CLASSES if classes is None else classes, label_map=label_map,
                         **kwargs)
        self.root, self.list_file = root, path
