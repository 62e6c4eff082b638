"""Synthetic street scenes in the real Cityscapes layout, for tests and the CPU segmentation demo.

:func:`make_synthetic_cityscapes` writes ``leftImg8bit/<split>/<city>/<city>_000000_<frame>_leftImg8bit.png``
and ``gtFine/<split>/<city>/<city>_000000_<frame>_gtFine_labelIds.png`` holding Cityscapes *label ids*, so
:class:`hrnet.tasks.segmentation.datasets.CityscapesSegmentation` reads them with the standard label-id -> train-id
mapping.

Each image is rendered from a pinhole camera looking down a street (focal length, camera height, horizon and
vanishing point vary): road with asphalt texture, lane markings and the occasional zebra crossing;
paved sidewalks with tile joints and a kerb; building facades on both sides in perspective (plaster colours,
floors of windows, shop fronts, cornices), sometimes a park (vegetation) instead; a far backdrop of buildings
or trees; sky (clear, overcast or hazy, with clouds). Objects stand on the ground and are drawn far to near,
so they occlude each other: cars as shaded 3-D boxes with cabin, windows, wheels and lights (in the lanes or
parked along the kerb), people as articulated figures (head, torso, arms, legs in stride, clothes), poles
(some with a lamp arm), traffic signs of several shapes and colours, trees with trunks and leafy crowns.
Cast shadows, illumination and colour casts, blur and sensor noise are added; ``difficulty`` (0 = clean,
1 = default) scales noise, shadows, blur and colour overlap between classes (grey cars on grey asphalt,
autumn trees, overcast skies next to white facades...). About one frame in four shows the ego vehicle's
bonnet at the bottom (label id 1, ignored in training, as in Cityscapes).

Label ids used: 1 ego vehicle (-> ignore), 7 road, 8 sidewalk, 11 building, 17 pole, 20 traffic sign,
21 vegetation, 23 sky, 24 person, 26 car - i.e. 9 of the 19 train classes.

:func:`preview_grid` writes image | colourised-mask pairs into one PNG for a visual check.
"""

from __future__ import annotations

import colorsys
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..tasks.segmentation.datasets import CITYSCAPES_LABEL_TO_TRAIN, CITYSCAPES_PALETTE, colorize_mask

__all__ = ["SYNTHETIC_LABEL_IDS", "make_synthetic_cityscapes", "preview_grid", "render_street_scene"]

EGO, ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR = 1, 7, 8, 11, 17, 20, 21, 23, 24, 26
SYNTHETIC_LABEL_IDS: tuple[int, ...] = (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR)

# Real Cityscapes city names per split (the generator only borrows the names and the folder layout).
_CITIES = {
    "train": ("aachen", "bochum", "bremen"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn"),
}


# ------------------------------------------------------------------------------------------------ colour
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)),
                    np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish value noise of feature size ``cell`` pixels, float32 (h, w)."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _hash01(*keys: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) from integer arrays (per tile / window variation)."""
    h = np.full(np.broadcast(*keys).shape, (salt * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF, np.uint64)
    for k in keys:
        h = (h ^ (np.asarray(k).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF))) * np.uint64(0x85EBCA6B)
        h &= np.uint64(0xFFFFFFFF)
        h ^= h >> np.uint64(13)
        h = (h * np.uint64(0xC2B2AE35)) & np.uint64(0xFFFFFFFF)
        h ^= h >> np.uint64(16)
    return (h & np.uint64(0xFFFFFF)).astype(np.float32) / float(1 << 24)


# -------------------------------------------------------------------------------------------- geometry
@dataclass
class _Camera:
    f: float  # focal length, pixels
    ch: float  # camera height, metres
    yh: float  # horizon row
    xv: float  # vanishing-point column
    H: int
    W: int

    def project(self, X, Y, Z):
        Z = np.maximum(np.asarray(Z, np.float64), 1e-3)
        return self.xv + self.f * np.asarray(X) / Z, self.yh + self.f * (self.ch - np.asarray(Y)) / Z

    def ppm(self, Z: float) -> float:
        return self.f / max(Z, 1e-3)

    def ground_y(self, Z: float) -> float:
        return self.yh + self.f * self.ch / max(Z, 1e-3)


class _Canvas:
    """RGB float image + label-id map; shapes are rasterised into a small local window around them."""

    def __init__(self, H: int, W: int, rng: np.random.Generator):
        self.H, self.W, self.rng = H, W, rng
        self.img = np.zeros((H, W, 3), np.float32)
        self.lab = np.full((H, W), SKY, np.uint8)

    def _window(self, xs: list[float], ys: list[float], pad: float = 1.0):
        x0 = max(int(math.floor(min(xs) - pad)), 0)
        y0 = max(int(math.floor(min(ys) - pad)), 0)
        x1 = min(int(math.ceil(max(xs) + pad)) + 1, self.W)
        y1 = min(int(math.ceil(max(ys) + pad)) + 1, self.H)
        if x1 <= x0 or y1 <= y0:
            return None
        return y0, x0, y1, x1

    def poly_mask(self, pts) -> tuple[np.ndarray, int, int] | None:
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        if not np.isfinite(pts).all():
            return None
        win = self._window(pts[:, 0].tolist(), pts[:, 1].tolist())
        if win is None:
            return None
        y0, x0, y1, x1 = win
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p = np.round((pts - (x0, y0)) * 16).astype(np.int32)
        cv2.fillPoly(m, [p], 1, cv2.LINE_8, 4)
        return m.view(bool), y0, x0

    def shape_mask(self, draw, bbox) -> tuple[np.ndarray, int, int] | None:
        """``draw(canvas_uint8, offset_xy)`` rasterises into a window over ``bbox`` (x0, y0, x1, y1)."""
        win = self._window([bbox[0], bbox[2]], [bbox[1], bbox[3]], pad=2)
        if win is None:
            return None
        y0, x0, y1, x1 = win
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        draw(m, (x0, y0))
        return m.view(bool), y0, x0

    def paint(self, mk, color, label: int | None, noise: float = 0.0, shade=None) -> None:
        """Fill mask ``mk`` = (bool window, y0, x0) with ``color`` (RGB or (h, w, 3)), times ``shade``
        (h, w), plus grey fine noise of std ``noise``."""
        if mk is None:
            return
        m, y0, x0 = mk
        n = int(np.count_nonzero(m))
        if n == 0:
            return
        h, w = m.shape
        if np.ndim(color) == 3:
            vals = color[m]
        else:
            vals = np.empty((n, 3), np.float32)
            vals[:] = np.asarray(color, np.float32)
        if shade is not None:
            vals = vals * np.asarray(shade, np.float32)[m][:, None]
        if noise > 0:
            vals = vals + self.rng.standard_normal((n, 1), dtype=np.float32) * np.float32(noise)
        self.img[y0:y0 + h, x0:x0 + w][m] = vals
        if label is not None:
            self.lab[y0:y0 + h, x0:x0 + w][m] = label


def _capsule(m: np.ndarray, off, a, b, ra: float, rb: float) -> None:
    a = np.asarray(a, np.float64) - off
    b = np.asarray(b, np.float64) - off
    d = b - a
    n = math.hypot(d[0], d[1])
    s = 16
    if n > 1e-6:
        nrm = np.array([-d[1], d[0]]) / n
        poly = np.round(np.array([a + nrm * ra, b + nrm * rb, b - nrm * rb, a - nrm * ra]) * s).astype(np.int32)
        cv2.fillConvexPoly(m, poly, 1, cv2.LINE_8, 4)
    for c, r in ((a, ra), (b, rb)):
        cv2.circle(m, (int(round(c[0] * s)), int(round(c[1] * s))), max(1, int(round(r * s))), 1, -1, cv2.LINE_8, 4)


