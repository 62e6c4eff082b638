"""Synthetic datasets in the real on-disk formats, for tests and the CPU demo.

Pose part
---------
:func:`make_synthetic_coco_keypoints` writes a COCO person-keypoints dataset (JPEG images plus
``annotations/person_keypoints_<split>.json``) of articulated, human-like figures: a kinematic
skeleton with human proportions and joint limits, a head ellipse carrying eyes, ears, nose and
mouth, tapered shaded limbs, clothes, hands and shoes, on cluttered backgrounds with limb-like
distractors, occluders and truncation at the image border.

Left and right are told apart the way they are in photographs, which keeps the data consistent
under horizontal-flip augmentation and flip testing: every figure faces the camera (the face with
its eyes/nose/mouth shows which way is front and which way is up), so the person's left side is
on the image-right of its up direction; and the two sides of a figure wear differently tinted
sleeves, trouser legs and shoes (the two tints are drawn at random per person), so a limb can be
followed through crossings. ``fixed_side_colours=True`` instead always tints the left side warm
and the right side cool: an absolute cue that is easier to learn but wrong after a mirror, so
use it only without flip augmentation and without flip testing.

:func:`preview_grid` draws the ground truth of a few images into one PNG for a visual check.
"""

from __future__ import annotations

import colorsys
import json
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..keypoints.sets import COCO_KEYPOINTS, KeypointSpec

# ----------------------------------------------------------------------------------------------
# Pose: drawing primitives (sub-pixel coordinates via cv2's fixed-point ``shift``)
# ----------------------------------------------------------------------------------------------

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

# COCO order: the generator always poses these 17 joints; other specs pick a subset by name.
_JOINTS = COCO_KEYPOINTS.joint_names
(NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI,
 L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK) = range(17)


def _fx(p) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def _col(c) -> tuple[int, int, int]:
    return int(c[0]), int(c[1]), int(c[2])


class _Painter:
    """Draws on an RGB image and, for silhouette parts, on a 0/255 mask at the same time."""

    def __init__(self, img: np.ndarray, mask: np.ndarray | None):
        self.img, self.mask = img, mask

    def capsule(self, a, b, ra, rb, color, *, sil=True):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        d = b - a
        n = math.hypot(d[0], d[1])
        targets = [(self.img, _col(color), _AA)]
        if sil and self.mask is not None:
            targets.append((self.mask, 255, cv2.LINE_8))
        if n > 1e-6:
            nrm = np.array([-d[1], d[0]]) / n
            poly = np.array([a + nrm * ra, b + nrm * rb, b - nrm * rb, a - nrm * ra]) * _ONE
            poly = np.round(poly).astype(np.int32)
        for canvas, c, lt in targets:
            if n > 1e-6:
                cv2.fillConvexPoly(canvas, poly, c, lt, _SHIFT)
            cv2.circle(canvas, _fx(a), max(1, int(round(ra * _ONE))), c, -1, lt, _SHIFT)
            cv2.circle(canvas, _fx(b), max(1, int(round(rb * _ONE))), c, -1, lt, _SHIFT)

    def poly(self, pts, color, *, sil=True):
        p = [np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32)]
        cv2.fillPoly(self.img, p, _col(color), _AA, _SHIFT)
        if sil and self.mask is not None:
            cv2.fillPoly(self.mask, p, 255, cv2.LINE_8, _SHIFT)

    def ellipse(self, c, axes, angle_deg, color, *, sil=True):
        ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        cv2.ellipse(self.img, _fx(c), ax, angle_deg, 0, 360, _col(color), -1, _AA, _SHIFT)
        if sil and self.mask is not None:
            cv2.ellipse(self.mask, _fx(c), ax, angle_deg, 0, 360, 255, -1, cv2.LINE_8, _SHIFT)

    def circle(self, c, r, color, *, sil=False):
        rr = max(1, int(round(r * _ONE)))
        cv2.circle(self.img, _fx(c), rr, _col(color), -1, _AA, _SHIFT)
        if sil and self.mask is not None:
            cv2.circle(self.mask, _fx(c), rr, 255, -1, cv2.LINE_8, _SHIFT)

    def line(self, a, b, width, color):
        cv2.line(self.img, _fx(a), _fx(b), _col(color), max(1, int(round(width))), _AA, _SHIFT)


# ----------------------------------------------------------------------------------------------
# Pose: colours
# ----------------------------------------------------------------------------------------------

_SKIN_TONES = np.array([
    (255, 224, 196), (241, 194, 158), (228, 180, 140), (205, 150, 110), (176, 120, 80),
    (141, 93, 60), (110, 72, 46), (86, 58, 40),
], np.float64)
_HAIR = np.array([(25, 20, 18), (60, 40, 25), (100, 65, 35), (170, 130, 70), (215, 190, 130),
                  (120, 120, 120), (150, 60, 30)], np.float64)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1.0 - t) + np.asarray(b, np.float64) * t


def _shade(c, f: float) -> np.ndarray:
    return np.clip(np.asarray(c, np.float64) * f, 0, 255)


def _lighten(c, t: float) -> np.ndarray:
    return _mix(c, (255, 255, 255), t)


def _rand_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.1, 0.95), rng.uniform(0.25, 0.98))


