"""Synthetic 300W generator: the official list layout, the landmark geometry of the face model, determinism, and
landmarks that sit on what the image shows (pupils, brows, lips)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hrnet.synthetic.faces import (
    CSV_COLUMNS_300W,
    MEAN_SHAPE_300W,
    FaceParams,
    face_landmarks,
    make_synthetic_300w,
)

SIZE = (176, 208)  # (H, W): non-square on purpose, so width/height mix-ups show
N = 48
# The official 300W MATCHED_PARTS (lib/utils/transforms.py), 0-based: what each point becomes in a mirror image.
PAIRS = ([(i, 16 - i) for i in range(8)] + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (31, 35), (32, 34)]
         + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
         + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])
FLIP = np.arange(68)
for _a, _b in PAIRS:
    FLIP[_a], FLIP[_b] = _b, _a


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _points(row: list[str]) -> np.ndarray:
    return np.array(row[4:], np.float64).reshape(-1, 2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    return root, make_synthetic_300w(root, split="train", num_images=N, image_size=SIZE, seed=3)


def test_official_list_layout(dataset):
    root, path = dataset
    assert path == root / "face_landmarks_300w_train.csv"
    header, rows = _rows(path)
    assert header[:6] == ["image_name", "scale", "center_w", "center_h", "original_0_x", "original_0_y"]
    assert header[-2:] == ["original_67_x", "original_67_y"] and len(header) == 4 + 136
    assert tuple(header) == CSV_COLUMNS_300W
    assert len(rows) == N
    for index, row in enumerate(rows):
        assert len(row) == 4 + 136
        assert row[0] == f"images/train/{index:06d}.jpg"  # relative to the data root, as the official loader joins
        with Image.open(root / row[0]) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (SIZE[1], SIZE[0])
        float(row[1]), float(row[2]), float(row[3])


def test_centre_scale_are_the_landmark_box(dataset):
    _, path = dataset
    h, w = SIZE
    crop_inside = 0
    for row in _rows(path)[1]:
        pts = _points(row)
        assert pts.shape == (68, 2) and np.isfinite(pts).all()
        assert pts[:, 0].min() >= 0 and pts[:, 0].max() <= w - 1
        assert pts[:, 1].min() > 0 and pts[:, 1].max() <= h - 1  # the official loader skips points with y <= 0
        lo, hi = pts.min(0), pts.max(0)
        scale, cx, cy = float(row[1]), float(row[2]), float(row[3])
        np.testing.assert_allclose([cx, cy], (lo + hi) / 2, atol=1e-3)
        assert scale == pytest.approx((hi - lo).max() / 200, abs=1e-5)
        assert 0.35 * min(h, w) <= 200 * scale <= 0.75 * min(h, w)
        half = 200 * scale * 1.25 / 2  # the official loader's crop
        crop_inside += cx - half >= 0 and cy - half >= 0 and cx + half <= w and cy + half <= h
    assert 0.7 * N <= crop_inside < N  # most official crops fit; a few faces sit at the border


def test_deterministic_in_seed(tmp_path):
    kw = dict(split="val", num_images=3, image_size=(96, 112))
    a = make_synthetic_300w(tmp_path / "a", seed=5, **kw)
    b = make_synthetic_300w(tmp_path / "b", seed=5, **kw)
    c = make_synthetic_300w(tmp_path / "c", seed=6, **kw)
    assert a.read_text() == b.read_text() != c.read_text()
    for i in range(3):
        name = f"images/val/{i:06d}.jpg"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_template_left_right_structure():
    m = MEAN_SHAPE_300W
    assert m.shape == (68, 2) and not m.flags.writeable
    np.testing.assert_array_equal(m, face_landmarks(FaceParams()))
    assert m[0, 0] == pytest.approx(-1.0) and m[16, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(m[27:31, 0], 0.0, atol=1e-12)  # the nose bridge is the symmetry line
    np.testing.assert_allclose(m[FLIP] * [-1, 1], m, atol=1e-12)  # every official pair mirrors about it
    assert np.all(np.diff(m[:17, 0]) > 0) and m[:17, 1].argmax() == 8  # ear to ear, chin lowest
    assert m[36, 0] < m[39, 0] < 0 < m[42, 0] < m[45, 0]  # eye corners: right eye on the image left
    for first in (36, 42):
        eye = m[first:first + 6]
        assert eye[1:3, 1].max() < eye[[0, 3], 1].min() and eye[4:6, 1].min() > eye[[0, 3], 1].max()
    assert m[17:27, 1].max() < m[36:48, 1].min()  # brows above the eyes
    assert np.all(np.diff(m[17:22, 0]) > 0) and np.all(np.diff(m[22:27, 0]) > 0)
    assert np.all(np.diff(m[27:31, 1]) > 0) and np.all(np.diff(m[31:36, 0]) > 0)
    assert m[36:48, 1].max() < m[30, 1] < m[31:36, 1].min() < m[48:68, 1].min()
    assert m[48, 0] < m[51, 0] < m[54, 0] and m[51, 1] < m[62, 1] <= m[66, 1] < m[57, 1]


def test_pose_and_expression_parameters():
    base = FaceParams(smile=0.3, mouth_open=0.1, jaw_width=1.04, eye_gap=0.95)
    front = face_landmarks(base)
    # mirror images: flipping the points (and their names) equals the face with yaw and roll negated
    for yaw, roll in ((0.4, 0.0), (-0.3, 0.25), (0.2, -0.35)):
        turned = face_landmarks(replace(base, yaw=yaw, roll=roll, pitch=0.1))
        mirror = face_landmarks(replace(base, yaw=-yaw, roll=-roll, pitch=0.1))
        np.testing.assert_allclose(turned[FLIP] * [-1, 1], mirror, atol=1e-12)
    # yaw > 0: the nose moves to the image right, and that (now far) half of the face is foreshortened
    turned = face_landmarks(replace(base, yaw=0.4))
    assert turned[30, 0] > (turned[39, 0] + turned[42, 0]) / 2 + 0.1
    assert turned[16, 0] - turned[27, 0] < 0.8 * (turned[27, 0] - turned[0, 0])
    assert np.linalg.norm(turned[45] - turned[42]) < 0.9 * np.linalg.norm(turned[39] - turned[36])
    # roll is an in-plane rotation of the whole shape (+: clockwise on screen, y down)
    a = 0.3
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    np.testing.assert_allclose(face_landmarks(replace(base, roll=a)), front @ rot.T, atol=1e-12)
    # expression
    gap = lambda p: (p[66, 1] - p[62, 1])
    assert gap(face_landmarks(replace(base, mouth_open=0.3))) > gap(front) + 0.15
    corners = lambda p: p[[48, 54], 1].mean() - p[[51, 57], 1].mean()
    assert corners(face_landmarks(replace(base, smile=1.0))) < corners(face_landmarks(replace(base, smile=-0.3)))
    lid = lambda p: p[[40, 41], 1].mean() - p[[37, 38], 1].mean()
    assert lid(face_landmarks(replace(base, eye_open=0.3))) < 0.5 * lid(front)
    assert np.all(face_landmarks(replace(base, brow_raise=1.0))[17:27, 1] < front[17:27, 1] - 0.05)


def _patch(a: np.ndarray, xy: np.ndarray, r: int) -> np.ndarray:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return a[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]


def _cues(bgr: np.ndarray, pts: np.ndarray, size: float) -> tuple[float, float, float]:
    """How much darker than the cheeks the pupils (darkest pixel near each eye centre) and the brow bands just
    below points 19 / 24 are, and how much redder (R - G) the lips (between 51 and 62, 57 and 66) are."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)
    red = bgr[..., 2].astype(np.float64) - bgr[..., 1]
    cheeks = [(pts[2] + pts[31]) / 2, (pts[14] + pts[35]) / 2]
    cheek = max(np.median(_patch(grey, c, 2)) for c in cheeks)
    cheek_red = np.median(np.concatenate([_patch(red, c, 2).ravel() for c in cheeks]))
    pupils = []
    for eye in (pts[36:42], pts[42:48]):
        p = _patch(grey, eye.mean(0), max(1, int(0.15 * np.linalg.norm(eye[3] - eye[0]))))
        pupils.append(p.min() if p.size else 255.0)
    down = (pts[8] - pts[27]) / np.linalg.norm(pts[8] - pts[27])
    brow = max(np.median(_patch(grey, pts[i] + down * 0.025 * size, 1)) for i in (19, 24))
    lips = np.median(np.concatenate([_patch(red, (pts[a] + pts[b]) / 2, 1).ravel() for a, b in ((51, 62), (57, 66))]))
    return cheek - max(pupils), cheek - brow, lips - cheek_red


def test_landmarks_are_grounded_in_the_pixels(dataset):
    """At the annotated points the image shows a pupil, a brow and lips in nearly every face (occluders, closed
    eyes and dim light excepted); at the same points moved down by 0.3 face sizes it mostly does not."""
    root, path = dataset
    here, moved = [], []
    for row in _rows(path)[1]:
        bgr = cv2.imread(str(root / row[0]))
        pts, size = _points(row), 200 * float(row[1])
        here.append(_cues(bgr, pts, size))
        moved.append(_cues(bgr, pts + [0.0, 0.3 * size], size))
    here, moved = np.array(here), np.array(moved)
    thresholds = np.array([20.0, 15.0, 5.0])  # pupil, brow, lips
    hit, miss = (here > thresholds).mean(0), (moved > thresholds).mean(0)
    assert np.all(hit >= [0.85, 0.85, 0.75]), hit
    assert np.all(miss <= 0.3), miss
