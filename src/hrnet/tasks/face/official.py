"""The official face evaluation arithmetic (github HRNet/HRNet-Facial-Landmark-Detection), as an option.

* :func:`official_center_scale` / :func:`cofw_center_scale`: what the loaders (``lib/datasets/*.py``
  ``__getitem__``) hand ``crop()`` and ``decode_preds`` at test time: the centre as float32
  (``torch.Tensor``), the scale times 1.25 in float64.
* :func:`official_crop`: ``lib/utils/transforms.py crop``: integer corners from ``transform_pixel``, a
  zero-padded copy, then ``scipy.misc.imrotate`` / ``imresize`` (PIL bilinear), including the
  pre-shrink of the whole image when the crop is over twice the output size.
* :func:`official_decode`: ``lib/core/evaluation.py decode_preds``: 1-based argmax, a quarter pixel
  toward the larger neighbour, +0.5, and ``transform_pixel(..., invert=1)``, whose ``astype(int) + 1``
  truncates toward zero, so official landmarks are whole pixels.

``scipy.misc`` is gone from SciPy; scipy 1.0's ``pilutil`` is restated here. ``imresize(arr, size)`` and
``imrotate(arr, angle)`` call ``toimage(arr)``, which ``bytescale``s any non-uint8 array: its own
``min..max`` is mapped onto 0..255 (``(x - min) * (255 / (max - min))``, clipped, ``+ 0.5``, truncated to
uint8; ``max == min`` counts as a range of 1) and uint8 input is passed through. The RGB image is then
``Image.resize((w, h), BILINEAR)`` or ``Image.rotate(angle, BILINEAR)`` (counter-clockwise, same size,
black fill) and read back as uint8. The float32 zero-padded copy ``crop()`` makes is therefore
contrast-stretched before it is resized (or rotated: the rotated uint8 is resized as is). Pixel
exactness to the 2019 runs also assumes the installed Pillow resamples as the Pillow of then did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["cofw_center_scale", "official_center_scale", "official_crop", "official_decode"]


# ------------------------------------------------------------------------------- scipy.misc 1.0
def _bytescale(data: np.ndarray) -> np.ndarray:
    """``scipy.misc.bytescale`` with its defaults: uint8 passes through, float32 is stretched to 0..255."""
    if data.dtype == np.uint8:
        return data
    lo, hi = data.min(), data.max()
    span = hi - lo if hi > lo else 1
    scaled = (data - lo) * (np.float32(255.0) / np.float32(span))  # float32, as NumPy 1 and 2 both do it
    return (scaled.clip(0, 255) + np.float32(0.5)).astype(np.uint8)


def _imresize(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``scipy.misc.imresize(image, size)``: (H, W, 3) -> (size[0], size[1], 3) uint8, PIL bilinear."""
    pil = Image.fromarray(_bytescale(image))
    return np.asarray(pil.resize((int(size[1]), int(size[0])), resample=Image.BILINEAR))


def _imrotate(image: np.ndarray, angle: float) -> np.ndarray:
    """``scipy.misc.imrotate(image, angle)``: counter-clockwise by ``angle`` degrees, PIL bilinear, uint8."""
    pil = Image.fromarray(_bytescale(image))
    return np.asarray(pil.rotate(angle, resample=Image.BILINEAR))


# ---------------------------------------------------------------------------- transforms.py
def _inverse_transform(center: np.ndarray, scale: float, size: Sequence[int], torch_scale: bool) -> np.ndarray:
    """``np.linalg.inv(get_transform(center, scale, size))`` (rot 0), as a (3, 3) float64 matrix.

    ``decode_preds`` passes the scale as a float64 torch tensor, and ``float / tensor`` is
    ``tensor.reciprocal() * float`` in torch (``Tensor.__rtruediv__``); ``crop()`` passes a NumPy float,
    which divides. The two differ in the last bit, which the integer cast can expose.
    """
    h = 200 * float(scale)
    cx, cy = float(center[0]), float(center[1])
    if torch_scale:
        inv_h = 1.0 / h
        sx, sy, qx, qy = inv_h * float(size[1]), inv_h * float(size[0]), inv_h * -cx, inv_h * -cy
    else:
        sx, sy, qx, qy = float(size[1]) / h, float(size[0]) / h, -cx / h, -cy / h
    t = np.array([[sx, 0.0, size[1] * (qx + 0.5)], [0.0, sy, size[0] * (qy + 0.5)], [0.0, 0.0, 1.0]])
    return np.linalg.inv(t)