@dataclass
class _Outfit:
    skin: np.ndarray
    hair: np.ndarray
    top: np.ndarray
    pants: np.ndarray
    side_top: tuple[np.ndarray, np.ndarray]     # (left, right) sleeve colours
    side_pants: tuple[np.ndarray, np.ndarray]   # (left, right) trouser-leg colours
    side_shoe: tuple[np.ndarray, np.ndarray]
    long_sleeves: bool
    long_pants: bool
    stripes: bool
    outline: bool
    gloves: bool


def _sample_outfit(rng: np.random.Generator, fixed_side_colours: bool) -> _Outfit:
    skin = np.clip(_SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3), 0, 255)
    hair = np.clip(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 8, 3), 0, 255)
    top = _rand_colour(rng)
    if rng.random() < 0.5:  # jeans / dark / khaki trousers, otherwise anything
        pants = [_hsv(0.6, 0.5, 0.45), _hsv(0.0, 0.0, 0.2), _hsv(0.11, 0.35, 0.65),
                 _hsv(0.0, 0.0, 0.5)][rng.integers(4)] + rng.normal(0, 10, 3)
        pants = np.clip(pants, 0, 255)
    else:
        pants = _rand_colour(rng)
    if fixed_side_colours:
        hue_l, hue_r = rng.uniform(-0.04, 0.10), rng.uniform(0.50, 0.66)  # left warm, right cool
    else:
        hue_l = rng.random()
        hue_r = hue_l + rng.uniform(0.3, 0.7)
        if rng.random() < 0.5:
            hue_l, hue_r = hue_r, hue_l
    acc_l = _hsv(hue_l, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    acc_r = _hsv(hue_r, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    t = rng.uniform(0.5, 0.7)
    return _Outfit(
        skin=skin, hair=hair, top=top, pants=pants,
        side_top=(_mix(top, acc_l, t), _mix(top, acc_r, t)),
        side_pants=(_mix(pants, acc_l, t), _mix(pants, acc_r, t)),
        side_shoe=(_mix((30, 30, 30), acc_l, 0.45), _mix((30, 30, 30), acc_r, 0.45)),
        long_sleeves=bool(rng.random() < 0.6), long_pants=bool(rng.random() < 0.75),
        stripes=bool(rng.random() < 0.3), outline=bool(rng.random() < 0.5),
        gloves=bool(rng.random() < 0.12),
    )


# ----------------------------------------------------------------------------------------------
# Pose: kinematic skeleton
# ----------------------------------------------------------------------------------------------


def _dir(theta: float) -> np.ndarray:
    """Unit vector; theta=0 points down (+y), theta=+pi/2 points to +x (the person's left)."""
    return np.array([math.sin(theta), math.cos(theta)])


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    names = list(table)
    p = np.array([table[k] for k in names], np.float64)
    return names[rng.choice(len(names), p=p / p.sum())]


def _arm_angles(rng: np.random.Generator, kind: str) -> tuple[float, float]:
    """(upper-arm angle from the torso's down axis, elbow bend), in the left-side convention."""
    u = rng.uniform
    if kind == "down":
        return float(np.clip(rng.normal(0.18, 0.12), -0.05, 0.5)), float(rng.normal(0.0, 0.25))
    if kind == "bent":
        return u(0.0, 0.9), (u(-2.4, -0.9) if rng.random() < 0.6 else u(0.8, 2.3))
    if kind == "out":
        return u(0.9, 1.8), u(-1.6, 1.3)
    if kind == "raised":
        return u(1.8, 3.0), u(-1.1, 1.1)
    if kind == "cross":
        return u(-0.45, 0.15), u(-1.4, 0.2)
    return u(-0.4, 3.0), u(-2.4, 2.4)  # "random"


def _leg_angles(rng: np.random.Generator, kind: str) -> tuple[float, float, float]:
    """(thigh angle, knee bend, thigh foreshortening), left-side convention."""
    u = rng.uniform
    if kind == "stand":
        return float(rng.normal(0.05, 0.05)), float(rng.normal(0.0, 0.06)), u(0.93, 1.0)
    if kind == "stride":
        return u(-0.15, 0.45), u(-0.45, 0.6), u(0.75, 1.0)
    if kind == "wide":
        return u(0.25, 0.65), u(-0.5, 0.2), u(0.9, 1.0)
    if kind == "kick":
        return u(0.6, 1.6), u(-1.3, 0.3), u(0.7, 1.0)
    if kind == "crouch":
        return u(0.25, 0.9), u(-1.7, -0.6), u(0.35, 0.7)
    return u(-0.38, -0.1), u(-0.2, 0.35), u(0.9, 1.0)  # "cross"


@dataclass
class _Figure:
    """A posed figure in pixels: the 17 COCO joints plus what is needed to draw it."""

    joints: np.ndarray            # (17, 2)
    hidden: np.ndarray            # (17,) bool: self-occluded (far ear)
    head_c: np.ndarray
    head_axes: tuple[float, float]
    head_u: np.ndarray            # the head's "left" unit vector in the image
    head_up: np.ndarray
    yaw: float                    # head yaw (sphere model)
    body_yaw: float
    left_t: np.ndarray            # torso's left and up unit vectors
    up_t: np.ndarray
    radii: dict[str, float]
    extent: np.ndarray            # (N, 2) points bounding the drawn figure
    outfit: _Outfit
    scale: float
    extra: dict[str, np.ndarray] = field(default_factory=dict)   # neck, hip centre


def _pose_units(rng: np.random.Generator, difficulty: float) -> dict:
    """Sample a pose in figure units (standing height ~1, y down, +x = the person's left)."""
    d = difficulty
    g = lambda m, s: m * (1.0 + rng.normal(0.0, s))  # noqa: E731
    L = dict(torso=g(0.30, 0.06), neck=g(0.115, 0.06), upper_arm=g(0.165, 0.06), forearm=g(0.145, 0.06),
             thigh=g(0.235, 0.05), shin=g(0.235, 0.05), sho=g(0.115, 0.07), hip=g(0.062, 0.08),
             head_a=g(0.057, 0.06), head_b=g(0.071, 0.05))
    body_yaw = float(np.clip(rng.normal(0.0, 0.3), -0.8, 0.8))
    head_yaw = float(np.clip(body_yaw + rng.normal(0.0, 0.2), -0.75, 0.75))
    wfac = max(math.cos(body_yaw), 0.55)
    pelvis = float(rng.normal(0.0, 0.08))
    lean = float(np.clip(rng.normal(0.0, 0.12 + 0.1 * d), -0.7, 0.7))
    tilt = float(np.clip(rng.normal(0.0, 0.2), -0.5, 0.5))

    legs = _pick(rng, dict(stand=0.35, stride=0.25, wide=0.14, crouch=0.1, kick=0.08 * d, cross=0.08 * d))
    if legs in ("kick", "cross"):
        leg_kinds = [legs, "stand"] if rng.random() < 0.5 else ["stand", legs]
    else:
        leg_kinds = [legs, legs]
    arm_table = dict(down=0.32, bent=0.24, out=0.14, raised=0.14, cross=0.08 * d, random=0.08 * d)
    arm_kinds = [_pick(rng, arm_table), _pick(rng, arm_table)]
    if rng.random() < 0.3:  # symmetric-ish poses (both arms up, hands on hips, ...)
        arm_kinds[1] = arm_kinds[0]

    fs = lambda: rng.uniform(0.55, 1.0) if rng.random() < 0.2 * d else rng.uniform(0.93, 1.0)  # noqa: E731
    up_t = _dir(math.pi + pelvis + lean)
    left_t = _dir(pelvis + lean + math.pi / 2)
    left_p = _dir(pelvis + math.pi / 2)
    hip_c = np.zeros(2)
    neck = hip_c + L["torso"] * fs() ** 0.5 * up_t
    j = np.zeros((17, 2))
    extra: dict[str, np.ndarray] = {"neck": neck, "hip_c": hip_c}
    for side, sgn in ((0, 1.0), (1, -1.0)):
        sho = neck + sgn * L["sho"] * wfac * left_t
        ua, fl = _arm_angles(rng, arm_kinds[side])
        th_ua = pelvis + lean + sgn * ua
        elb = sho + L["upper_arm"] * fs() * _dir(th_ua)
        wri = elb + L["forearm"] * fs() * _dir(th_ua + sgn * fl)
        hip = hip_c + sgn * L["hip"] * wfac * left_p
        th, kn, f_th = _leg_angles(rng, leg_kinds[side])
        th_th = pelvis + sgn * th
        kne = hip + L["thigh"] * f_th * _dir(th_th)
        ank = kne + L["shin"] * fs() * _dir(th_th + sgn * kn)
        j[(L_SHO, R_SHO)[side]], j[(L_ELB, R_ELB)[side]], j[(L_WRI, R_WRI)[side]] = sho, elb, wri
        j[(L_HIP, R_HIP)[side]], j[(L_KNE, R_KNE)[side]], j[(L_ANK, R_ANK)[side]] = hip, kne, ank

    head_up = _dir(math.pi + pelvis + lean + tilt)
    head_u = _dir(pelvis + lean + tilt + math.pi / 2)
    head_c = neck + L["neck"] * head_up
    a, b = L["head_a"], L["head_b"]
    face = lambda lam, lat, r=1.0: head_c + head_u * (a * r * math.sin(lam + head_yaw)) + head_up * (lat * b)  # noqa: E731
    hidden = np.zeros(17, bool)
    j[NOSE] = face(0.0, -0.22, 1.02)
    j[L_EYE], j[R_EYE] = face(0.5, 0.1, 0.95), face(-0.5, 0.1, 0.95)
    j[L_EAR], j[R_EAR] = face(math.pi / 2, 0.0), face(-math.pi / 2, 0.0)
    hidden[L_EAR] = math.cos(math.pi / 2 + head_yaw) < -0.42
    hidden[R_EAR] = math.cos(-math.pi / 2 + head_yaw) < -0.42
    return dict(joints=j, hidden=hidden, head_c=head_c, head_axes=(a, b), head_u=head_u, head_up=head_up,
                yaw=head_yaw, body_yaw=body_yaw, left_t=left_t, up_t=up_t, extra=extra)


def _sample_figure(rng: np.random.Generator, *, height_px: float, difficulty: float,
                   fixed_side_colours: bool) -> _Figure:
    """A posed figure centred (by its extent box) at the origin, rotated and scaled to pixels."""
    p = _pose_units(rng, difficulty)
    d = difficulty
    r = rng.random()
    if r < 0.07 * d:
        rot = rng.uniform(-math.pi, math.pi)
    elif r < 0.22 * d:
        rot = rng.uniform(0.6, 1.4) * (1 if rng.random() < 0.5 else -1)
    else:
        rot = float(np.clip(rng.normal(0.0, 0.15), -0.5, 0.5))
    cr, sr = math.cos(rot), math.sin(rot)
    R = np.array([[cr, -sr], [sr, cr]]) * height_px
    tr = lambda v: np.asarray(v) @ R.T  # noqa: E731  (rotation keeps handedness: no mirror)
    thick = rng.uniform(0.85, 1.2)
    radii = {k: v * height_px * thick for k, v in dict(
        ua0=0.036, ua1=0.03, fa0=0.028, fa1=0.021, hand0=0.02, hand1=0.026, th0=0.055, th1=0.041,
        sh0=0.037, sh1=0.027, shoe0=0.026, shoe1=0.03).items()}
    joints = tr(p["joints"])
    head_c = tr(p["head_c"])
    a, b = (s * height_px for s in p["head_axes"])
    ext = [joints, head_c + np.array([[-b, -b], [b, b]])]
    ext = np.concatenate(ext, 0)
    lo, hi = ext.min(0) - radii["th0"], ext.max(0) + radii["th0"]
    centre = (lo + hi) / 2
    fig = _Figure(
        joints=joints - centre, hidden=p["hidden"], head_c=head_c - centre, head_axes=(a, b),
        head_u=tr(p["head_u"]) / height_px, head_up=tr(p["head_up"]) / height_px, yaw=p["yaw"],
        body_yaw=p["body_yaw"], left_t=tr(p["left_t"]) / height_px, up_t=tr(p["up_t"]) / height_px,
        radii=radii, extent=np.array([lo - centre, hi - centre]),
        outfit=_sample_outfit(rng, fixed_side_colours), scale=height_px,
        extra={k: tr(v) - centre for k, v in p["extra"].items()},
    )
    return fig


def _shift_figure(fig: _Figure, t) -> None:
    t = np.asarray(t, np.float64)
    fig.joints = fig.joints + t
    fig.head_c = fig.head_c + t
    fig.extent = fig.extent + t
    fig.extra = {k: v + t for k, v in fig.extra.items()}


# ----------------------------------------------------------------------------------------------
# Pose: rendering a figure
# ----------------------------------------------------------------------------------------------


def _limb(pt: _Painter, a, b, ra, rb, colour, light, outline: bool):
    if outline:
        pt.capsule(a, b, ra + 0.9, rb + 0.9, _shade(colour, 0.45))
    pt.capsule(a, b, ra, rb, colour)
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    n = math.hypot(d[0], d[1])
    if n > 2.0 and min(ra, rb) > 1.5:  # cylinder highlight on the lit side
        nrm = np.array([-d[1], d[0]]) / n
        if nrm @ light < 0:
            nrm = -nrm
        off = 0.4 * nrm
        pt.capsule(a + off * ra + 0.15 * d, b + off * rb - 0.15 * d, 0.3 * ra, 0.3 * rb,
                   _lighten(colour, 0.3), sil=False)


def _draw_figure(img: np.ndarray, mask: np.ndarray | None, fig: _Figure, light: np.ndarray) -> None:
    pt = _Painter(img, mask)
    o, R, j, s = fig.outfit, fig.radii, fig.joints, fig.scale
    out = o.outline and s > 40
    left, up = fig.left_t, fig.up_t
    down = -up

    def leg(side):
        hip, kne, ank = j[(L_HIP, R_HIP)[side]], j[(L_KNE, R_KNE)[side]], j[(L_ANK, R_ANK)[side]]
        sgn = 1.0 if side == 0 else -1.0
        pants = o.side_pants[side]
        shin_c = pants if o.long_pants else o.skin
        shin_dir = (ank - kne) / max(np.linalg.norm(ank - kne), 1e-6)
        toe = ank + shin_dir * 0.03 * s + sgn * left * 0.035 * s + down * 0.01 * s
        pt.capsule(ank + shin_dir * 0.008 * s, toe, R["shoe0"], R["shoe1"], o.side_shoe[side])
        _limb(pt, kne, ank, R["sh0"], R["sh1"], shin_c, light, out)
        _limb(pt, hip, kne, R["th0"], R["th1"], pants, light, out)
        pt.circle(kne, R["th1"] * 0.8, _shade(shin_c if o.long_pants else pants, 0.8))

    def arm(side):
        sho, elb, wri = j[(L_SHO, R_SHO)[side]], j[(L_ELB, R_ELB)[side]], j[(L_WRI, R_WRI)[side]]
        sleeve = o.side_top[side]
        fore_c = sleeve if o.long_sleeves else o.skin
        fa_dir = (wri - elb) / max(np.linalg.norm(wri - elb), 1e-6)
        _limb(pt, sho, elb, R["ua0"], R["ua1"], sleeve, light, out)
        _limb(pt, elb, wri, R["fa0"], R["fa1"], fore_c, light, out)
        hand_c = _shade(o.side_shoe[side], 1.6) if o.gloves else _shade(o.skin, 0.86)
        pt.capsule(wri + fa_dir * 0.012 * s, wri + fa_dir * 0.055 * s, R["hand0"], R["hand1"], hand_c)
        pt.circle(elb, R["ua1"] * 0.75, _shade(sleeve, 0.78))
        if not o.long_sleeves:  # sleeve cuff marks the upper arm's end
            pt.circle(elb, R["fa0"] * 0.6, _shade(o.skin, 0.8))

    far = 0 if fig.body_yaw > 0 else 1  # the side turned away from the camera is drawn first
    near = 1 - far
    leg(far)
    leg(near)
    # pelvis / trousers
    lh, rh = j[L_HIP], j[R_HIP]
    hip_c = (lh + rh) / 2
    neck = fig.extra["neck"]
    waist_l = _mix(j[L_SHO], lh, 0.72) + left * 0.01 * s
    waist_r = _mix(j[R_SHO], rh, 0.72) - left * 0.01 * s
    pt.poly([waist_l, waist_r, rh - left * R["th0"] * 0.95 + down * 0.02 * s, hip_c + down * 0.06 * s,
             lh + left * R["th0"] * 0.95 + down * 0.02 * s], o.pants)
    if abs(fig.body_yaw) > 0.3:
        arm(far)
    # shirt
    ls, rs = j[L_SHO], j[R_SHO]
    tor = [ls + left * 0.03 * s + up * 0.02 * s, neck + up * 0.03 * s, rs - left * 0.03 * s + up * 0.02 * s,
           waist_r - left * 0.012 * s + down * 0.015 * s, waist_l + left * 0.012 * s + down * 0.015 * s]
    if out:
        cv2.polylines(img, [np.round(np.asarray(tor) * _ONE).astype(np.int32)], True,
                      _col(_shade(o.top, 0.45)), 1, _AA, _SHIFT)
    pt.poly(tor, o.top)
    if o.stripes:
        for t in np.linspace(0.25, 0.85, 4):
            pt.line(_mix(ls, waist_l, t), _mix(rs, waist_r, t), max(1.0, 0.012 * s), _shade(o.top, 0.6))
    pt.line(waist_l, waist_r, max(1.0, 0.012 * s), _shade(o.pants, 0.5))  # belt
    # neck and head
    hc, (a, b), u, hu = fig.head_c, fig.head_axes, fig.head_u, fig.head_up
    pt.capsule(neck + up * 0.01 * s, hc - hu * 0.3 * b, 0.027 * s, 0.025 * s, _shade(o.skin, 0.9))
    ang = math.degrees(math.atan2(u[1], u[0]))
    pt.ellipse(hc + hu * 0.1 * b, (a * 1.05, b * 1.02), ang, o.hair)
    pt.ellipse(hc - hu * 0.1 * b + u * a * 0.08 * math.sin(fig.yaw), (a * 0.95, b * 0.88), ang, o.skin)
    pt.ellipse(hc + hu * 0.6 * b - u * a * 0.1 * math.sin(fig.yaw), (a * 0.9, b * 0.42), ang, o.hair, sil=False)
    for k in (L_EAR, R_EAR):
        if not fig.hidden[k]:
            lam = math.pi / 2 if k == L_EAR else -math.pi / 2
            w = 0.18 + 0.17 * abs(math.cos(lam + fig.yaw))
            pt.ellipse(j[k], (a * w, b * 0.27), ang, _shade(o.skin, 0.78))
            pt.ellipse(j[k], (a * w * 0.45, b * 0.14), ang, _shade(o.skin, 0.55), sil=False)
    for k in (L_EYE, R_EYE):
        pt.ellipse(j[k], (a * 0.22, b * 0.14), ang, (245, 245, 240), sil=False)
        pt.circle(j[k], a * 0.12, (20, 20, 30))
    nose = j[NOSE]
    pt.poly([nose + u * a * 0.2 - hu * b * 0.04, nose - u * a * 0.2 - hu * b * 0.04,
             nose + hu * b * 0.32 + u * a * 0.05 * math.sin(fig.yaw)], _mix(o.skin, (110, 30, 20), 0.55), sil=False)
    mouth = hc + u * (a * 0.95 * math.sin(fig.yaw)) - hu * (b * 0.52)
    pt.line(mouth - u * a * 0.28, mouth + u * a * 0.28, max(1.0, 0.008 * s), (150, 40, 40))
    if abs(fig.body_yaw) > 0.3:
        arm(near)
    else:
        arm(far)
        arm(near)


# ----------------------------------------------------------------------------------------------
# Pose: backgrounds, distractors, occluders
# ----------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    c0, c1 = _rand_colour(rng), _rand_colour(rng)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(ang) + yy * math.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c0[None, None, :].astype(np.float32) * (1 - t[..., None]) + c1[None, None, :].astype(np.float32) * t[..., None]
    g = int(rng.integers(3, 9))
    low = rng.normal(0.0, rng.uniform(5, 30), (g, g, 3)).astype(np.float32)
    img += cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


def _clutter(rng: np.random.Generator, img: np.ndarray, n: int, scale: float) -> None:
    h, w = img.shape[:2]
    pt = _Painter(img, None)
    for _ in range(n):
        c = _rand_colour(rng)
        kind = rng.integers(7)
        x, y = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
        sz = rng.uniform(0.05, 0.35) * scale
        if kind == 0:  # rotated rectangle
            box = cv2.boxPoints(((x, y), (sz, sz * rng.uniform(0.2, 1.5)), rng.uniform(0, 180)))
            pt.poly(box, c)
        elif kind == 1:
            pt.circle((x, y), sz / 2, c)
        elif kind == 2:
            pt.ellipse((x, y), (sz / 2, sz * rng.uniform(0.1, 0.5)), rng.uniform(0, 180), c)
        elif kind == 3:  # thin lines / poles
            a = rng.uniform(0, math.pi)
            d = np.array([math.cos(a), math.sin(a)]) * sz * 2
            pt.line((x, y) - d, (x, y) + d, rng.uniform(1, 4), c)
        elif kind in (4, 5):  # limb-like distractor: a 2-3 segment jointed capsule chain
            p = np.array([x, y])
            a = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(0.02, 0.05) * scale
            skin = kind == 5 and rng.random() < 0.5
            c = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] if skin else c
            for _ in range(int(rng.integers(2, 4))):
                q = p + np.array([math.cos(a), math.sin(a)]) * rng.uniform(0.1, 0.22) * scale
                _limb(pt, p, q, r, r * 0.85, c, np.array([0.0, -1.0]), False)
                pt.circle(q, r * 0.8, _shade(c, 0.8))
                p, a, r = q, a + rng.uniform(-1.6, 1.6), r * 0.85
        else:  # blob / head-like ellipse without a face
            col = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] if rng.random() < 0.4 else c
            pt.ellipse((x, y), (sz * 0.3, sz * 0.38), rng.uniform(0, 180), col)


