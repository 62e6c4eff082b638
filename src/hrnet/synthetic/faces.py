"""Synthetic 300W: drawn faces with the 68-point iBUG mark-up, in the official HRNet landmark-list layout.

:func:`make_synthetic_300w` writes ``<root>/images/<split>/NNNNNN.jpg`` and ``<root>/face_landmarks_300w_<split>.csv``,
the list format of HRNet-Facial-Landmark-Detection (``lib/datasets/face300w.py``): a header row
(:data:`CSV_COLUMNS_300W`), then per face the image path relative to ``root``, ``scale`` = max(box w, h) / 200,
the box centre and the 68 (x, y) points, where the box is the landmarks' bounding box. The official loader crops
a square of side ``200 * 1.25 * scale`` about the centre; that square lies inside the image for most faces.

The landmarks come from a face model, not from the pixels: a frontal template in normalised units
(:data:`MEAN_SHAPE_300W`: jaw ends at x = -1 / +1, y down, the nose bridge on x = 0) built from parametric
curves (jaw: superellipse; brows: arched strokes; eyes: lid arcs; lips: cupid's bow and lower-lip arcs), shaped
by :class:`FaceParams` (identity and expression), given a depth per point and rotated in 3-D by yaw and pitch (the
nose shifts sideways; the half of the face it turns towards, now the far side, is foreshortened), then in the
image plane by roll. The drawing follows the points: skin over the jaw + forehead outline, brows under points
17-26, sclera / iris / pupil inside the eye contours, nostrils at the nose base, lips between the outer and inner
lip contours. Coordinates are 0-based pixel centres. "Right" is the subject's: points 0, 17-21 and 36-41 lie on
the image's left in a frontal face.
"""

from __future__ import annotations

import colorsys
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

NUM_LANDMARKS = 68
CSV_COLUMNS_300W = ("image_name", "scale", "center_w", "center_h",
                    *(f"original_{i}_{a}" for i in range(NUM_LANDMARKS) for a in ("x", "y")))
"""The header of the official ``face_landmarks_300w_*.csv`` lists."""

# The frontal template: heights (y, down) of the jaw top (level with the eye corners), chin and forehead top.
_JAW_TOP, _FOREHEAD = -0.6, 0.85
_EYE_Y, _MOUTH_Y = -0.66, 0.38
_N_FOREHEAD, _N_HAIRLINE = 11, 9
_FOREHEAD_AT = NUM_LANDMARKS                  # extra model points after the 68 landmarks
_HAIRLINE_AT = _FOREHEAD_AT + _N_FOREHEAD
_EARS_AT = _HAIRLINE_AT + _N_HAIRLINE


@dataclass(frozen=True)
class FaceParams:
    """Pose, expression and (symmetric) identity of one face; the defaults give :data:`MEAN_SHAPE_300W`.

    Angles in radians: ``yaw`` > 0 turns the nose towards the image's right (foreshortening the image-right half),
    ``pitch`` > 0 lifts the chin, ``roll`` > 0 turns the face clockwise on screen. Lengths in template units (half
    the jaw width)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    mouth_open: float = 0.0    # gap between the inner lips, 0 .. ~0.3
    smile: float = 0.0         # mouth-corner lift, < 0 frowns
    brow_raise: float = 0.0    # -0.5 (frown) .. 1 (surprise)
    eye_open: float = 1.0      # lid opening, 0.2 (squint) .. 1.3 (wide)
    jaw_width: float = 1.0
    jaw_round: float = 2.0     # superellipse exponent of the jaw: 2 round, 3 square
    chin: float = 0.94         # chin height
    eye_gap: float = 1.0
    eye_size: float = 1.0
    nose_width: float = 1.0
    mouth_width: float = 1.0
    hairline: float = 0.5      # 0: just above the brows .. 1: at the forehead top (drawn only)


def _jaw(p: FaceParams) -> np.ndarray:
    """(17, 2) jaw from the subject's right ear (image left) over the chin: a superellipse quarter each side."""
    phi = np.linspace(0.0, math.pi, 17)
    c, s = np.cos(phi), np.sin(phi)
    e = 2.0 / p.jaw_round
    x = -p.jaw_width * np.sign(c) * np.abs(c) ** e
    y = _JAW_TOP + (p.chin - _JAW_TOP) * s ** e + 0.8 * p.mouth_open * s ** 4  # the chin drops as the mouth opens
    return np.stack([x, y], 1)