# --------------------------------------------------------------------------------------------- palettes
def _facade_colour(rng: np.random.Generator, d: float) -> np.ndarray:
    kind = rng.choice(6, p=[0.26, 0.2, 0.16, 0.14, 0.12, 0.12])
    if kind == 0:  # beige / cream plaster
        c = _hsv(rng.uniform(0.07, 0.13), rng.uniform(0.12, 0.35), rng.uniform(0.6, 0.9))
    elif kind == 1:  # grey concrete
        c = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.06), rng.uniform(0.35, 0.7))
    elif kind == 2:  # brick
        c = _hsv(rng.uniform(0.0, 0.05), rng.uniform(0.4, 0.65), rng.uniform(0.35, 0.6))
    elif kind == 3:  # white
        c = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.05), rng.uniform(0.8, 0.95))
    elif kind == 4:  # ochre / pastel
        c = _hsv(rng.choice([0.1, 0.15, 0.55, 0.95, 0.3]) + rng.uniform(-0.03, 0.03), rng.uniform(0.2, 0.4),
                 rng.uniform(0.6, 0.85))
    else:  # dark
        c = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.38))
    if rng.random() < 0.15 * d:  # greenish facade: overlaps vegetation
        c = _hsv(rng.uniform(0.2, 0.3), rng.uniform(0.2, 0.4), rng.uniform(0.35, 0.6))
    return c


def _car_colour(rng: np.random.Generator, d: float) -> np.ndarray:
    r = rng.random()
    if r < 0.2 + 0.15 * d:  # silver / grey, like asphalt
        return _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.0, 0.08), rng.uniform(0.4, 0.72))
    if r < 0.42:
        return _hsv(0.0, 0.0, rng.uniform(0.08, 0.2))  # black
    if r < 0.6:
        return _hsv(0.0, 0.0, rng.uniform(0.82, 0.95))  # white
    return _hsv(rng.choice([0.0, 0.02, 0.6, 0.63, 0.33, 0.12, 0.08, 0.75]) + rng.uniform(-0.02, 0.02),
                rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.85))


def _vegetation_colour(rng: np.random.Generator, d: float) -> np.ndarray:
    if rng.random() < 0.12 * d:  # autumn
        return _hsv(rng.uniform(0.07, 0.14), rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.6))
    return _hsv(rng.uniform(0.17, 0.32), rng.uniform(0.35, 0.75), rng.uniform(0.22, 0.55))


_SKIN = np.array([(255, 224, 196), (235, 190, 155), (205, 150, 110), (170, 115, 80), (120, 80, 55), (90, 60, 42)],
                 np.float32)