def _occluder(rng: np.random.Generator, img: np.ndarray, occ_mask: np.ndarray, centre, size: float) -> None:
    """A textured rectangle / ellipse / polygon drawn on top; marks its pixels in ``occ_mask``."""
    h, w = img.shape[:2]
    m = np.zeros((h, w), np.uint8)
    kind = rng.integers(3)
    cx, cy = centre
    if kind == 0:
        box = cv2.boxPoints(((float(cx), float(cy)), (size, size * rng.uniform(0.4, 1.6)), rng.uniform(0, 180)))
        cv2.fillPoly(m, [np.round(box * _ONE).astype(np.int32)], 255, cv2.LINE_8, _SHIFT)
    elif kind == 1:
        cv2.ellipse(m, _fx(centre), (int(size / 2 * _ONE), int(size * rng.uniform(0.2, 0.6) * _ONE)),
                    rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_8, _SHIFT)
    else:
        k = int(rng.integers(5, 9))
        angs = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = size / 2 * rng.uniform(0.5, 1.0, k)
        pts = np.stack([cx + rad * np.cos(angs), cy + rad * np.sin(angs)], 1)
        cv2.fillPoly(m, [np.round(pts * _ONE).astype(np.int32)], 255, cv2.LINE_8, _SHIFT)
    c = _rand_colour(rng)
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = c
    if rng.random() < 0.5:  # stripes
        yy, xx = np.mgrid[0:h, 0:w]
        a = rng.uniform(0, math.pi)
        per = rng.uniform(3, 9)
        stripe = (((xx * math.cos(a) + yy * math.sin(a)) / per) % 2.0) < 1.0
        tex[stripe] = _shade(c, 0.6)
    sel = m > 0
    img[sel] = np.clip(tex[sel], 0, 255).astype(np.uint8)
    occ_mask |= m


