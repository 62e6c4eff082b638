"""The official face arithmetic against a line-by-line restatement of the official functions.

``_ref_*`` restate, in torch and NumPy as the official code runs them, ``lib/core/evaluation.py``
(``get_preds``, ``decode_preds``), ``lib/utils/transforms.py`` (``get_transform``, ``transform_pixel``,
``crop``) and scipy 1.0's ``pilutil`` (``bytescale``, ``toimage`` for RGB, ``fromimage``, ``imresize``,
``imrotate``), written separately from :mod:`hrnet.tasks.face.official`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hrnet.tasks.face.official import (
    cofw_center_scale,
    official_center_scale,
    official_crop,
    official_decode,
)


# ------------------------------------------------------------------ scipy 1.0 pilutil, restated
def _ref_bytescale(data, cmin=None, cmax=None, high=255, low=0):
    if data.dtype == np.uint8:
        return data
    cmin = data.min() if cmin is None else cmin
    cmax = data.max() if cmax is None else cmax
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(high - low) / cscale
    bytedata = (data - cmin) * scale + low
    return (bytedata.clip(low, high) + 0.5).astype(np.uint8)


def _ref_toimage(arr):  # the 3-D path; channel axis 2 for every array used here
    data = np.asarray(arr)
    assert data.ndim == 3 and data.shape[2] == 3 and 3 not in data.shape[:2]
    return Image.frombytes("RGB", (data.shape[1], data.shape[0]), _ref_bytescale(data).tobytes())


def _ref_imresize(arr, size, interp="bilinear"):
    im = _ref_toimage(arr)
    resample = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}[interp]
    return np.array(im.resize((size[1], size[0]), resample=resample))


def _ref_imrotate(arr, angle, interp="bilinear"):
    resample = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}[interp]
    return np.array(_ref_toimage(arr).rotate(angle, resample=resample))


# ------------------------------------------------------------------- official code, restated
def _ref_get_transform(center, scale, output_size):
    h = 200 * scale
    t = np.zeros((3, 3))
    t[0, 0] = float(output_size[1]) / h
    t[1, 1] = float(output_size[0]) / h
    t[0, 2] = output_size[1] * (-float(center[0]) / h + .5)
    t[1, 2] = output_size[0] * (-float(center[1]) / h + .5)
    t[2, 2] = 1
    return t


def _ref_transform_pixel(pt, center, scale, output_size, invert=0):
    t = _ref_get_transform(center, scale, output_size)
    if invert:
        t = np.linalg.inv(t)
    new_pt = np.dot(t, np.array([pt[0] - 1, pt[1] - 1, 1.]).T)
    return new_pt[:2].astype(int) + 1


def _ref_get_preds(scores):
    maxval, idx = torch.max(scores.view(scores.size(0), scores.size(1), -1), 2)
    maxval = maxval.view(scores.size(0), scores.size(1), 1)
    idx = idx.view(scores.size(0), scores.size(1), 1) + 1
    preds = idx.repeat(1, 1, 2).float()
    preds[:, :, 0] = (preds[:, :, 0] - 1) % scores.size(3) + 1
    preds[:, :, 1] = torch.floor((preds[:, :, 1] - 1) / scores.size(3)) + 1
    return preds * maxval.gt(0).repeat(1, 1, 2).float()


def _ref_decode_preds(output, center, scale, res):
    coords = _ref_get_preds(output).cpu()
    for n in range(coords.size(0)):
        for p in range(coords.size(1)):
            hm = output[n][p]
            px, py = int(math.floor(coords[n][p][0])), int(math.floor(coords[n][p][1]))
            if 1 < px < res[0] and 1 < py < res[1]:
                diff = torch.Tensor([hm[py - 1][px] - hm[py - 1][px - 2], hm[py][px - 1] - hm[py - 2][px - 1]])
                coords[n][p] += diff.sign() * .25
    coords += 0.5
    preds = coords.clone()
    for i in range(coords.size(0)):
        preds[i] = _ref_transform_preds(coords[i], center[i], scale[i], res)
    return preds


def _ref_transform_preds(coords, center, scale, output_size):
    for p in range(coords.size(0)):
        coords[p, 0:2] = torch.tensor(_ref_transform_pixel(coords[p, 0:2], center, scale, output_size, 1))
    return coords


def _ref_crop(img, center, scale, output_size, rot=0):
    center_new = center.clone()
    ht, wd = img.shape[0], img.shape[1]
    sf = scale * 200.0 / output_size[0]
    if sf < 2:
        sf = 1
    else:
        new_size = int(math.floor(max(ht, wd) / sf))
        new_ht, new_wd = int(math.floor(ht / sf)), int(math.floor(wd / sf))
        if new_size < 2:
            return np.zeros((output_size[0], output_size[1], img.shape[2]))
        img = _ref_imresize(img, [new_ht, new_wd])
        center_new[0] = center_new[0] * 1.0 / sf
        center_new[1] = center_new[1] * 1.0 / sf
        scale = scale / sf
    ul = np.array(_ref_transform_pixel([0, 0], center_new, scale, output_size, invert=1))
    br = np.array(_ref_transform_pixel(output_size, center_new, scale, output_size, invert=1))
    pad = int(np.linalg.norm(br - ul) / 2 - float(br[1] - ul[1]) / 2)
    if rot != 0:
        ul -= pad
        br += pad
    new_img = np.zeros([br[1] - ul[1], br[0] - ul[0], img.shape[2]], dtype=np.float32)
    new_x = max(0, -ul[0]), min(br[0], len(img[0])) - ul[0]
    new_y = max(0, -ul[1]), min(br[1], len(img)) - ul[1]
    old_x = max(0, ul[0]), min(len(img[0]), br[0])
    old_y = max(0, ul[1]), min(len(img), br[1])
    new_img[new_y[0]:new_y[1], new_x[0]:new_x[1]] = img[old_y[0]:old_y[1], old_x[0]:old_x[1]]
    if rot != 0:
        new_img = _ref_imrotate(new_img, rot)[pad:-pad, pad:-pad]
    return _ref_imresize(new_img, output_size)


# ---------------------------------------------------------------------------------- inputs
def _face_jpeg(tmp_path, height: int, width: int, low: int = 0, high: int = 255) -> np.ndarray:
    """A photo-like RGB image (gradients, blobs, noise) in ``low..high``, written by cv2 as JPEG, read as
    the loaders read it (``Image.open(path).convert('RGB')``)."""
    rng = np.random.default_rng(height * 7 + width)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in (0.0, 1.0, 2.0)], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(20, 120)
        blob = np.exp(-((xx * max(height, width) - cx) ** 2 + (yy * max(height, width) - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-0.4, 0.4, size=3)
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    bgr = (low + img * (high - low)).round().astype(np.uint8)[..., ::-1]
    path = tmp_path / f"face_{height}x{width}.jpg"
    assert cv2.imwrite(str(path), bgr)
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def _ref_loader_crop(image: np.ndarray, center_w: float, center_h: float, csv_scale: float, rot: float,
                     as_float: bool = True) -> np.ndarray:
    """What the official 300W loader feeds ``crop()``: a float32 image, a torch centre, scale x 1.25."""
    img = np.array(image, dtype=np.float32) if as_float else image
    scale = np.float64(csv_scale)
    scale *= 1.25
    return _ref_crop(img, torch.Tensor([center_w, center_h]), scale, [256, 256], rot=rot)


# -------------------------------------------------------------------------------- the crop
@pytest.mark.parametrize("size, center, csv_scale, rot", [
    ((480, 640), (320.5, 250.25), 1.62, 0.0),  # a 300W-sized face, sf = 1.58
    ((480, 640), (320.5, 250.25), 1.62, 20.0),
    ((480, 640), (90.0, 105.7), 1.62, 0.0),  # the window runs off the top-left corner: negative ul
    ((480, 640), (90.0, 105.7), 1.62, -20.0),
    ((1100, 1400), (701.3, 560.8), 3.3, 0.0),  # sf = 3.22: the whole image is shrunk first
    ((1100, 1400), (701.3, 560.8), 3.3, 20.0),
    # shrunk, and the float32 centre / sf puts the left edge at -48 (float64 arithmetic: -47)
    ((600, 700), (225.0, 225.0), 2.88, 0.0),
])
def test_official_crop_matches_restated_official(tmp_path, size, center, csv_scale, rot):
    image = _face_jpeg(tmp_path, *size, low=35, high=210)
    c, s = official_center_scale(center, csv_scale)
    ours = official_crop(image, c, s, (256, 256), rot)
    ref = _ref_loader_crop(image, *center, csv_scale, rot)
    assert ours.shape == (256, 256, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)


def test_official_crop_uint8_source_as_cofw(tmp_path):
    image = _face_jpeg(tmp_path, 1100, 1400, low=35, high=210)
    c, s = official_center_scale((701.3, 560.8), 3.3)
    ours = official_crop(image, c, s, stretch_source=False)
    np.testing.assert_array_equal(ours, _ref_loader_crop(image, 701.3, 560.8, 3.3, 0.0, as_float=False))
    # the float32 source is stretched to 0..255 before the pre-shrink; the uint8 one is not
    assert not np.array_equal(ours, official_crop(image, c, s))


def test_official_crop_stretches_each_window(tmp_path):
    """bytescale maps the window's own min..max to 0..255: an exact affine change of contrast
    (even values v -> v / 2 + 60) gives the same crop, bit for bit."""
    image = _face_jpeg(tmp_path, 480, 640) // 2 * 2
    dim = (image // 2 + 60).astype(np.uint8)
    c, s = official_center_scale((320.5, 250.25), 1.62)
    np.testing.assert_array_equal(official_crop(image, c, s), official_crop(dim, c, s))


def test_official_crop_checks_its_image():
    with pytest.raises(ValueError, match="image"):
        official_crop(np.zeros((64, 64, 3), np.float32), (32, 32), 0.3)


# ------------------------------------------------------------------------------ the decoder
def _heatmaps(rng: np.random.Generator, n: int, k: int, size: int = 64) -> np.ndarray:
    """Gaussian peaks plus noise, with the official corner cases planted in image 0."""
    yy, xx = np.mgrid[0:size, 0:size]
    mu = rng.uniform(-1, size, size=(n, k, 2))
    maps = np.exp(-((xx - mu[..., :1, None]) ** 2 + (yy - mu[..., 1:, None]) ** 2) / (2 * 1.5 ** 2))
    maps = (maps + rng.normal(0, 0.02, maps.shape)).astype(np.float32)
    maps[0, 0] = -0.1  # no positive peak: pred_mask zeroes it
    maps[0, 1] = 0.0
    maps[0, 1, 10, 20] = maps[0, 1, 30, 40] = 1.0  # a tie: the first maximum wins
    maps[0, 2] = 0.0
    maps[0, 2, 7, 9] = 1.0  # equal neighbours: sign 0
    for j, (y, x) in enumerate([(0, 30), (63, 30), (30, 0), (30, 63), (1, 1), (62, 62)], start=3):
        maps[0, j] = 0.0
        maps[0, j, y, x] = 1.0
        maps[0, j, y + 1 if y < 63 else y - 1, x] = 0.5  # a neighbour to lean toward, ignored on the border
    return maps


def test_official_decode_matches_restated_official():
    rng = np.random.default_rng(0)
    maps = _heatmaps(rng, 4, 68)
    records = [((320.5, 250.25), 1.62), ((256.0, 256.0), 1.6), ((101.7, 333.3), 0.87), ((701.3, 560.8), 3.3)]
    centers, scales = zip(*(official_center_scale(c, s) for c, s in records))
    ours = official_decode(maps, np.stack(centers), np.array(scales))
    # the loaders' meta, collated: float32 centres, float64 scales
    ref = _ref_decode_preds(torch.from_numpy(maps), torch.Tensor(np.stack(centers)),
                            torch.tensor(scales, dtype=torch.float64), [64, 64])
    assert ours.dtype == np.float32 and ours.shape == (4, 68, 2)
    np.testing.assert_array_equal(ours, ref.numpy())
    assert np.all(ours == np.round(ours))  # whole pixels, from astype(int) + 1


def test_official_decode_dense_centres():
    """Many centres and scales, including round ones where the back-projection lands on integers."""
    rng = np.random.default_rng(1)
    n = 64
    maps = _heatmaps(rng, n, 9)
    centers = np.where(rng.random((n, 2)) < 0.5, rng.integers(50, 500, (n, 2)), rng.uniform(50, 500, (n, 2)))
    scales = np.where(rng.random(n) < 0.5, rng.integers(4, 20, n) / 8, rng.uniform(0.5, 4.0, n)) * 1.25
    ours = official_decode(maps, centers, scales)
    ref = _ref_decode_preds(torch.from_numpy(maps), torch.Tensor(centers), torch.tensor(scales), [64, 64])
    np.testing.assert_array_equal(ours, ref.numpy())


def test_official_decode_last_bit_cases():
    """Found by search: ``float / tensor`` is ``reciprocal() * float`` in torch, which puts image 0's
    points one pixel right of true division (x = 32, 57, ... not 31, 56, ...); image 1's float64 centre
    is rounded to float32 as ``torch.Tensor`` does, which moves x = 156 (float64: 157)."""
    maps = np.zeros((2, 5, 64, 64), np.float32)
    for j, x in enumerate((2, 4, 6, 8, 10)):  # 1-based peaks with equal neighbours: no quarter offset
        maps[0, j, 31, x - 1] = 1.0
    maps[1, :, 31, 14] = 1.0  # 1-based x = 15, leaning right: 15.25
    maps[1, :, 31, 15] = 0.5
    centers = np.array([[412.25, 412.25], [280.525680347671, 280.525680347671]])
    scales = np.array([3.2 * 1.25, 2.3100414184899423])
    ours = official_decode(maps, centers, scales)
    ref = _ref_decode_preds(torch.from_numpy(maps), torch.Tensor(centers), torch.tensor(scales), [64, 64])
    np.testing.assert_array_equal(ours, ref.numpy())
    assert ours[0, :, 0].tolist() == [32, 57, 82, 107, 132] and ours[1, 0, 0] == 156


def test_official_decode_checks_sizes():
    with pytest.raises(ValueError, match="heatmap_size"):
        official_decode(np.zeros((1, 2, 64, 48), np.float32), np.zeros((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match="heatmaps"):
        official_decode(np.zeros((2, 64, 64), np.float32), np.zeros((1, 2)), np.ones(1))


def test_official_decode_oracle_on_rendered_ground_truth():
    """Gaussians drawn where ground-truth landmarks fall in the heatmap, decoded officially.

    The official decode keeps a quarter heatmap pixel of quantisation (|error| <= 0.25 * 200 * scale / 64
    image px per axis) and ``int() + 1`` adds 0..1 px per axis; a 300W-sized face (scale 1.25 x 1.6,
    h = 400 px, 6.25 px per heatmap pixel, interocular 140 px) must stay inside that bound, with a
    mean NME near its expected ~1% (observed 1.04%; so well under 0.5% is out of reach for this decoder).
    """
    rng = np.random.default_rng(2)
    center, scale = official_center_scale((320.0, 260.0), 1.6)
    h = 200 * scale
    gt = np.array(center, np.float64) + rng.uniform(-0.35, 0.35, size=(8, 68, 2)) * h
    gt[:, 36], gt[:, 45] = center + np.array([-70.0, -20.0]), center + np.array([70.0, -20.0])
    # transform_pixel maps image x (0-based) to heatmap x in a corner convention: pixel j covers [j, j + 1)
    u = (gt - center) / h * 64 + 32
    yy, xx = np.mgrid[0:64, 0:64]
    mu = u - 0.5  # the array position of that point
    maps = np.exp(-((xx - mu[..., :1, None]) ** 2 + (yy - mu[..., 1:, None]) ** 2) / (2 * 1.5 ** 2))
    pred = official_decode(maps.astype(np.float32), np.tile(center, (8, 1)), np.full(8, scale))
    err = pred - gt
    step = h / 64
    assert np.all(err >= -0.25 * step - 1e-6) and np.all(err <= 0.25 * step + 1 + 1e-6)
    nme = np.linalg.norm(err, axis=2).mean() / 140.0
    assert 0.005 < nme < 0.012


# -------------------------------------------------------------------------- centre and scale
def test_official_center_scale_as_the_loaders():
    center, scale = official_center_scale((320.3, 250.7), 1.62)
    assert center.dtype == np.float32 and center.tolist() == [np.float32(320.3), np.float32(250.7)]
    assert scale == 1.62 * 1.25
    # COFW: floor(min) 10, ceil(max) 51 -> cx 30.5; 20, 81 -> cy 50.5; longer side 61 -> 61 / 200 * 1.25
    center, scale = cofw_center_scale([[10.2, 20.7], [50.9, 80.1], [30.0, 40.0]])
    assert center.tolist() == [30.5, 50.5] and scale == pytest.approx(0.38125)