def _pixel(t_inv: np.ndarray, x: float, y: float) -> np.ndarray:
    """``transform_pixel(..., invert=1)`` with the inverse precomputed: (2,) int64, truncated toward zero + 1."""
    return np.dot(t_inv, np.array([x - 1, y - 1, 1.0]))[:2].astype(np.int64) + 1


def official_center_scale(center: Sequence[float], scale: float) -> tuple[np.ndarray, float]:
    """A list record's (center (2,), scale) -> what the 300W / WFLW / AFLW loaders crop and decode with.

    ``center`` becomes float32 (``torch.Tensor([center_w, center_h])``); ``scale *= 1.25``, nothing else
    at test time (``lib/datasets/face300w.py __getitem__``).
    """
    return np.asarray(center, dtype=np.float32).reshape(2), float(scale) * 1.25


def cofw_center_scale(points: Any) -> tuple[np.ndarray, float]:
    """(K, 2) COFW landmarks -> (center float32 (2,), scale), from their integer-rounded bounding box.

    ``lib/datasets/cofw.py``: centre ``(floor(min) + ceil(max)) / 2``, scale the longer side / 200 x 1.25.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points: expected (K, 2) landmarks, got shape {pts.shape}")
    lo = [math.floor(v) for v in pts.min(axis=0)]
    hi = [math.ceil(v) for v in pts.max(axis=0)]
    center = np.array([(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0], dtype=np.float32)
    return center, max(hi[0] - lo[0], hi[1] - lo[1]) / 200.0 * 1.25


# ---------------------------------------------------------------------------------- crop
def _paste(image: np.ndarray, ul: np.ndarray, br: np.ndarray) -> np.ndarray:
    """The float32 (br - ul) window of ``image`` at integer corners, zero outside it (``crop()``'s copy)."""
    height, width = image.shape[:2]
    window = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), dtype=np.float32)
    dst_x = slice(max(0, -ul[0]), min(br[0], width) - ul[0])
    dst_y = slice(max(0, -ul[1]), min(br[1], height) - ul[1])
    src_x = slice(max(0, ul[0]), min(width, br[0]))
    src_y = slice(max(0, ul[1]), min(height, br[1]))
    window[dst_y, dst_x] = image[src_y, src_x]
    return window