# ----------------------------------------------------------------------------------------------
# Pose: one image
# ----------------------------------------------------------------------------------------------


def _visibility(joints: np.ndarray, covered: np.ndarray, hidden: np.ndarray, h: int, w: int) -> np.ndarray:
    """COCO v flags: 0 outside the image, 1 inside but covered (mask) or self-hidden, 2 visible."""
    v = np.zeros(len(joints), np.int64)
    xi = np.floor(joints[:, 0] + 0.5).astype(np.int64)
    yi = np.floor(joints[:, 1] + 0.5).astype(np.int64)
    inside = (joints[:, 0] >= 0) & (joints[:, 0] <= w - 1) & (joints[:, 1] >= 0) & (joints[:, 1] <= h - 1)
    for k in np.nonzero(inside)[0]:
        v[k] = 1 if (covered[yi[k], xi[k]] or hidden[k]) else 2
    return v


def _mask_polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        c = cv2.approxPolyDP(c, 0.8, True)
        if len(c) >= 3:
            polys.append([float(v) for v in c.reshape(-1)])
    return polys


def _mask_bbox(mask: np.ndarray, margin: float) -> list[float] | None:
    x, y, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        return None
    h, w = mask.shape
    x0, y0 = max(0.0, x - margin), max(0.0, y - margin)
    x1, y1 = min(float(w), x + bw + margin), min(float(h), y + bh + margin)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[1][0], b[1][0]) - max(a[0][0], b[0][0]))
    iy = max(0.0, min(a[1][1], b[1][1]) - max(a[0][1], b[0][1]))
    inter = ix * iy
    area = lambda e: (e[1][0] - e[0][0]) * (e[1][1] - e[0][1])  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-6)