def _brows(p: FaceParams) -> np.ndarray:
    """(10, 2): right brow outer -> inner (17-21), left brow inner -> outer (22-26); arched upper edges."""
    u = np.linspace(0.0, 1.0, 5)
    x = 0.84 + (0.24 - 0.84) * u
    y = -0.84 - 0.06 * u - 0.12 * p.brow_raise - (0.12 + 0.04 * p.brow_raise) * np.sin(math.pi * u)
    right = np.stack([-x, y], 1)
    return np.concatenate([right, right[::-1] * [-1.0, 1.0]])


def _nose(p: FaceParams) -> np.ndarray:
    """(9, 2): bridge top -> tip (27-30) on x = 0, nose base right -> left (31-35)."""
    bridge = np.stack([np.zeros(4), np.linspace(-0.70, -0.22, 4)], 1)
    u = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    base = np.stack([0.18 * p.nose_width * u, -0.22 + np.array([0.12, 0.14, 0.18, 0.14, 0.12])], 1)
    return np.concatenate([bridge, base])


def _eyes(p: FaceParams) -> np.ndarray:
    """(12, 2): each eye from its image-left corner over the upper lid to the right corner and back below."""
    t = np.array([math.pi, 2 * math.pi / 3, math.pi / 3, 0.0, -math.pi / 3, -2 * math.pi / 3])
    half_w = 0.17 * p.eye_size
    lid = np.where(np.sin(t) > 0, -0.085 * p.eye_open, 0.05 * min(p.eye_open, 1.0)) * p.eye_size
    eyes = []
    for cx in (-0.53 * p.eye_gap, 0.53 * p.eye_gap):
        x = cx + half_w * np.cos(t)
        y = _EYE_Y + lid * np.abs(np.sin(t)) - 0.02 * (np.abs(x) - abs(cx)) / half_w  # outer corners a bit higher
        eyes.append(np.stack([x, y], 1))
    return np.concatenate(eyes)


def _mouth(p: FaceParams) -> np.ndarray:
    """(20, 2): outer lip from the right corner over the upper lip and back under (48-59), inner lip (60-67)."""
    w, o = 0.34 * p.mouth_width, p.mouth_open
    up, down = -0.25 * o, 0.75 * o  # the upper lip rises a little, the lower one follows the jaw
    ox = np.array([-1.0, -0.65, -0.3, 0.0, 0.3, 0.65, 1.0, 0.65, 0.3, 0.0, -0.3, -0.65])
    oy = np.array([0.2 * o, -0.09 + up, -0.15 + up, -0.13 + up, -0.15 + up, -0.09 + up, 0.2 * o,
                   0.09 + down, 0.15 + down, 0.16 + down, 0.15 + down, 0.09 + down])
    ix = np.array([-0.85, -0.35, 0.0, 0.35, 0.85, 0.35, 0.0, -0.35])
    iy = np.array([0.2 * o, -0.015 + 0.8 * up, -0.015 + up, -0.015 + 0.8 * up, 0.2 * o,
                   0.015 + 0.8 * down, 0.015 + down, 0.015 + 0.8 * down])
    x = w * np.concatenate([ox, ix])
    y = _MOUTH_Y + np.concatenate([oy, iy]) - 0.09 * p.smile * (x / w) ** 2
    return np.stack([x * (1.0 + 0.08 * p.smile), y], 1)


