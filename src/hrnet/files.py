"""Files in and out, shared by every task: images (read as RGB uint8), ImageNet normalisation, the inputs of
``hrnet predict`` (an image, a folder of images, a video), JSON files with one-line errors, atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def write_image(path: Path, image: np.ndarray, rgb: bool = True) -> None:
    """Encode ``image`` (RGB uint8 (H, W, 3) when ``rgb``, else written as it is, e.g. a label map) in the
    format of ``path``'s suffix and write it atomically (:func:`write_atomic`)."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb and image.ndim == 3 else image
    ok, encoded = cv2.imencode(path.suffix, pixels)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as {path.suffix} ({path})")
    write_atomic(path, encoded.tobytes())


def read_image(path: str, color_rgb: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) image, RGB when ``color_rgb``.

    Decoded by OpenCV as the official loaders do (``cv2.IMREAD_COLOR``): grey and palette images become three
    equal / looked-up channels, RGBA drops alpha, 16-bit images are scaled to 8 bits, and EXIF orientation is
    ignored (the official annotations are in the stored pixel frame). A missing, unreadable or truncated file
    is a one-line error naming it: OpenCV half-decodes a truncated JPEG or PNG without a word, so the file's
    end is checked first (:func:`truncation`).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path} not found")
    data = Path(path).read_bytes()
    problem = truncation(data)
    if problem:
        raise ValueError(f"image file {path} is truncated ({problem})")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f"image file {path} unreadable (cv2.imread failed: corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color_rgb else image


def truncation(data: bytes) -> str | None:
    """Why encoded image ``data`` is cut short, or ``None``: a JPEG whose last scan (the last SOS marker) is
    not followed by the EOI marker (``FF D9`` cannot occur inside entropy-coded data, where ``FF`` is stuffed
    as ``FF 00``), or a PNG without its ``IEND`` chunk. Other formats are not checked."""
    if data[:2] == b"\xff\xd8":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            return "JPEG without its end-of-image marker"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "PNG without its IEND chunk"
    return None


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image_rgb: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W): ``(x / 255 - mean) / std`` (torchvision ToTensor + Normalize)."""
    x = image_rgb.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def iter_inputs(source: Path) -> Iterator[Path]:
    if source.is_dir():
        yield from sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        yield source
    else:
        raise FileNotFoundError(f"input {source} not found (expected an image, a folder of images or a video)")


# ------------------------------------------------------------------------------------------------- COCO
def coco_index(dataset: dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` over an already-read (and checked) dataset dict, indexed without its console output."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON of ``path``; a missing file or bad JSON is a one-line error naming ``what`` and the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path}: not valid JSON ({err})") from err


def is_number_list(values: Any, n: int | None = None) -> bool:
    """``values`` is a list of ``n`` (any count when ``None``) ints or floats, not bools."""
    return (isinstance(values, (list, tuple)) and (n is None or len(values) == n)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))