# Per-image rates of the real data's edge cases: no person, an iscrowd region, a tiny unlabelled person.
_EDGE_RATES = {"empty": 0.02, "crowd": 0.04, "tiny": 0.03}


@dataclass
class _Rendered:
    image: np.ndarray                          # RGB uint8
    people: list[dict] = field(default_factory=list)   # per annotation (before ids are assigned)
    figures: list[_Figure] = field(default_factory=list)


def _render_image(rng: np.random.Generator, h: int, w: int, persons: tuple[int, int],
                  difficulty: float, fixed_side_colours: bool) -> _Rendered:
    d = difficulty
    side = float(min(h, w))
    img = _background(rng, h, w)
    _clutter(rng, img, int(rng.integers(3, 10)), side)
    light = _dir(rng.uniform(0, 2 * math.pi))
    out = _Rendered(img)

    # Edge cases as in the real data: empty images, crowd regions, tiny unlabelled people.
    lo, hi = persons
    n_people = 0 if rng.random() < _EDGE_RATES["empty"] else int(rng.integers(lo, hi + 1))
    if rng.random() < _EDGE_RATES["crowd"]:
        cm = np.zeros((h, w), np.uint8)
        cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.1 * h, 0.5 * h)
        for _ in range(int(rng.integers(4, 9))):
            f = _sample_figure(rng, height_px=rng.uniform(0.07, 0.13) * side, difficulty=0.3,
                               fixed_side_colours=fixed_side_colours)
            _shift_figure(f, (cx + rng.normal(0, 0.1 * w), cy + rng.normal(0, 0.04 * h)))
            _draw_figure(img, cm, f, light)
        out.people.append(dict(kind="crowd", mask=cm))
    if rng.random() < _EDGE_RATES["tiny"]:
        tm = np.zeros((h, w), np.uint8)
        f = _sample_figure(rng, height_px=rng.uniform(0.05, 0.09) * side, difficulty=0.3,
                           fixed_side_colours=fixed_side_colours)
        _shift_figure(f, (rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)))
        _draw_figure(img, tm, f, light)
        out.people.append(dict(kind="tiny", mask=tm))

    placed: list[_Figure] = []
    for _ in range(n_people):
        hmax = 1.0 if n_people == 1 else 0.8
        for _attempt in range(12):
            fig = _sample_figure(rng, height_px=rng.uniform(0.4, hmax) * side, difficulty=d,
                                 fixed_side_colours=fixed_side_colours)
            (x0, y0), (x1, y1) = fig.extent
            bw, bh = x1 - x0, y1 - y0
            trunc = rng.random() < 0.15 * d
            pos = []
            for size, lim in ((bw, w), (bh, h)):
                if trunc:
                    pos.append(rng.uniform(-0.35 * size, lim - 0.65 * size))
                elif size <= lim:
                    pos.append(rng.uniform(0, lim - size))
                else:
                    pos.append(rng.uniform(lim - size, 0))
            _shift_figure(fig, (pos[0] - x0, pos[1] - y0))
            if all(_iou(fig.extent, g.extent) < 0.15 for g in placed):
                placed.append(fig)
                break
    masks = []
    for fig in placed:
        m = np.zeros((h, w), np.uint8)
        _draw_figure(img, m, fig, light)
        masks.append(m)
    occ = np.zeros((h, w), np.uint8)
    for fig in placed:
        if rng.random() < 0.4 * d:
            for _ in range(1 if rng.random() < 0.75 else 2):
                k = int(rng.integers(17))
                c = fig.joints[k] + rng.normal(0, 0.06 * fig.scale, 2)
                _occluder(rng, img, occ, c, rng.uniform(0.12, 0.32) * fig.scale)
    for i, (fig, m) in enumerate(zip(placed, masks)):
        covered = occ.copy()
        for later in masks[i + 1:]:
            covered |= later
        v = _visibility(fig.joints, covered > 0, fig.hidden, h, w)
        out.people.append(dict(kind="person", mask=m, joints=fig.joints, v=v))
        out.figures.append(fig)

    # Photometric finish: gain/bias, sensor noise, occasional blur.
    f = img.astype(np.float32) * rng.uniform(0.75, 1.15) + rng.uniform(-20, 20)
    f += rng.normal(0.0, rng.uniform(0.0, 7.0), f.shape).astype(np.float32)
    if rng.random() < 0.3:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.0))
    out.image = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# Pose: public API