def _extras(p: FaceParams) -> np.ndarray:
    """(22, 2) drawing-only points: forehead arc (jaw-16 side to jaw-0 side), hairline arc, ear centres."""
    phi = np.linspace(0.0, math.pi, _N_FOREHEAD + 2)[1:-1]
    forehead = np.stack([p.jaw_width * np.cos(phi), _JAW_TOP - _FOREHEAD * np.sin(phi)], 1)
    top = -1.2 + (_JAW_TOP - _FOREHEAD + 1.2) * p.hairline
    phi = np.linspace(0.1 * math.pi, 0.9 * math.pi, _N_HAIRLINE)
    hairline = np.stack([0.98 * p.jaw_width * np.cos(phi), _JAW_TOP + (top - _JAW_TOP) * np.sin(phi) ** 0.5], 1)
    ears = np.array([[-p.jaw_width, -0.45], [p.jaw_width, -0.45]])
    return np.concatenate([forehead, hairline, ears])


def _depth(pts: np.ndarray) -> np.ndarray:
    """Depth (towards the camera) of each frontal model point: a rounded head plus the nose, eye sockets, lips."""
    z = 0.75 * np.sqrt(np.clip(1.0 - pts[:, 0] ** 2 / 1.1, 0.0, None))
    z[27:31] += [0.10, 0.18, 0.26, 0.35]
    z[31:36] += [0.12, 0.18, 0.24, 0.18, 0.12]
    z[36:48] -= 0.06
    z[48:68] += 0.03
    z[_EARS_AT:] = -0.1
    return z


def _model(p: FaceParams) -> np.ndarray:
    """(90, 2) posed model points in template units: the 68 landmarks then the drawing-only extras."""
    xy = np.concatenate([_jaw(p), _brows(p), _nose(p), _eyes(p), _mouth(p), _extras(p)])
    z = _depth(xy)
    cy, sy, cp, sp = math.cos(p.yaw), math.sin(p.yaw), math.cos(p.pitch), math.sin(p.pitch)
    x = xy[:, 0] * cy + z * sy
    z = -xy[:, 0] * sy + z * cy
    y = xy[:, 1] * cp - z * sp
    cr, sr = math.cos(p.roll), math.sin(p.roll)
    return np.stack([x * cr - y * sr, x * sr + y * cr], 1)


def face_landmarks(params: FaceParams) -> np.ndarray:
    """(68, 2) landmarks of a face in template units (before scaling and placing it in an image)."""
    return _model(params)[:NUM_LANDMARKS]


MEAN_SHAPE_300W = face_landmarks(FaceParams())
"""(68, 2) frontal template in normalised units: x in [-1, 1] (jaw ends), y down, nose bridge on x = 0."""
MEAN_SHAPE_300W.flags.writeable = False


def _sample_params(rng: np.random.Generator) -> FaceParams:
    """Pose and expression varied about a frontal neutral face (300W is mostly frontal, some faces turned)."""
    u = rng.uniform
    clip = lambda s, lim: float(np.clip(rng.normal(0.0, s), -lim, lim))
    return FaceParams(
        yaw=clip(0.25, 0.6), pitch=clip(0.1, 0.25), roll=clip(0.2, 0.5),
        mouth_open=u(0.0, 0.3) if rng.random() < 0.35 else 0.0, smile=u(-0.3, 1.0), brow_raise=u(-0.4, 0.9),
        eye_open=u(0.5, 1.3) if rng.random() < 0.9 else u(0.2, 0.5),
        jaw_width=u(0.9, 1.08), jaw_round=u(1.8, 3.0), chin=u(0.85, 1.05), eye_gap=u(0.92, 1.08),
        eye_size=u(0.85, 1.15), nose_width=u(0.8, 1.3), mouth_width=u(0.85, 1.2), hairline=u(0.0, 1.0),
    )


# ------------------------------------------------------------------------------------------------ colours


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