# ----------------------------------------------------------------------------------------------- scene
class _Scene:
    def __init__(self, rng: np.random.Generator, H: int, W: int, difficulty: float):
        self.rng, self.H, self.W, self.d = rng, H, W, float(max(difficulty, 0.0))
        r = rng
        self.cam = _Camera(f=W * r.uniform(0.8, 1.25), ch=r.uniform(1.15, 1.8), yh=H * r.uniform(0.36, 0.52),
                           xv=W * r.uniform(0.32, 0.68), H=H, W=W)
        self.cv = _Canvas(H, W, rng)
        # street cross-section (metres): road edges at -RL / +RR, facades at -BL / +BR
        lanes = int(r.choice([2, 2, 3, 4]))
        road = lanes * r.uniform(2.9, 3.4)
        off = r.uniform(-0.35, 0.35) * road
        self.RL, self.RR = road / 2 + off, road / 2 - off
        self.RL, self.RR = max(self.RL, 1.8), max(self.RR, 1.8)
        self.SL, self.SR = r.uniform(1.8, 5.0), r.uniform(1.8, 5.0)
        self.BL, self.BR = self.RL + self.SL, self.RR + self.SR
        self.lanes = lanes
        self.parks: list[tuple[int, float, float, float]] = []  # (side, facade distance, z0, z1)
        self.z_end = float(r.uniform(45, 160))
        self.z_near = self.cam.f * self.cam.ch / (H - self.cam.yh)  # ground distance at the bottom row

    # --------------------------------------------------------------------------------------- sky
    def sky(self):
        H, W, r, cv = self.H, self.W, self.rng, self.cv
        kind = r.choice(3, p=[0.55, 0.3, 0.15])
        if kind == 0:  # clear
            top = _hsv(r.uniform(0.55, 0.62), r.uniform(0.35, 0.7), r.uniform(0.6, 0.9))
            bot = _hsv(r.uniform(0.53, 0.6), r.uniform(0.05, 0.25), r.uniform(0.85, 1.0))
        elif kind == 1:  # overcast
            v = r.uniform(0.7, 0.95)
            top = _hsv(r.uniform(0.55, 0.62), r.uniform(0.02, 0.12), v - r.uniform(0.0, 0.1))
            bot = _hsv(r.uniform(0.55, 0.62), r.uniform(0.0, 0.06), min(v + 0.05, 1.0))
        else:  # hazy / evening
            top = _hsv(r.uniform(0.58, 0.66), r.uniform(0.25, 0.5), r.uniform(0.55, 0.75))
            bot = _hsv(r.uniform(0.04, 0.12), r.uniform(0.2, 0.45), r.uniform(0.85, 1.0))
        t = np.clip(np.arange(H, dtype=np.float32) / max(self.cam.yh, 1.0), 0, 1)[:, None, None]
        grad = top[None, None] * (1 - t) + bot[None, None] * t
        img = np.broadcast_to(grad, (H, W, 3)).copy()
        if r.random() < 0.7:  # clouds
            c = _smooth_noise(r, H, W, r.uniform(8, 24) * W / 256) + 0.5 * _smooth_noise(r, H, W, 4 * W / 256)
            a = np.clip((c - r.uniform(0.2, 1.0)) * r.uniform(0.4, 0.9), 0, 0.85)[..., None]
            cloud = _hsv(0.6, r.uniform(0.0, 0.06), r.uniform(0.8, 1.0))
            img = img * (1 - a) + cloud * a
        cv.img[:] = img + r.standard_normal((H, W, 1), dtype=np.float32) * np.float32(1.5)
        cv.lab[:] = SKY

    # ------------------------------------------------------------------------------------ ground
    def ground(self):
        H, W, r, cam, cv, d = self.H, self.W, self.rng, self.cam, self.cv, self.d
        y0 = int(math.floor(cam.yh)) + 1
        if y0 >= H:
            return
        ys = np.arange(y0, H, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
        Z = cam.f * cam.ch / (ys - cam.yh)
        X = (xs - cam.xv) * Z / cam.f
        Z = np.broadcast_to(Z, X.shape)
        h, w = X.shape
        inside = Z < self.z_end
        road = inside & (X >= -self.RL) & (X <= self.RR)
        side = inside & ~road & (X >= -self.BL) & (X <= self.BR)
        # asphalt
        g = r.uniform(0.27, 0.5) if r.random() > 0.2 * d else r.uniform(0.45, 0.6)
        base = _hsv(r.uniform(0.55, 0.7), r.uniform(0.0, 0.1), g)
        blot = _smooth_noise(r, h, w, 10 * W / 256) * r.uniform(4, 10) + _smooth_noise(r, h, w, 3) * 3
        asphalt = base + (blot + r.standard_normal((h, w), dtype=np.float32) * np.float32(5 + 3 * d))[..., None]
        # repair patches and wear in the wheel tracks
        for _ in range(int(r.integers(0, 4))):
            px, pz, pw, pl = r.uniform(-self.RL, self.RR), r.uniform(self.z_near, 40), r.uniform(1, 3), r.uniform(1, 6)
            pm = (np.abs(X - px) < pw / 2) & (np.abs(Z - pz) < pl / 2)
            asphalt[pm] *= r.uniform(0.75, 1.2)
        # markings: lane dashes, edge lines, sometimes a zebra crossing
        mark = np.zeros((h, w), bool)
        lane_w = (self.RL + self.RR) / self.lanes
        period, dash = r.uniform(8, 14), r.uniform(2.5, 4.5)
        phase = r.uniform(0, period)
        lw = r.uniform(0.12, 0.18)
        for k in range(1, self.lanes):
            xl = -self.RL + k * lane_w
            solid = self.lanes == 2 and r.random() < 0.3
            m = np.abs(X - xl) < lw / 2
            if not solid:
                m &= ((Z + phase) % period) < dash
            mark |= m
        if r.random() < 0.7:
            mark |= (np.abs(X + self.RL - 0.35) < lw / 2) | (np.abs(X - self.RR + 0.35) < lw / 2)
        if r.random() < 0.25:
            zc = r.uniform(self.z_near + 2, 30)
            mark |= (Z > zc) & (Z < zc + r.uniform(3, 5)) & (((X + 10) % 1.0) < 0.5)
        mark &= road
        paint_col = _hsv(0.13, r.uniform(0.0, 0.12), r.uniform(0.75, 0.95)) if r.random() > 0.1 else \
            _hsv(0.13, 0.6, 0.85)
        fade = r.uniform(0.55, 1.0)
        asphalt[mark] = asphalt[mark] * (1 - fade) + paint_col * fade
        # pavement: tiles in ground coordinates, a kerb strip along the road
        img = cv.img[y0:]
        lab = cv.lab[y0:]
        for sign, R, B in ((-1, self.RL, self.BL), (1, self.RR, self.BR)):
            sm = side & ((X < 0) if sign < 0 else (X > 0))
            if not sm.any():
                continue
            kind = r.choice(4, p=[0.4, 0.25, 0.2, 0.15])
            if kind == 0:
                pc = _hsv(r.uniform(0, 1), r.uniform(0.0, 0.05), r.uniform(0.5, 0.75))
            elif kind == 1:
                pc = _hsv(r.uniform(0.0, 0.04), r.uniform(0.25, 0.45), r.uniform(0.45, 0.65))
            elif kind == 2:
                pc = _hsv(r.uniform(0.08, 0.12), r.uniform(0.12, 0.3), r.uniform(0.55, 0.75))
            else:  # asphalt-like dark pavement: overlaps road
                pc = _hsv(r.uniform(0.55, 0.7), r.uniform(0.0, 0.08), r.uniform(0.32, 0.5))
            tz, tx = r.uniform(0.3, 0.7), r.uniform(0.3, 0.7)
            iz, ix = np.floor(Z / tz), np.floor(X / tx)
            joint = ((Z % tz) < 0.05) | ((X % tx) < 0.05)
            var = (_hash01(iz, ix, salt=int(r.integers(1 << 30))) - 0.5) * r.uniform(8, 22)
            grain = r.standard_normal((h, w), dtype=np.float32) * np.float32(4 + 2 * d)
            pave = pc + (var - joint * np.float32(r.uniform(15, 35)) + grain)[..., None]
            kerb = sm & (np.abs(X - sign * R) < r.uniform(0.15, 0.3))
            pave[kerb] = pave[kerb] * 0.6 + _hsv(0, 0, r.uniform(0.55, 0.8)) * 0.4
            img[sm] = pave[sm]
            lab[sm] = SIDEWALK
        img[road] = asphalt[road]
        lab[road] = ROAD
        # cast shadow of the buildings on one side: a stepped edge, one step per block
        if r.random() < 0.2 + 0.4 * d:
            sgn = r.choice([-1, 1])
            width = r.uniform(0.3, 1.0) * (self.RL + self.RR + self.SL + self.SR)
            edge = -self.BL + width if sgn < 0 else self.BR - width
            blocks = np.floor(Z / r.uniform(8, 20))
            jitter = (_hash01(blocks, salt=int(r.integers(1 << 30))) - 0.5) * width * 0.6
            sh = ((X < edge + jitter) if sgn < 0 else (X > edge + jitter)) & (road | side)
            sh &= Z < self.z_end
            k = r.uniform(0.5, 0.75)
            tint = np.array([0.95, 0.98, 1.08], np.float32)
            img[sh] = img[sh] * np.float32(k) * tint

    # ----------------------------------------------------------------------------------- facades
    def _segments(self, z_start: float, z_stop: float, park_p: float):
        r = self.rng
        segs = []
        z = z_start
        while z < z_stop:
            length = r.uniform(8, 28)
            kind = "park" if r.random() < park_p else "building"
            height = r.uniform(7, 26) if kind == "building" else r.uniform(4, 12)
            segs.append((z, min(z + length, z_stop), kind, height))
            z += length
        return segs

    def _noise_fields(self):
        if not hasattr(self, "_fields"):
            r, H, W = self.rng, self.H, self.W
            fine = r.standard_normal((H, W), dtype=np.float32)
            self._fields = (_smooth_noise(r, H, W, 1.6) + 0.5 * _smooth_noise(r, H, W, 4.0), fine)
        return self._fields

    def _facade_pixels(self, pix, Z, Yw, U, top, seg_id, params):
        """Colour of facade pixels from per-segment parameters. ``pix`` = (rows, cols) of the pixels,
        U: along-facade coordinate (m)."""
        n = Z.shape[0]
        leaf_field, fine_field = self._noise_fields()
        leafv, finev = leaf_field[pix], fine_field[pix]
        col = np.empty((n, 3), np.float32)
        lab = np.empty(n, np.uint8)
        for s, p in enumerate(params):
            m = seg_id == s
            if not m.any():
                continue
            if p["kind"] == "park":
                lab[m] = VEGETATION
                v = 1 + 0.22 * leafv[m] + 0.12 * finev[m] + 0.15 * np.clip(Yw[m] / 6, -1, 1)
                col[m] = p["colour"] * np.clip(v, 0.35, 1.8)[:, None]
                continue
            lab[m] = BUILDING
            u, y = U[m], Yw[m]
            c = np.broadcast_to(p["colour"], (m.sum(), 3)).copy()
            c *= (1 + (_hash01(np.floor(u / 0.9), np.floor(y / 0.9), salt=p["salt"]) - 0.5) * 0.08)[:, None]
            fh, ws, ww = p["floor"], p["wspace"], p["wwidth"]
            fv = (y % fh) / fh
            fu = ((u + p["woff"]) % ws) / ws
            floor = np.floor(y / fh)
            win = (fv > 0.28) & (fv < 0.78) & (fu < ww / ws) & (floor >= 1) & (y < top[m] - 0.6)
            shop = (floor == 0) & (fv > 0.12) & (fv < 0.72) & (((u + p["woff"]) % p["shop"]) < p["shop"] * 0.7)
            if not p["shops"]:
                shop &= False
            glass_v = _hash01(floor, np.floor((u + p["woff"]) / ws), salt=p["salt"] + 1)
            glass = p["glass"] * (0.6 + 0.8 * glass_v)[:, None]
            c[win] = glass[win]
            c[shop] = p["glass"] * 1.1
            corn = (np.abs(y - top[m] + 0.25) < 0.25) | ((y % fh) < 0.12) & (floor >= 1) & p["ledges"]
            c[corn] *= 0.75
            col[m] = c
        return col, lab

    def _seg_params(self, segs):
        r, d = self.rng, self.d
        params = []
        for z0, z1, kind, height in segs:
            p = {"kind": kind, "salt": int(r.integers(1 << 30))}
            if kind == "park":
                p.update(colour=_vegetation_colour(r, d), leaf=r.uniform(0.25, 0.6))
            else:
                glass = _hsv(r.uniform(0.52, 0.65), r.uniform(0.1, 0.35), r.uniform(0.12, 0.35))
                p.update(colour=_facade_colour(r, d), floor=r.uniform(2.9, 3.6), wspace=r.uniform(2.2, 4.0),
                         woff=r.uniform(0, 4), glass=glass, shops=r.random() < 0.6, shop=r.uniform(3, 6),
                         ledges=bool(r.random() < 0.5))
                p["wwidth"] = p["wspace"] * r.uniform(0.35, 0.6)
            params.append(p)
        return params

    def facades(self):
        H, W, r, cam, cv = self.H, self.W, self.rng, self.cam, self.cv
        ys = np.arange(H, dtype=np.float32)[:, None] + 0.5
        for sgn, B in ((-1, self.BL), (1, self.BR)):
            xs = np.arange(W, dtype=np.float32) + 0.5
            dist = (cam.xv - xs) if sgn < 0 else (xs - cam.xv)
            cols = np.nonzero(dist > cam.f * B / self.z_end)[0]
            if cols.size == 0:
                continue
            Zc = cam.f * B / dist[cols]  # depth of the facade in each column
            segs = self._segments(0.0, self.z_end, 0.18)
            params = self._seg_params(segs)
            self.parks += [(sgn, B, a, b) for a, b, kind, _ in segs if kind == "park"]
            starts = np.array([s[0] for s in segs])
            seg_col = np.clip(np.searchsorted(starts, Zc, side="right") - 1, 0, len(segs) - 1)
            heights = np.array([s[3] for s in segs], np.float32)
            top_col = heights[seg_col]
            # ragged top for parks
            for s, p in enumerate(params):
                mcol = seg_col == s
                if p["kind"] == "park" and mcol.any():
                    k = int(mcol.sum())
                    top_col[mcol] += (_smooth_noise(r, 1, k, 6)[0] * 1.5 + _smooth_noise(r, 1, k, 1.5)[0] * 0.4)
            Yw = cam.ch - (ys - cam.yh) * Zc[None, :] / cam.f  # (H, ncols)
            m = (Yw >= 0) & (Yw <= top_col[None, :])
            yy, cc = np.nonzero(m)
            if yy.size == 0:
                continue
            col, lab = self._facade_pixels((yy, cols[cc]), Zc[cc], Yw[yy, cc], Zc[cc], top_col[cc], seg_col[cc],
                                           params)
            shade = r.uniform(0.8, 1.05)
            grain = r.standard_normal((yy.size, 1), dtype=np.float32) * np.float32(3 + 2 * self.d)
            cv.img[yy, cols[cc]] = col * np.float32(shade) + grain
            cv.lab[yy, cols[cc]] = lab

    def backdrop(self):
        """Frontal wall of buildings / trees closing the street at ``z_end``."""
        H, W, r, cam, cv = self.H, self.W, self.rng, self.cam, self.cv
        Z = self.z_end
        x0, _ = cam.project(-self.BL, 0, Z)
        x1, _ = cam.project(self.BR, 0, Z)
        c0, c1 = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)) + 1, W)
        if c1 <= c0:
            return
        xs = np.arange(c0, c1, dtype=np.float32) + 0.5
        X = (xs - cam.xv) * Z / cam.f
        ys = np.arange(H, dtype=np.float32)[:, None] + 0.5
        Yw = np.broadcast_to(cam.ch - (ys - cam.yh) * Z / cam.f, (H, xs.size))
        park_p = 0.5 if r.random() < 0.3 else 0.15
        segs = self._segments(-self.BL - 5, self.BR + 5, park_p)
        segs = [(a, b, k, max(h, cam.ch + 1.0)) for a, b, k, h in segs]
        params = self._seg_params(segs)
        starts = np.array([s[0] for s in segs])
        seg_col = np.clip(np.searchsorted(starts, X, side="right") - 1, 0, len(segs) - 1)
        top_col = np.array([s[3] for s in segs], np.float32)[seg_col]
        m = (Yw >= 0) & (Yw <= top_col[None, :])
        yy, cc = np.nonzero(m)
        if yy.size == 0:
            return
        col, lab = self._facade_pixels((yy, c0 + cc), np.full(yy.size, Z, np.float32), Yw[yy, cc], X[cc], top_col[cc],
                                       seg_col[cc], params)
        haze = r.uniform(0.0, 0.25)
        col = col * (1 - haze) + cv.img[yy, c0 + cc] * haze
        cv.img[yy, c0 + cc] = col
        cv.lab[yy, c0 + cc] = lab

    # ----------------------------------------------------------------------------------- objects
    def _box_faces(self, x0, x1, y0, y1, z0, z1):
        """Visible faces of an axis-aligned box as image polygons, in a painter-safe order."""
        cam = self.cam
        P = lambda X, Y, Z: np.stack(cam.project(X, Y, Z), -1)  # noqa: E731
        faces = []
        if y1 < cam.ch:  # top
            faces.append(("top", P(np.array([x0, x1, x1, x0]), np.full(4, y1), np.array([z0, z0, z1, z1]))))
        if x1 < 0:  # right side faces the camera axis
            faces.append(("side", P(np.full(4, x1), np.array([y0, y0, y1, y1]), np.array([z0, z1, z1, z0]))))
        if x0 > 0:
            faces.append(("side", P(np.full(4, x0), np.array([y0, y0, y1, y1]), np.array([z0, z1, z1, z0]))))
        faces.append(("front", P(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]), np.full(4, z0))))
        return faces

    def _quad(self, X, Y, Z) -> np.ndarray:
        return np.stack(self.cam.project(np.asarray(X, np.float64), np.asarray(Y, np.float64),
                                         np.broadcast_to(np.asarray(Z, np.float64), (4,))), -1)

    def car(self, X: float, Z: float, front: bool):
        r, cv, cam, d = self.rng, self.cv, self.cam, self.d
        w, L = r.uniform(1.65, 1.95), r.uniform(3.8, 4.9)
        h = r.uniform(1.4, 1.6) if r.random() > 0.2 else r.uniform(1.7, 2.0)
        body_lo, body_hi = 0.28, h * r.uniform(0.55, 0.65)
        colour = _car_colour(r, d)
        glass = _hsv(r.uniform(0.55, 0.65), r.uniform(0.1, 0.3), r.uniform(0.1, 0.3))
        x0, x1 = X - w / 2, X + w / 2
        px = cam.ppm(Z) * w  # width in pixels
        if px < 2:
            return
        detail = px >= 7
        # soft dark shadow on the ground under the car, drawn first
        mk = cv.poly_mask(self._quad([x0 - 0.1, x1 + 0.1, x1 + 0.1, x0 - 0.1], [0, 0, 0, 0], [Z, Z, Z + L, Z + L]))
        if mk is not None:
            m, y0, xq = mk
            sl = (slice(y0, y0 + m.shape[0]), slice(xq, xq + m.shape[1]))
            ground = m & ((cv.lab[sl] == ROAD) | (cv.lab[sl] == SIDEWALK))
            cv.img[sl][ground] *= np.float32(r.uniform(0.35, 0.55))
        # wheels under the body, then body and cabin boxes
        tyre = _hsv(0, 0, r.uniform(0.05, 0.12))
        wheels = [(x0 + 0.05, Z + 0.7), (x1 - 0.35, Z + 0.7)]
        if detail and (x1 < 0 or x0 > 0):  # the rear wheel on the visible side
            wheels.append((x1 - 0.35 if x1 < 0 else x0 + 0.05, Z + L - 0.8))
        for xw, zw in wheels:
            cv.paint(cv.poly_mask(self._quad([xw, xw + 0.3, xw + 0.3, xw], [0, 0, 0.62, 0.62], zw)), tyre, CAR, noise=2)
        for name, pts in self._box_faces(x0, x1, body_lo, body_hi, Z, Z + L):
            k = {"top": 1.1, "side": 0.78, "front": 0.92}[name]
            mk = cv.poly_mask(pts)
            if mk is None:
                continue
            grad = np.linspace(1.12, 0.85, mk[0].shape[0], dtype=np.float32)[:, None]
            cv.paint(mk, colour * k, CAR, noise=2 + d, shade=np.broadcast_to(grad, mk[0].shape))
        ci = r.uniform(0.08, 0.18)
        cz0, cz1 = Z + r.uniform(0.4, 0.9), Z + L - r.uniform(0.9, 1.4)
        for name, pts in self._box_faces(x0 + ci, x1 - ci, body_hi, h, cz0, cz1):
            mk = cv.poly_mask(pts)
            if name == "top":
                cv.paint(mk, colour * 1.05, CAR, noise=2)
                continue
            cv.paint(mk, colour * (0.8 if name == "side" else 0.9), CAR, noise=2)
            # window: the face shrunk towards its centre, darker glass with a reflection gradient
            c = pts.mean(0)
            mk2 = cv.poly_mask(c + (pts - c) * np.array([0.86, 0.78]))
            if mk2 is not None:
                refl = np.linspace(1.4, 0.8, mk2[0].shape[0], dtype=np.float32)[:, None]
                cv.paint(mk2, glass, CAR, noise=3, shade=np.broadcast_to(refl, mk2[0].shape))
        if not detail:
            return
        # lights and plate on the near face
        lc = _hsv(0.0, 0.85, 0.8) if not front else _hsv(0.12, 0.15, 0.95)
        ly = [body_hi - 0.25, body_hi - 0.25, body_hi - 0.08, body_hi - 0.08]
        for la, lb in ((x0 + 0.08, x0 + 0.38), (x1 - 0.38, x1 - 0.08)):
            cv.paint(cv.poly_mask(self._quad([la, lb, lb, la], ly, Z)), lc, CAR, noise=3)
        cv.paint(cv.poly_mask(self._quad([X - 0.26, X + 0.26, X + 0.26, X - 0.26],
                                         [body_lo + 0.12, body_lo + 0.12, body_lo + 0.24, body_lo + 0.24], Z)),
                 _hsv(0.15, 0.05, 0.92), CAR, noise=3)

    def person(self, X: float, Z: float):
        r, cv, cam = self.rng, self.cv, self.cam
        hgt = r.uniform(1.5, 1.9)
        s = cam.ppm(Z)
        if s * hgt < 6:
            return
        fx, fy = cam.project(X, 0.0, Z)
        side = r.random() < 0.5  # walking sideways (legs spread in x) or towards the camera
        facing = r.choice([-1, 1])
        stride = r.uniform(0.0, 0.45) if side else r.uniform(0.0, 0.1)
        P = lambda dx, dy: (fx + dx * hgt * s, fy - dy * hgt * s)  # noqa: E731
        hip, sho, neck, head = 0.52, 0.81, 0.86, 0.93
        hw = 0.07 if side else 0.1
        skin = _SKIN[r.integers(len(_SKIN))] * r.uniform(0.85, 1.05)
        top = _hsv(r.uniform(0, 1), r.uniform(0.1, 0.8), r.uniform(0.15, 0.9))
        pants = _hsv(r.choice([0.6, 0.62, 0.08, 0.0]), r.uniform(0.0, 0.6), r.uniform(0.1, 0.55))
        hair = _hsv(0.07, r.uniform(0.2, 0.6), r.uniform(0.05, 0.4))
        shoe = _hsv(0, 0, r.uniform(0.05, 0.3))
        legs = []
        for k, sgn in enumerate((-1, 1)):
            a = stride * sgn
            hx = sgn * (0.02 if side else 0.045)
            knee = (hx + math.sin(a) * 0.25, hip - math.cos(a) * 0.25)
            foot = (hx + math.sin(a) * 0.5 + (0.02 * sgn if not side else 0), 0.02)
            legs.append((P(hx, hip), P(*knee), P(*foot)))
        arms = []
        swing = r.uniform(0.0, 0.5) if side else r.uniform(0, 0.15)
        for sgn in (-1, 1):
            a = -swing * sgn
            sx = sgn * (0.03 if side else hw + 0.02)
            elb = (sx + math.sin(a) * 0.16 + (0 if side else sgn * 0.02), sho - math.cos(a) * 0.16)
            hand = (elb[0] + math.sin(a * 1.3) * 0.15, elb[1] - 0.15)
            arms.append((P(sx, sho), P(*elb), P(*hand)))
        pts = np.array([p for leg in legs for p in leg] + [p for arm in arms for p in arm] + [P(0, 1.0)])
        box = (pts[:, 0].min() - 0.1 * hgt * s, pts[:, 1].min() - 0.05 * hgt * s,
               pts[:, 0].max() + 0.1 * hgt * s, fy + 2)
        R = lambda v: max(v * hgt * s, 0.6)  # noqa: E731

        def part(fn, colour, noise=3.0):
            mk = cv.shape_mask(fn, box)
            cv.paint(mk, colour, PERSON, noise=noise)

        far_leg, near_leg = (legs[0], legs[1]) if facing > 0 else (legs[1], legs[0])
        for leg, k in ((far_leg, 0.8), (near_leg, 1.0)):
            part(lambda m, o, lg=leg: (_capsule(m, o, lg[0], lg[1], R(0.045), R(0.038)),
                                       _capsule(m, o, lg[1], lg[2], R(0.038), R(0.03))), pants * k)
            part(lambda m, o, lg=leg: _capsule(m, o, lg[2], (lg[2][0] + facing * R(0.05), lg[2][1]), R(0.025),
                                               R(0.022)), shoe)
        part(lambda m, o: cv2.fillConvexPoly(m, np.round((np.array([P(-hw - 0.02, sho), P(hw + 0.02, sho),
                                                                    P(hw, hip - 0.03), P(-hw, hip - 0.03)]) - o)
                                                         * 16).astype(np.int32), 1, cv2.LINE_8, 4), top)
        for arm, k in ((arms[0], 0.85), (arms[1], 1.0)):
            part(lambda m, o, am=arm: (_capsule(m, o, am[0], am[1], R(0.032), R(0.028)),
                                       _capsule(m, o, am[1], am[2], R(0.028), R(0.022))), top * k)
            part(lambda m, o, am=arm: cv2.circle(m, (int(round((am[2][0] - o[0]) * 16)),
                                                     int(round((am[2][1] - o[1]) * 16))),
                                                 max(1, int(round(R(0.022) * 16))), 1, -1, cv2.LINE_8, 4), skin)
        part(lambda m, o: _capsule(m, o, P(0, neck - 0.02), P(0, neck + 0.02), R(0.03), R(0.03)), skin)
        hc = P(0, head)
        part(lambda m, o: cv2.ellipse(m, (int(round((hc[0] - o[0]) * 16)), int(round((hc[1] - o[1]) * 16))),
                                      (max(1, int(R(0.052) * 16)), max(1, int(R(0.065) * 16))), 0, 0, 360, 1, -1,
                                      cv2.LINE_8, 4), skin)
        hc2 = P(0, head + 0.025)
        part(lambda m, o: cv2.ellipse(m, (int(round((hc2[0] - o[0]) * 16)), int(round((hc2[1] - o[1]) * 16))),
                                      (max(1, int(R(0.055) * 16)), max(1, int(R(0.045) * 16))), 0, 180, 360, 1, -1,
                                      cv2.LINE_8, 4), hair)
        if r.random() < 0.25:  # bag
            bx = P(facing * (hw + 0.04), hip + 0.02)
            part(lambda m, o: cv2.rectangle(m, (int((bx[0] - o[0] - R(0.05)) * 16), int((bx[1] - o[1] - R(0.06)) * 16)),
                                            (int((bx[0] - o[0] + R(0.05)) * 16), int((bx[1] - o[1] + R(0.06)) * 16)),
                                            1, -1, cv2.LINE_8, 4), _hsv(r.uniform(0, 1), r.uniform(0, 0.7),
                                                                        r.uniform(0.1, 0.6)))

    def pole(self, X: float, Z: float):
        r, cv, cam, d = self.rng, self.cv, self.cam, self.d
        width = r.uniform(0.16, 0.32)
        height = r.uniform(3.0, 8.5)
        if cam.ppm(Z) * width < 0.8:
            return
        colour = _hsv(r.uniform(0.3, 0.6), r.uniform(0.0, 0.25), r.uniform(0.2, 0.65))
        p = np.stack(cam.project(np.array([X - width / 2, X + width / 2, X + width / 2, X - width / 2]),
                                 np.array([0, 0, height, height]), np.full(4, Z)), -1)
        mk = cv.poly_mask(p)
        if mk is not None:
            wd = mk[0].shape[1]
            cyl = (1.15 - 0.5 * np.abs(np.linspace(-1, 1, wd, dtype=np.float32)) ** 2)[None, :]
            cv.paint(mk, colour, POLE, noise=2 + d, shade=np.broadcast_to(cyl, mk[0].shape))
        if r.random() < 0.35:  # lamp arm over the road
            arm_len = r.uniform(0.8, 2.5) * (1 if X < 0 else -1)
            a = np.array(cam.project(X, height - 0.1, Z))
            b = np.array(cam.project(X + arm_len, height + 0.1, Z))
            rr = cam.ppm(Z) * width * 0.35
            mk = cv.shape_mask(lambda m, o: _capsule(m, o, a, b, rr, rr), (min(a[0], b[0]) - rr, min(a[1], b[1]) - rr,
                                                                          max(a[0], b[0]) + rr, max(a[1], b[1]) + rr))
            cv.paint(mk, colour * 0.95, POLE, noise=2)
            lamp = np.stack(cam.project(np.array([X + arm_len - 0.25, X + arm_len + 0.25, X + arm_len + 0.2,
                                                  X + arm_len - 0.2]),
                                        np.array([height + 0.12, height + 0.12, height - 0.1, height - 0.1]),
                                        np.full(4, Z)), -1)
            cv.paint(cv.poly_mask(lamp), colour * 0.8, POLE, noise=2)
        if r.random() < 0.65:
            self.sign(X, min(height - 0.3, r.uniform(2.0, 3.2)), Z - 0.05)

    def sign(self, X: float, Y: float, Z: float):
        r, cv, cam = self.rng, self.cv, self.cam
        size = r.uniform(0.55, 0.9)
        s = cam.ppm(Z) * size
        if s < 2:
            return
        cx, cy = cam.project(X, Y, Z)
        shape = r.choice(5, p=[0.3, 0.22, 0.2, 0.14, 0.14])
        red, white, blue = _hsv(0.0, r.uniform(0.75, 0.95), r.uniform(0.65, 0.9)), _hsv(0, 0, r.uniform(0.85, 0.97)), \
            _hsv(r.uniform(0.58, 0.62), r.uniform(0.7, 0.95), r.uniform(0.5, 0.8))
        yellow = _hsv(r.uniform(0.12, 0.15), r.uniform(0.75, 0.95), r.uniform(0.8, 0.95))
        green = _hsv(0.38, 0.8, 0.45)
        box = (cx - s, cy - s, cx + s, cy + s)

        def circ(rad):
            return lambda m, o: cv2.circle(m, (int(round((cx - o[0]) * 16)), int(round((cy - o[1]) * 16))),
                                           max(1, int(round(rad * 16))), 1, -1, cv2.LINE_8, 4)

        def polyf(pts):
            return lambda m, o: cv2.fillPoly(m, [np.round((np.asarray(pts) - o) * 16).astype(np.int32)], 1,
                                             cv2.LINE_8, 4)

        def ngon(n, rad, rot):
            a = rot + np.arange(n) * 2 * math.pi / n
            return np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], -1)

        if shape == 0:  # prohibitory: red ring, white disc
            cv.paint(cv.shape_mask(circ(s / 2), box), red, SIGN, noise=3)
            cv.paint(cv.shape_mask(circ(s / 2 * 0.72), box), white, SIGN, noise=3)
        elif shape == 1:  # mandatory: blue disc with white arrow
            cv.paint(cv.shape_mask(circ(s / 2), box), blue, SIGN, noise=3)
            cv.paint(cv.shape_mask(polyf([(cx - s * 0.08, cy + s * 0.3), (cx + s * 0.08, cy + s * 0.3),
                                          (cx + s * 0.08, cy - s * 0.05), (cx + s * 0.22, cy - s * 0.05),
                                          (cx, cy - s * 0.32), (cx - s * 0.22, cy - s * 0.05),
                                          (cx - s * 0.08, cy - s * 0.05)]), box), white, SIGN, noise=3)
        elif shape == 2:  # warning triangle
            up = r.random() < 0.75
            rot = -math.pi / 2 if up else math.pi / 2
            cv.paint(cv.shape_mask(polyf(ngon(3, s * 0.6, rot)), box), red, SIGN, noise=3)
            cv.paint(cv.shape_mask(polyf(ngon(3, s * 0.38, rot)), box), white, SIGN, noise=3)
        elif shape == 3:  # priority diamond
            cv.paint(cv.shape_mask(polyf(ngon(4, s * 0.55, 0)), box), white, SIGN, noise=3)
            cv.paint(cv.shape_mask(polyf(ngon(4, s * 0.4, 0)), box), yellow, SIGN, noise=3)
        else:  # rectangular information sign
            c = blue if r.random() < 0.6 else green
            hw, hh = s * r.uniform(0.4, 0.6), s * r.uniform(0.3, 0.45)
            cv.paint(cv.shape_mask(polyf([(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh),
                                          (cx - hw, cy + hh)]), box), c, SIGN, noise=3)
            cv.paint(cv.shape_mask(polyf([(cx - hw * 0.55, cy - hh * 0.2), (cx + hw * 0.55, cy - hh * 0.2),
                                          (cx + hw * 0.55, cy + hh * 0.2), (cx - hw * 0.55, cy + hh * 0.2)]), box),
                     white, SIGN, noise=3)

    def tree(self, X: float, Z: float):
        r, cv, cam, d = self.rng, self.cv, self.cam, self.d
        s = cam.ppm(Z)
        trunk_h = r.uniform(1.8, 3.2)
        tw = r.uniform(0.22, 0.4)
        crown_r = r.uniform(1.2, 2.4)
        if s * crown_r < 2:
            return
        bark = _hsv(r.uniform(0.05, 0.1), r.uniform(0.2, 0.45), r.uniform(0.18, 0.4))
        p = np.stack(cam.project(np.array([X - tw / 2, X + tw / 2, X + tw / 2, X - tw / 2]),
                                 np.array([0, 0, trunk_h + crown_r * 0.5, trunk_h + crown_r * 0.5]), np.full(4, Z)), -1)
        cv.paint(cv.poly_mask(p), bark, VEGETATION, noise=4)
        cx, cy = cam.project(X, trunk_h + crown_r * 0.9, Z)
        R = crown_r * s
        box = (cx - 1.8 * R, cy - 1.8 * R, cx + 1.8 * R, cy + 1.5 * R)
        blobs = [(cx + r.normal(0, 0.45) * R, cy + r.normal(0, 0.35) * R, R * r.uniform(0.45, 0.8))
                 for _ in range(int(r.integers(4, 10)))]

        def crown(m, o):
            for bx, by, br in blobs:
                cv2.ellipse(m, (int(round((bx - o[0]) * 16)), int(round((by - o[1]) * 16))),
                            (max(1, int(br * 16)), max(1, int(br * 0.85 * 16))), r.uniform(0, 180), 0, 360, 1, -1,
                            cv2.LINE_8, 4)

        mk = cv.shape_mask(crown, box)
        if mk is None:
            return
        m, y0, x0 = mk
        h, w = m.shape
        base = _vegetation_colour(r, d)
        leaves = (1 + 0.25 * _smooth_noise(r, h, w, max(1.3, 0.15 * s)) + 0.1 * _smooth_noise(r, h, w, max(3, 0.8 * s))
                  + r.standard_normal((h, w), dtype=np.float32) * np.float32(0.12))
        light = np.linspace(1.2, 0.75, h, dtype=np.float32)[:, None]
        # ragged outline: knock out some edge pixels
        hole = (_smooth_noise(r, h, w, max(1.2, 0.3 * s)) > 1.3) & (cv2.erode(m.astype(np.uint8), np.ones((3, 3))) == 0)
        m = m & ~hole
        cv.paint((m, y0, x0), base, VEGETATION, noise=3, shade=np.clip(leaves * light, 0.3, 1.8))

    def hedge(self, sgn: int, z0: float, z1: float):
        """Low bushes along the facade base (a box side face with a ragged top)."""
        r, cv, cam = self.rng, self.cv, self.cam
        B = self.BL if sgn < 0 else self.BR
        Xf = sgn * (B - r.uniform(0.3, 0.8))
        hh = r.uniform(0.6, 1.4)
        p = np.stack(cam.project(np.full(4, Xf), np.array([0, 0, hh, hh]), np.array([z0, z1, z1, z0])), -1)
        mk = cv.poly_mask(p)
        if mk is None:
            return
        m, y0, x0 = mk
        h, w = m.shape
        top_noise = _smooth_noise(r, h, w, 2.5) > 0.9
        top_rows = np.arange(h)[:, None] < max(2, h * 0.25)
        m = m & ~(top_noise & top_rows)
        leaves = 1 + 0.3 * _smooth_noise(r, h, w, 2) + r.standard_normal((h, w), dtype=np.float32) * np.float32(0.15)
        cv.paint((m, y0, x0), _vegetation_colour(r, self.d), VEGETATION, noise=3, shade=np.clip(leaves, 0.3, 1.7))

    def objects(self):
        r, cam = self.rng, self.cam
        zn, zf = self.z_near, min(self.z_end - 2, 80.0)
        if zf <= zn + 1:
            return
        items = []

        def zs(n, lo=zn * 1.05, hi=zf, near_bias=1.6):
            u = r.random(n) ** near_bias
            return 1.0 / (1.0 / lo - u * (1.0 / lo - 1.0 / hi))

        # parked cars along both kerbs, in runs
        for sgn, R in ((-1, self.RL), (1, self.RR)):
            if r.random() < 0.7:
                z = zn * r.uniform(0.6, 1.3)
                while z < min(zf, 55.0):
                    if r.random() < 0.6:
                        items.append((z, "car", sgn * (R - r.uniform(0.9, 1.2)), False))
                    z += r.uniform(5.5, 10.0)
        for z in zs(int(r.integers(0, 4))):  # moving cars in the lanes
            lane = int(r.integers(0, self.lanes))
            lane_w = (self.RL + self.RR) / self.lanes
            items.append((z + 2, "car", -self.RL + (lane + 0.5) * lane_w + r.normal(0, 0.25),
                          bool(-self.RL + (lane + 0.5) * lane_w < 0 and r.random() < 0.5)))
        for z in zs(int(r.integers(1, 9)), near_bias=1.5):  # pedestrians, mostly on the sidewalks
            if r.random() < 0.8:
                sgn = r.choice([-1, 1])
                R, S = (self.RL, self.SL) if sgn < 0 else (self.RR, self.SR)
                items.append((z, "person", sgn * (R + r.uniform(0.4, S - 0.3))))
            else:
                items.append((z, "person", r.uniform(-self.RL, self.RR)))
        for z in zs(int(r.integers(1, 6)), near_bias=1.0):  # poles and signs at the kerb or the facade
            sgn = r.choice([-1, 1])
            R, S = (self.RL, self.SL) if sgn < 0 else (self.RR, self.SR)
            off = r.uniform(0.3, 0.8) if r.random() < 0.75 else S - r.uniform(0.3, 0.6)
            items.append((z, "pole", sgn * (R + off)))
        for _ in range(int(r.integers(0, 3))):  # sign on a short post
            z = zs(1)[0]
            sgn = r.choice([-1, 1])
            R = self.RL if sgn < 0 else self.RR
            items.append((z, "sign", sgn * (R + r.uniform(0.3, 0.7))))
        for sgn, R, S in ((-1, self.RL, self.SL), (1, self.RR, self.SR)):  # street trees
            if r.random() < 0.4:
                z = zn * r.uniform(0.5, 2.0)
                step = r.uniform(7, 14)
                off = r.uniform(0.6, max(0.7, S - 0.8))
                while z < zf:
                    items.append((z, "tree", sgn * (R + off)))
                    z += step * r.uniform(0.8, 1.2)
            if r.random() < 0.3:
                a = r.uniform(zn, zf * 0.6)
                items.append((a + 8, "hedge", sgn, a, a + r.uniform(4, 20)))
        for sgn, B, a, b in self.parks:  # trees standing in the parks, behind the bushes
            a, b = max(a, zn), min(b, zf)
            for _ in range(int(r.integers(0, 3)) if b > a else 0):
                items.append((r.uniform(a, b), "tree", sgn * (B + r.uniform(0.5, 3.0))))
        items.sort(key=lambda it: -it[0])
        for it in items:
            kind = it[1]
            if kind == "car":
                self.car(it[2], it[0], it[3])
            elif kind == "person":
                self.person(it[2], it[0])
            elif kind == "pole":
                self.pole(it[2], it[0])
            elif kind == "sign":
                z, x = it[0], it[2]
                ht = r.uniform(1.8, 2.6)
                w = 0.07
                p = np.stack(cam.project(np.array([x - w, x + w, x + w, x - w]), np.array([0, 0, ht, ht]),
                                         np.full(4, z)), -1)
                self.cv.paint(self.cv.poly_mask(p), _hsv(0, 0, r.uniform(0.35, 0.6)), POLE, noise=2)
                self.sign(x, ht, z - 0.02)
            elif kind == "tree":
                self.tree(it[2], it[0])
            elif kind == "hedge":
                self.hedge(it[2], it[3], it[4])

    def ego(self):
        r, cv, H, W = self.rng, self.cv, self.H, self.W
        if r.random() > 0.25:
            return
        top = H - H * r.uniform(0.06, 0.13)
        cx = W * r.uniform(0.45, 0.55)
        mk = cv.shape_mask(lambda m, o: cv2.ellipse(m, (int((cx - o[0]) * 16), int((H * 1.6 - o[1]) * 16)),
                                                    (int(W * 0.9 * 16), int((H * 1.6 - top) * 16)), 0, 0, 360, 1, -1,
                                                    cv2.LINE_8, 4), (0, top, W, H))
        if mk is None:
            return
        h = mk[0].shape[0]
        grad = np.linspace(1.6, 0.7, h, dtype=np.float32)[:, None] * np.ones_like(mk[0], np.float32)
        cv.paint(mk, _hsv(r.uniform(0, 1), r.uniform(0, 0.3), r.uniform(0.05, 0.25)), EGO, noise=2, shade=grad)

    def finish(self) -> np.ndarray:
        r, d = self.rng, self.d
        img = self.cv.img
        gain = r.uniform(1 - 0.3 * d - 0.05, 1 + 0.2 * d + 0.05)
        cast = 1 + r.normal(0, 0.04 * d + 0.01, 3).astype(np.float32)
        img = img * gain * cast
        gamma = r.uniform(1 - 0.15 * d, 1 + 0.15 * d)
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
        if r.random() < 0.4 * d + 0.1:  # vignetting
            yy, xx = np.mgrid[0:self.H, 0:self.W].astype(np.float32)
            rr = ((xx / self.W - 0.5) ** 2 + (yy / self.H - 0.5) ** 2)
            img = img * (1 - r.uniform(0.1, 0.35) * rr)[..., None]
        sigma = r.uniform(0.3, 0.5 + 0.5 * d)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = img + r.standard_normal(img.shape, dtype=np.float32) * np.float32(1 + r.uniform(1, 5) * d)
        return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_street_scene(rng: np.random.Generator, image_size: tuple[int, int] = (128, 256),
                        difficulty: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic street scene: uint8 RGB image (H, W, 3) and uint8 Cityscapes label ids (H, W)."""
    H, W = int(image_size[0]), int(image_size[1])
    if H < 16 or W < 16:
        raise ValueError(f"image_size must be at least 16x16, got {image_size!r}")
    s = _Scene(rng, H, W, difficulty)
    s.sky()
    s.backdrop()
    s.facades()
    s.ground()
    s.objects()
    s.ego()
    return s.finish(), s.cv.lab.copy()


# --------------------------------------------------------------------------------------------- writing
def _split_code(split: str) -> int:
    return zlib.crc32(split.encode("utf-8")) & 0x7FFFFFFF


def make_synthetic_cityscapes(
    root: str | Path,
    *,
    split: str = "train",
    num_images: int = 200,
    image_size: tuple[int, int] = (128, 256),
    seed: int = 0,
    difficulty: float = 1.0,
    cities: tuple[str, ...] | None = None,
    write_color: bool = False,
) -> Path:
    """Write ``num_images`` synthetic street scenes of ``image_size`` (H, W) in the Cityscapes layout.

    Image ``i`` is drawn from ``numpy.random.default_rng((seed, crc32(split), i))``: the same arguments
    give the same files, and different splits (or seeds) give different scenes. Images are spread over
    ``cities`` (default: three real Cityscapes city names of that split). ``write_color`` also writes the
    ``*_gtFine_color.png`` visualisation. Returns ``root``.
    """
    root = Path(root)
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    cities = tuple(cities) if cities else _CITIES.get(split, ("synthcity",))
    code = _split_code(split)
    lut = np.zeros(256, np.uint8)
    lut[:] = 255
    for k, v in CITYSCAPES_LABEL_TO_TRAIN.items():
        if k >= 0:
            lut[k] = v
    for city in cities:
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        city = cities[i % len(cities)]
        frame = i // len(cities)
        stem = f"{city}_000000_{frame:06d}"
        rng = np.random.default_rng((int(seed), code, i))
        img, lab = render_street_scene(rng, image_size, difficulty)
        cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"),
                    cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"), lab)
        if write_color:
            colour = colorize_mask(lut[lab], CITYSCAPES_PALETTE)
            cv2.imwrite(str(root / "gtFine" / split / city / f"{stem}_gtFine_color.png"),
                        cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
    return root


def preview_grid(root: str | Path, split: str, out_png: str | Path, n: int = 8, *, start: int = 0,
                 cols: int = 2) -> Path:
    """Write ``n`` image | colourised-mask pairs (train-id palette, ignore black) of a Cityscapes-layout
    split into ``out_png``."""
    root = Path(root)
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))[start:start + n]
    if not images:
        raise FileNotFoundError(f"no *_leftImg8bit.png under {root / 'leftImg8bit' / split}")
    lut = np.full(256, 255, np.uint8)
    for k, v in CITYSCAPES_LABEL_TO_TRAIN.items():
        if k >= 0:
            lut[k] = v
    tiles = []
    for p in images:
        stem = p.name[:-len("_leftImg8bit.png")]
        mask_path = root / "gtFine" / split / p.parent.name / f"{stem}_gtFine_labelIds.png"
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        lab = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if img is None or lab is None:
            raise ValueError(f"could not read {p} or {mask_path}")
        colour = cv2.cvtColor(colorize_mask(lut[lab], CITYSCAPES_PALETTE), cv2.COLOR_RGB2BGR)
        gap = np.full((img.shape[0], 4, 3), 255, np.uint8)
        tiles.append(np.concatenate([img, gap, colour], 1))
    th, tw = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    canvas = np.full((rows * (th + 6), cols * (tw + 10), 3), 40, np.uint8)
    for i, t in enumerate(tiles):
        rr, cc = divmod(i, cols)
        canvas[rr * (th + 6):rr * (th + 6) + t.shape[0], cc * (tw + 10):cc * (tw + 10) + t.shape[1]] = t
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), canvas)
    return out


if __name__ == "__main__":  # pragma: no cover - manual preview
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/synth_city")
    t0 = time.perf_counter()
    make_synthetic_cityscapes(out, split="train", num_images=16)
    print(f"16 images in {time.perf_counter() - t0:.2f}s")
    print(preview_grid(out, "train", out / "preview.png", n=16))