# ----------------------------------------------------------------------------------------------


def _joint_order(spec: KeypointSpec) -> list[int]:
    order = []
    for name in spec.joint_names:
        if name not in _JOINTS:
            raise ValueError(f"synthetic pose data draws the 17 COCO joints; {name!r} is not one of them")
        order.append(_JOINTS.index(name))
    return order


def make_synthetic_coco_keypoints(
    root: str | Path,
    *,
    split: str = "train",
    num_images: int = 500,
    image_size: tuple[int, int] = (192, 192),
    persons_per_image: tuple[int, int] = (1, 2),
    seed: int = 0,
    keypoints: KeypointSpec = COCO_KEYPOINTS,
    difficulty: float = 1.0,
    fixed_side_colours: bool = False,
    jpeg_quality: int = 90,
) -> Path:
    """Write a synthetic COCO person-keypoints split; return the annotation JSON's path.

    Layout: ``<root>/<split>/000000000001.jpg ...`` and ``<root>/annotations/person_keypoints_<split>.json``.
    Each image is drawn from its own generator seeded by ``(seed, split, index)``, so a split is
    reproducible file-for-file and ``train``/``val`` differ even with the same ``seed``.

    ``keypoints`` picks and orders the joints written (names must be COCO joint names).
    ``difficulty`` scales the rate of occluders, truncation, strong rotations, crossed limbs and
    foreshortening (0 = clean upright figures, 1 = default, up to ~2). ``fixed_side_colours``: see
    the module docstring (absolute left/right tint; not mirror-safe).
    Keypoint ``v``: 2 visible, 1 inside the image but covered (occluder, a person in front, or the
    ear turned away), 0 outside the image (then x = y = 0). ``bbox`` is the figure's silhouette box
    clipped to the image plus a 2 px margin; ``area`` and the polygon ``segmentation`` are that
    (amodal) silhouette's. About 2% of images have no person, 4% a crowd region (``iscrowd=1``,
    RLE, no keypoints), 3% a tiny person without keypoints.
    """
    from pycocotools import mask as mask_utils

    h, w = int(image_size[0]), int(image_size[1])
    lo, hi = int(persons_per_image[0]), int(persons_per_image[1])
    if not 0 <= lo <= hi:
        raise ValueError(f"persons_per_image must be (min, max) with 0 <= min <= max, got {persons_per_image}")
    order = _joint_order(keypoints)
    root = Path(root)
    img_dir = root / split
    ann_dir = root / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    split_key = zlib.crc32(split.encode())

    images, annotations = [], []
    zeros = [0] * (3 * len(order))
    for i in range(num_images):
        image_id = i + 1
        rng = np.random.default_rng([int(seed), split_key, i])
        r = _render_image(rng, h, w, (lo, hi), float(difficulty), fixed_side_colours)
        file_name = f"{image_id:012d}.jpg"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        assert ok
        (img_dir / file_name).write_bytes(buf.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for p in r.people:
            m = p["mask"]
            bbox = _mask_bbox(m, 2.0)
            if bbox is None:
                continue
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                   "bbox": bbox, "area": float(np.count_nonzero(m))}
            if p["kind"] == "crowd":
                rle = mask_utils.encode(np.asfortranarray(m > 0).astype(np.uint8))
                ann.update(iscrowd=1, keypoints=list(zeros), num_keypoints=0,
                           segmentation={"size": [h, w], "counts": rle["counts"].decode("ascii")})
            else:
                x, y, bw, bh = bbox
                polys = _mask_polygons(m) or [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
                ann.update(iscrowd=0, segmentation=polys)
                if p["kind"] == "tiny":
                    ann.update(keypoints=list(zeros), num_keypoints=0)
                else:
                    kps = []
                    for k in order:
                        v = int(p["v"][k])
                        x, y = (round(float(p["joints"][k, 0]), 2), round(float(p["joints"][k, 1]), 2)) if v else (0, 0)
                        kps += [x, y, v]
                    ann.update(keypoints=kps, num_keypoints=int(sum(1 for k in order if p["v"][k] > 0)))
            annotations.append(ann)

    categories = [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(keypoints.joint_names),
        "skeleton": [[a + 1, b + 1] for a, b in keypoints.skeleton],
    }]
    data = {
        "info": {"description": f"hrnet synthetic person keypoints ({split}, seed {seed})", "version": "1.0"},
        "licenses": [],
        "images": images, "annotations": annotations, "categories": categories,
    }
    path = ann_dir / f"person_keypoints_{split}.json"
    path.write_text(json.dumps(data, separators=(",", ":")))
    return path