_SKIN = np.array([(255, 224, 196), (241, 194, 158), (228, 180, 140), (205, 150, 110), (176, 120, 80),
                  (141, 93, 60), (110, 72, 46), (86, 58, 40)], np.float64)
_HAIR = np.array([(25, 20, 18), (60, 40, 25), (100, 65, 35), (170, 130, 70), (215, 190, 130),
                  (120, 120, 120), (150, 60, 30)], np.float64)
_IRIS = np.array([(70, 45, 25), (110, 70, 35), (60, 100, 150), (80, 120, 80), (120, 110, 70)], np.float64)


@dataclass(frozen=True)
class _Look:
    """Colours and light of one face."""

    skin: np.ndarray
    hair: np.ndarray
    brow: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    sclera: np.ndarray
    clothes: np.ndarray
    light: np.ndarray          # unit direction the light comes from, in the image
    contrast: float            # strength of the side light on the face
    hair_length: float         # hair below the ears, in face sizes; < 0: no hair behind the head
    gaze: np.ndarray           # iris offset, in eye widths


def _sample_look(rng: np.random.Generator) -> _Look:
    skin = np.clip(_SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.05) + rng.normal(0, 6, 3), 0, 255)
    hair = np.clip(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 8, 3), 0, 255)
    angle = rng.uniform(0, 2 * math.pi)
    return _Look(
        skin=skin, hair=hair,
        brow=np.minimum(0.5 * hair + 0.5 * skin * rng.uniform(0.25, 0.5), 0.6 * skin),
        lips=np.clip(skin * 0.55 + np.array([150.0, 40.0, 50.0]) * rng.uniform(0.4, 0.7), 0, 255) * 0.9,
        iris=np.clip(_IRIS[rng.integers(len(_IRIS))] + rng.normal(0, 10, 3), 0, 255),
        sclera=np.clip(np.array([238.0, 234.0, 228.0]) * rng.uniform(0.85, 1.0), 0, 255),
        clothes=_hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.15, 0.95)),
        light=np.array([math.cos(angle), math.sin(angle)]), contrast=rng.uniform(0.05, 0.4),
        hair_length=rng.uniform(-0.3, 0.6), gaze=rng.uniform([-0.1, -0.04], [0.1, 0.04]),
    )


# ------------------------------------------------------------------------------------------------ drawing

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


def _fix(pts) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32)


def _col(c) -> tuple[int, ...]:
    return tuple(min(255, max(0, int(v))) for v in np.ravel(c))


def _fill(img: np.ndarray, pts, colour) -> None:
    cv2.fillPoly(img, [_fix(pts).reshape(-1, 2)], _col(colour), _AA, _SHIFT)


def _stroke(img: np.ndarray, pts, colour, width: float, closed: bool = False) -> None:
    cv2.polylines(img, [_fix(pts).reshape(-1, 2)], closed, _col(colour), max(1, round(width)), _AA, _SHIFT)


def _disc(img: np.ndarray, centre, radius: float, colour) -> None:
    cv2.circle(img, tuple(_fix(centre)), max(1, round(radius * _ONE)), _col(colour), -1, _AA, _SHIFT)


def _ellipse(img: np.ndarray, centre, axes, angle_deg: float, colour) -> None:
    ax = tuple(max(1, round(a * _ONE)) for a in axes)
    cv2.ellipse(img, tuple(_fix(centre)), ax, angle_deg, 0, 360, _col(colour), -1, _AA, _SHIFT)