def official_crop(image: np.ndarray, center: Sequence[float], scale: float,
                  output_size: Sequence[int] = (256, 256), rotation: float = 0.0, *,
                  stretch_source: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (output_size[0], output_size[1], 3) uint8, as ``transforms.py crop`` makes it.

    ``center`` and ``scale`` as the loader gives them (:func:`official_center_scale`); ``output_size`` is
    the config's ``IMAGE_SIZE`` (rows first, as ``imresize`` reads it). When ``s = scale * 200 /
    output_size[0] >= 2`` the whole image is first ``imresize``d to ``floor(H / s) x floor(W / s)`` and
    ``center / s``, ``scale / s`` follow (the centre divided in float32, as torch divides its float32 tensor).
    The 300W / WFLW / AFLW loaders hand ``crop()`` a float32 array, so that pre-shrink stretches the
    image's own min..max to 0..255; COFW's hands it the ``.mat`` uint8 unchanged: ``stretch_source=False``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    img = image.astype(np.float32) if stretch_source else image
    center, scale = np.asarray(center, dtype=np.float32).reshape(2), float(scale)
    shrink = scale * 200.0 / output_size[0]
    if shrink >= 2:
        height, width = img.shape[:2]
        if math.floor(max(height, width) / shrink) < 2:
            return np.zeros((output_size[0], output_size[1], 3), dtype=np.uint8)
        img = _imresize(img, (math.floor(height / shrink), math.floor(width / shrink)))
        center, scale = center / np.float32(shrink), scale / shrink
    t_inv = _inverse_transform(center, scale, output_size, torch_scale=False)
    ul, br = _pixel(t_inv, 0, 0), _pixel(t_inv, output_size[0], output_size[1])
    pad = int(np.linalg.norm(br - ul) / 2 - float(br[1] - ul[1]) / 2)
    if rotation == 0:
        return _imresize(_paste(img, ul, br), output_size)
    if pad < 1:
        raise ValueError(f"scale: the {br - ul} px window is too small to rotate, got scale {scale}")
    rotated = _imrotate(_paste(img, ul - pad, br + pad), rotation)
    return _imresize(rotated[pad:-pad, pad:-pad], output_size)


# -------------------------------------------------------------------------------- decode
def _peaks(heatmaps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``get_preds`` + the quarter offset of ``decode_preds``: (N, K, h, w) -> (N, K, 2) 1-based x, y."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)  # first maximum, as torch.max documents; in the maps' own dtype
    peak = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    x = np.where(peak > 0, idx % w + 1, 0)  # non-positive peaks are zeroed (pred_mask)
    y = np.where(peak > 0, idx // w + 1, 0)
    inside = (x > 1) & (x < size[0]) & (y > 1) & (y < size[1])
    rows, cols = np.arange(n)[:, None], np.arange(k)

    def at(dy: int, dx: int) -> np.ndarray:  # the value next to each 0-based peak (clipped where unused)
        return heatmaps[rows, cols, np.clip(y - 1 + dy, 0, h - 1), np.clip(x - 1 + dx, 0, w - 1)]

    # torch.Tensor([...]) rounds the differences to float32 before sign()
    dx = np.sign((at(0, 1) - at(0, -1)).astype(np.float32))
    dy = np.sign((at(1, 0) - at(-1, 0)).astype(np.float32))
    coords = np.stack([x, y], axis=-1).astype(np.float64)
    coords += np.where(inside[..., None], np.stack([dx, dy], axis=-1) * 0.25, 0.0)
    return coords


def official_decode(heatmaps: Any, centers: Any, scales: Any,
                    heatmap_size: Sequence[int] = (64, 64)) -> np.ndarray:
    """(N, K, h, w) heatmaps, (N, 2) centres, (N,) scales -> (N, K, 2) float32 image pixels (``decode_preds``).

    The peaks of :func:`_peaks` get +0.5 and go through ``transform_pixel(p, center, scale, res,
    invert=1)``: ``int(inv(T) @ (x - 1, y - 1, 1)) + 1``, truncating toward zero, with ``T`` from a float32
    centre and a float64 torch scale (``meta['center']``, ``meta['scale']``). ``heatmap_size`` is the
    official ``res`` (``[64, 64]``, square maps only).
    """
    maps = np.asarray(heatmaps)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps: expected (N, K, h, w), got shape {maps.shape}")
    n, k, h, w = maps.shape
    if h != w or tuple(heatmap_size) != (w, h):
        raise ValueError(f"heatmap_size: expected square maps of that size, got {tuple(heatmap_size)} "
                         f"for {h} x {w} heatmaps")
    centers = np.asarray(centers, dtype=np.float32).reshape(n, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(n)
    coords = _peaks(maps, heatmap_size) + 0.5
    preds = np.empty((n, k, 2), dtype=np.float32)
    for i in range(n):
        t_inv = _inverse_transform(centers[i], scales[i], heatmap_size, torch_scale=True)
        for j in range(k):
            preds[i, j] = _pixel(t_inv, coords[i, j, 0], coords[i, j, 1])
    return preds