def preview_grid(root: str | Path, split: str, out_png: str | Path, n: int = 16, *, cell: int = 256,
                 start: int = 0) -> Path:
    """Draw the ground truth (boxes, skeletons; filled dot v=2, ring v=1) of ``n`` images into a PNG grid.

    Left joints/limbs are orange, right ones blue, the rest green; crowd boxes are red.
    """
    root = Path(root)
    data = json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())
    cat = data["categories"][0]
    names = cat["keypoints"]
    skeleton = [(a - 1, b - 1) for a, b in cat["skeleton"]]
    side = [(255, 140, 0) if nm.startswith("left") else (40, 120, 255) if nm.startswith("right") else (0, 200, 0)
            for nm in names]
    by_img = defaultdict(list)
    for a in data["annotations"]:
        by_img[a["image_id"]].append(a)
    imgs = sorted(data["images"], key=lambda im: im["id"])[start:start + n]
    cols = max(1, math.ceil(math.sqrt(len(imgs))))
    rows = max(1, math.ceil(len(imgs) / cols))
    canvas = np.full((rows * cell, cols * cell, 3), 40, np.uint8)
    for idx, im in enumerate(imgs):
        bgr = cv2.imread(str(root / split / im["file_name"]))
        s = cell / max(im["width"], im["height"])
        tile = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (round(im["width"] * s), round(im["height"] * s)),
                          interpolation=cv2.INTER_LINEAR)
        for a in by_img[im["id"]]:
            x, y, bw, bh = (v * s for v in a["bbox"])
            colour = (255, 40, 40) if a["iscrowd"] else (255, 255, 255) if a["num_keypoints"] else (150, 150, 150)
            cv2.rectangle(tile, (round(x), round(y)), (round(x + bw), round(y + bh)), colour, 1)
            kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
            for p, q in skeleton:
                if kp[p, 2] > 0 and kp[q, 2] > 0:
                    c = side[p] if side[p] == side[q] else (0, 200, 0)
                    cv2.line(tile, (round(kp[p, 0] * s), round(kp[p, 1] * s)),
                             (round(kp[q, 0] * s), round(kp[q, 1] * s)), c, 1, cv2.LINE_AA)
            for k, (kx, ky, v) in enumerate(kp):
                if v > 0:
                    c = (round(kx * s), round(ky * s))
                    cv2.circle(tile, c, 3, side[k], -1 if v == 2 else 1, cv2.LINE_AA)
        r, c = divmod(idx, cols)
        canvas[r * cell:r * cell + tile.shape[0], c * cell:c * cell + tile.shape[1]] = tile
        cv2.putText(canvas, str(im["id"]), (c * cell + 3, r * cell + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 0), 1, cv2.LINE_AA)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return out_png