def _roi(img: np.ndarray, pts: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """The view of ``img`` around ``pts`` (+ ``pad`` px) and its top-left corner (x, y)."""
    h, w = img.shape[:2]
    x0, y0 = np.clip(np.floor(pts.min(0) - pad), 0, [w, h]).astype(int)
    x1, y1 = np.clip(np.ceil(pts.max(0) + pad) + 1, 0, [w, h]).astype(int)
    return img[y0:y1, x0:x1], np.array([x0, y0], np.float64)


def _glaze(img: np.ndarray, pts: np.ndarray, colour, alpha: float) -> None:
    """Fill polygon ``pts`` with ``colour`` at opacity ``alpha``."""
    sub, o = _roi(img, pts, 2)
    if sub.size:
        layer = sub.copy()
        _fill(layer, pts - o, colour)
        cv2.addWeighted(layer, alpha, sub, 1.0 - alpha, 0.0, dst=sub)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """(h, w) float32 smooth noise, unit variance-ish, features about ``cell`` px across."""
    grid = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 clutter: a colour gradient with smooth texture (made coarse, then resized), random shapes
    and lines."""
    cell = rng.uniform(6, 40)
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    gy, gx = np.linspace(0, 1, gh)[:, None, None], np.linspace(0, 1, gw)[None, :, None]
    coarse = (rng.uniform(30, 220, 3) + gx * rng.uniform(-80, 80, 3) + gy * rng.uniform(-80, 80, 3)
              + rng.standard_normal((gh, gw, 1)) * rng.uniform(3, 25, 3))
    img = cv2.resize(np.clip(coarse, 0, 255).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    size = min(h, w)
    for _ in range(rng.integers(3, 10)):
        _clutter(img, rng, rng.uniform(0, [w, h]), size)
    return img


def _clutter(img: np.ndarray, rng: np.random.Generator, c: np.ndarray, size: float) -> None:
    """One background shape at ``c``: an ellipse, a polygon, a rectangle, a line or a patch of stripes."""
    colour = _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
    kind = rng.integers(5)
    if kind == 0:
        _ellipse(img, c, rng.uniform(0.03, 0.25, 2) * size, rng.uniform(0, 180), colour)
    elif kind == 1:
        _fill(img, c + rng.uniform(-0.3, 0.3, (int(rng.integers(3, 7)), 2)) * size, colour)
    elif kind == 2:
        half = rng.uniform(0.03, 0.3, 2) * size
        _fill(img, c + half * [[-1, -1], [1, -1], [1, 1], [-1, 1]], colour)
    elif kind == 3:
        _stroke(img, [c, c + rng.uniform(-0.6, 0.6, 2) * size], colour, rng.uniform(1, 6))
    else:
        a = rng.uniform(0, math.pi)
        along, across = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
        length, step = rng.uniform(0.1, 0.4) * size, rng.uniform(3, 9)
        for k in range(int(rng.integers(3, 10))):
            start = c + across * k * step
            _stroke(img, [start, start + along * length], colour, step * rng.uniform(0.2, 0.5))


def _inside(img: np.ndarray, poly: np.ndarray, paint, pad: float = 2.0) -> None:
    """Run ``paint(layer, origin)`` on a copy of the region around ``poly`` and keep the result inside ``poly``."""
    sub, o = _roi(img, poly, pad)
    if not sub.size:
        return
    mask = np.zeros(sub.shape[:2], np.uint8)
    _fill(mask, poly - o, 255)
    layer = sub.copy()
    paint(layer, o)
    m = (mask.astype(np.float32) / 255.0)[..., None]
    sub[:] = (layer * m + sub * (1.0 - m) + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ the face


@dataclass(frozen=True)
class _Frame:
    """A placed face: model points in pixels, the template unit in pixels and the face's image axes."""

    pts: np.ndarray    # (90, 2): the 68 landmarks, then forehead arc, hairline arc, ear centres
    unit: float
    right: np.ndarray  # the template's +x (towards the subject's left) in the image
    down: np.ndarray


def _place(p: FaceParams, rng: np.random.Generator, h: int, w: int) -> _Frame:
    """Scale the posed model so its landmark box has side ``s`` and put it in the image: usually the official
    crop (side 1.25 s about the box centre) fits inside, sometimes only the landmarks do (faces at the border)."""
    model = _model(p)
    lo, hi = model[:NUM_LANDMARKS].min(0), model[:NUM_LANDMARKS].max(0)
    size = rng.uniform(0.4, 0.7) * min(h, w)
    unit = size / float((hi - lo).max())
    pts = (model - (lo + hi) / 2) * unit
    half_box = (hi - lo) * unit / 2
    margin = np.full(2, 0.625 * size) if rng.random() < 0.85 else half_box + 2.0
    centre = rng.uniform(margin, np.array([w, h]) - margin - 1.0)
    cr, sr = math.cos(p.roll), math.sin(p.roll)
    return _Frame(pts + centre, unit, np.array([cr, sr]), np.array([-sr, cr]))


def _hair_arc(f: _Frame) -> np.ndarray:
    """(11, 2) the outline of the hair over the head: the forehead arc widened about the jaw's ends."""
    mid = (f.pts[0] + f.pts[16]) / 2
    return mid + 1.12 * (f.pts[_FOREHEAD_AT:_HAIRLINE_AT] - mid)


def _draw_body(img: np.ndarray, f: _Frame, look: _Look) -> None:
    """Hair behind the head, shoulders, neck and ears: everything the face is drawn over."""
    pts, u, r, d = f.pts, f.unit, f.right, f.down
    if look.hair_length >= 0:
        long = look.hair_length * 2 * u
        _fill(img, [*_hair_arc(f), pts[0] - r * 0.15 * u + d * long, pts[16] + r * 0.15 * u + d * long], look.hair)
    base = pts[8] + d * 0.5 * u
    _fill(img, [base - r * 0.45 * u, base + r * 0.45 * u, base + r * 1.9 * u + d * 0.5 * u,
                base + r * 2.1 * u + d * 3 * u, base - r * 2.1 * u + d * 3 * u, base - r * 1.9 * u + d * 0.5 * u],
          look.clothes)
    _fill(img, [pts[4], pts[12], pts[12] + d * 1.2 * u, pts[4] + d * 1.2 * u], look.skin * 0.72)
    angle = math.degrees(math.atan2(r[1], r[0]))
    for ear in pts[_EARS_AT:_EARS_AT + 2]:
        _ellipse(img, ear, (0.13 * u, 0.26 * u), angle, look.skin * 0.85)


def _draw_skin(img: np.ndarray, f: _Frame, look: _Look, rng: np.random.Generator) -> None:
    """The face (jaw + forehead outline) in skin colour, lit from ``look.light`` and darker towards its rim, then
    the hair over the forehead."""
    outline = np.concatenate([f.pts[:17], f.pts[_FOREHEAD_AT:_HAIRLINE_AT]])
    centre = outline.mean(0)
    radius = 1.3 * f.unit

    def paint(layer: np.ndarray, o: np.ndarray) -> None:
        dx = (np.arange(layer.shape[1], dtype=np.float32)[None, :] + np.float32(o[0] - centre[0])) / radius
        dy = (np.arange(layer.shape[0], dtype=np.float32)[:, None] + np.float32(o[1] - centre[1])) / radius
        shade = 1.0 + look.contrast * (dx * look.light[0] + dy * look.light[1]) - 0.3 * (dx * dx + dy * dy)
        shade += 0.02 * _smooth_noise(rng, *layer.shape[:2], 6.0)
        layer[:] = np.clip(shade[..., None] * look.skin.astype(np.float32), 0, 255).astype(np.uint8)

    _inside(img, outline, paint, pad=1.0)
    if look.hair_length >= -0.15:  # a fringe over the forehead down to the hairline; below -0.15: bald
        _fill(img, [*f.pts[_HAIRLINE_AT:_EARS_AT], *_hair_arc(f)[::-1]], look.hair)


def _draw_brows(img: np.ndarray, f: _Frame, look: _Look) -> None:
    """Brows hang below their landmarks (the upper edge, as annotated in 300W), thickest at the inner end."""
    thick = np.array([0.045, 0.06, 0.07, 0.075, 0.075]) * f.unit
    for first, t in ((17, thick), (22, thick[::-1])):
        upper = f.pts[first:first + 5]
        _fill(img, [*upper, *(upper + f.down * t[:, None])[::-1]], look.brow)


def _draw_eye(img: np.ndarray, eye: np.ndarray, f: _Frame, look: _Look) -> None:
    """Socket shade and crease, then sclera, iris and pupil clipped to the eye contour, then the lash line."""
    centre = eye.mean(0)
    width = float(np.linalg.norm(eye[3] - eye[0]))
    _glaze(img, centre + 1.6 * (eye - centre), look.skin * 0.7, 0.35)
    _stroke(img, eye[:4] - f.down * 0.06 * f.unit, look.skin * 0.6, 1)
    iris = centre + look.gaze * width @ np.stack([f.right, f.down])
    radius = 0.21 * width

    def paint(layer: np.ndarray, o: np.ndarray) -> None:
        layer[:] = _col(look.sclera)
        _disc(layer, iris - o, radius, look.iris * 0.6)
        _disc(layer, iris - o, radius * 0.85, look.iris)
        _disc(layer, iris - o, radius * 0.45, (12, 10, 10))
        _disc(layer, iris - o + radius * 0.35 * (f.right - f.down), radius * 0.15, (250, 250, 250))

    _inside(img, eye, paint)
    _stroke(img, eye[:4], look.brow * 0.4, max(1.0, 0.035 * f.unit))
    _stroke(img, eye[[3, 4, 5, 0]], look.skin * 0.6, 1)


def _draw_nose(img: np.ndarray, f: _Frame, look: _Look) -> None:
    """A shaded flank on the side away from the light, the nose-base line and two nostrils above it."""
    pts = f.pts
    side, eye = (31, 39) if float(look.light @ f.right) > 0 else (35, 42)
    _glaze(img, np.array([pts[27], pts[30], pts[side], (pts[side] + pts[eye]) / 2]), look.skin * 0.65, 0.2)
    _stroke(img, pts[31:36], look.skin * 0.55, 1)
    angle = math.degrees(math.atan2(f.right[1], f.right[0]))
    for a, b, c in ((31, 32, 33), (33, 34, 35)):
        span = float(np.linalg.norm(pts[c] - pts[a]))
        centre = 0.25 * pts[a] + 0.5 * pts[b] + 0.25 * pts[c] - f.down * 0.03 * f.unit
        _ellipse(img, centre, (0.3 * span, 0.13 * span), angle, look.skin * 0.3)


def _draw_mouth(img: np.ndarray, f: _Frame, look: _Look) -> None:
    """Lips between the outer and inner contours (upper lip darker); an open mouth shows a dark inside and teeth."""
    pts = f.pts
    _fill(img, pts[48:60], look.lips * 1.05)
    _fill(img, [*pts[48:55], *pts[60:65][::-1]], look.lips * 0.85)
    gap = float(np.linalg.norm(pts[61:64] - pts[[67, 66, 65]], axis=1).mean())
    if gap < 0.05 * f.unit:
        _stroke(img, pts[60:65], look.lips * 0.5, 1)
        return
    upper = pts[60:65]
    teeth = upper + f.down * min(0.4 * gap, 0.06 * f.unit)

    def paint(layer: np.ndarray, o: np.ndarray) -> None:
        layer[:] = (40, 18, 22)
        _fill(layer, [*(upper - o), *(teeth - o)[::-1]], (225, 220, 205))

    _inside(img, pts[60:68], paint)


def _occlude(img: np.ndarray, f: _Frame, rng: np.random.Generator) -> None:
    """A rectangle or blob (a hand, a microphone, hair) over part of the face."""
    centre = f.pts[rng.integers(NUM_LANDMARKS)] + rng.normal(0, 0.2 * f.unit, 2)
    size = rng.uniform(0.25, 0.7) * f.unit
    colour = rng.uniform(0.7, 1.0) * (_SKIN[rng.integers(len(_SKIN))] if rng.random() < 0.3
                                      else _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1)))
    if rng.random() < 0.5:
        a = rng.uniform(0, math.pi)
        axes = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) * rng.uniform(0.4, 1.0, 2)[:, None]
        _fill(img, centre + size * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) @ axes, colour)
    else:
        t = np.linspace(0, 2 * math.pi, 12, endpoint=False)
        r = size * rng.uniform(0.6, 1.0, 12)
        _fill(img, centre + np.stack([np.cos(t) * r, np.sin(t) * r], 1), colour)


def _finish(img: np.ndarray, rng: np.random.Generator, noise: np.ndarray) -> np.ndarray:
    """Scene lighting (a gradient and a colour cast), sometimes blur, then sensor noise."""
    h, w = img.shape[:2]
    a = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0.0, 0.7) / max(h, w)
    gx = (np.arange(w, dtype=np.float32) - w / 2) * np.float32(slope * math.cos(a))
    gy = (np.arange(h, dtype=np.float32) - h / 2) * np.float32(slope * math.sin(a))
    gain = np.float32(rng.uniform(0.7, 1.2)) * (1.0 + gy[:, None] + gx[None, :])
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    out = img.astype(np.float32) * (gain[..., None] * cast)
    r = rng.random()
    if r < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.5))
    elif r < 0.4:
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        cv2.line(kernel, (0, int(rng.integers(k))), (k - 1, int(rng.integers(k))), 1.0, 1)
        out = cv2.filter2D(out, -1, kernel / kernel.sum())
    dy, dx = rng.integers(0, np.array(noise.shape[:2]) - [h, w] + 1)
    out += noise[dy:dy + h, dx:dx + w] * np.float32(rng.uniform(1.0, 8.0))
    return np.clip(out, 0, 255).astype(np.uint8)


def _render(rng: np.random.Generator, h: int, w: int, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One (h, w, 3) RGB image and its (68, 2) landmarks."""
    p, look = _sample_params(rng), _sample_look(rng)
    f = _place(p, rng, h, w)
    img = _background(rng, h, w)
    _draw_body(img, f, look)
    _draw_skin(img, f, look, rng)
    _draw_brows(img, f, look)
    for first in (36, 42):
        _draw_eye(img, f.pts[first:first + 6], f, look)
    _draw_nose(img, f, look)
    _draw_mouth(img, f, look)
    if rng.random() < 0.2:
        _occlude(img, f, rng)
    return _finish(img, rng, noise), f.pts[:NUM_LANDMARKS]


def make_synthetic_300w(root: str | Path, *, split: str, num_images: int, image_size: tuple[int, int] = (256, 256),
                        seed: int = 0) -> Path:
    """Write ``num_images`` one-face images of ``image_size`` (H, W) and their 300W landmark list; returns the
    list ``<root>/face_landmarks_300w_<split>.csv``. Deterministic in ``seed``."""
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = image_size
    noise = rng.standard_normal((h + 32, w + 32, 3), dtype=np.float32)
    rows = []
    for index in range(num_images):
        img, pts = _render(rng, h, w, noise)
        name = f"images/{split}/{index:06d}.jpg"
        quality = int(rng.integers(70, 96))
        cv2.imwrite(str(root / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        lo, hi = pts.min(0), pts.max(0)
        box = (lo + hi) / 2
        rows.append([name, f"{float((hi - lo).max()) / 200:.6f}", f"{box[0]:.4f}", f"{box[1]:.4f}",
                     *(f"{v:.4f}" for v in pts.ravel())])
    out = root / f"face_landmarks_300w_{split}.csv"
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS_300W)
        writer.writerows(rows)
    return out
