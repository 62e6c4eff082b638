"""Top-down pose geometry: person box -> (center, scale), the crop affine, augmentation, back-projection.

Conventions (the same as the official HRNet pose code, so its configs and detection files transfer):

* ``center`` is ``(x, y)`` in image pixels; ``scale`` is ``(w, h) / pixel_std`` with ``pixel_std = 200``.
  A crop of ``scale`` covers ``scale * 200`` image pixels.
* Sizes are spelled out: ``input_size_hw = (H, W)`` (dataset arguments, e.g. ``(256, 192)``) versus
  ``output_size_wh = (W, H)`` (the affine helpers, which follow cv2's ``dsize`` order).
* The crop affine uses only ``scale[0]`` (the box width); the crop height follows from the output aspect
  ratio. ``box_to_center_scale`` already widens the box to that aspect ratio, so ``scale[1]`` agrees.
* Joints are ``(K, 2)`` float arrays in pixel coordinates, ``joints_vis`` is ``(K,)`` of 0/1.

Everything here is numpy + cv2; every random draw comes from a caller-supplied ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .sets import KeypointSpec

PIXEL_STD = 200.0

__all__ = [
    "PIXEL_STD", "AugmentParams", "TopDownAugment", "affine_points",
    "box_to_center_scale", "crop_image", "flip_joints", "get_affine_transform", "half_body_center_scale",
    "sanitize_box", "top_down_transform", "transform_preds",
]


# ----------------------------------------------------------------------------------------------- boxes
def sanitize_box(box_xywh: Sequence[float], image_width: int, image_height: int) -> list[float] | None:
    """Clip a COCO ``[x, y, w, h]`` box to the image; ``None`` when nothing is left.

    The official rule: ``x1, y1`` clipped at 0, ``x2 = min(W - 1, x1 + max(0, w - 1))`` (same for y), the box
    is kept when ``x2 >= x1 and y2 >= y1`` and returned as ``[x1, y1, x2 - x1, y2 - y1]`` (note the
    inclusive-pixel ``w - 1``). The caller checks the annotation's ``area > 0``.
    """
    x, y, w, h = (float(v) for v in box_xywh[:4])
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


def box_to_center_scale(
    box_xywh: Sequence[float], aspect_ratio: float, padding: float = 1.25, pixel_std: float = PIXEL_STD
) -> tuple[np.ndarray, np.ndarray]:
    """Person box ``[x, y, w, h]`` -> ``(center (2,), scale (2,))``, both float32.

    ``aspect_ratio`` is the model input's ``W / H`` (0.75 for 256x192). The box is widened (never shrunk)
    in w or h to that ratio around its center, then ``scale = (w, h) / pixel_std * padding``.
    """
    x, y, w, h = (float(v) for v in box_xywh[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / pixel_std, h / pixel_std], dtype=np.float32) * np.float32(padding)
    return center, scale.astype(np.float32)


# ---------------------------------------------------------------------------------------------- affine
def _right_angle_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b + rot90(a - b)`` in float32: completes a right angle at ``b`` for the three-point affine."""
    d = a - b
    return (b + np.array([-d[1], d[0]], dtype=np.float32)).astype(np.float32)


def get_affine_transform(
    center: Sequence[float],
    scale: Sequence[float] | float,
    rot_deg: float,
    output_size_wh: Sequence[int],
    shift: Sequence[float] = (0.0, 0.0),
    inv: bool = False,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """The 2x3 crop matrix image -> output (``inv=True``: output -> image), official three-point recipe.

    Three source points (the center, a point ``scale[0] * pixel_std / 2`` above it rotated by ``rot_deg``,
    and the point completing a right angle) are mapped to the output center, a point ``W / 2`` above it
    and its right-angle partner; the matrix comes from ``cv2.getAffineTransform`` on float32 points. The
    points are rounded to float32 at the same steps as in the official code, so warped crops match it
    pixel for pixel. The result is a similarity: uniform zoom ``W / (scale[0] * pixel_std)``, a rotation
    by ``rot_deg`` and ``center -> (W / 2, H / 2)``. ``shift`` moves the source center by
    ``shift * scale * pixel_std``.
    """
    scale_arr = np.asarray(scale)
    if not np.issubdtype(scale_arr.dtype, np.floating):
        scale_arr = scale_arr.astype(np.float64)
    scale_arr = np.broadcast_to(scale_arr.reshape(-1), (2,))
    box = scale_arr * pixel_std  # keeps float32 when scale is float32 (as the official arithmetic)
    offset = box * np.asarray(shift, dtype=np.float32)
    center_arr = np.asarray(center)[:2]
    out_w, out_h = output_size_wh[0], output_size_wh[1]

    rad = np.pi * float(rot_deg) / 180
    sn, cs = np.sin(rad), np.cos(rad)
    up = box[0] * -0.5  # the vector (0, up) rotated by rot_deg
    src_dir = np.array([-(up * sn), up * cs], dtype=np.float64)

    src = np.empty((3, 2), np.float32)
    dst = np.empty((3, 2), np.float32)
    src[0] = center_arr + offset
    src[1] = center_arr.astype(np.float64) + src_dir + offset
    dst[0] = (out_w * 0.5, out_h * 0.5)
    dst[1] = (out_w * 0.5, out_h * 0.5 - out_w * 0.5)
    src[2] = _right_angle_point(src[0], src[1])
    dst[2] = _right_angle_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to ``(N, 2)`` points (float64 result)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def transform_preds(
    coords: np.ndarray, center: Sequence[float], scale: Sequence[float], output_size_wh: Sequence[int]
) -> np.ndarray:
    """Back-project ``(K, 2)`` coordinates of an unrotated ``output_size_wh`` map (heatmap or input crop)
    to image pixels, for a crop defined by ``center`` / ``scale``. Extra columns (e.g. scores) pass through.
    """
    coords = np.asarray(coords, dtype=np.float64)
    out = coords.copy()
    inv = get_affine_transform(center, scale, 0.0, output_size_wh, inv=True)
    out[..., :2] = affine_points(coords[..., :2], inv).reshape(coords[..., :2].shape)
    return out


def crop_image(
    image: np.ndarray, center: Sequence[float], scale: Sequence[float], rot_deg: float,
    output_size_wh: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` (H, W[, C]) to the ``output_size_wh`` crop; returns ``(crop, matrix)``.

    ``cv2.warpAffine`` with ``INTER_LINEAR`` and a constant-0 border, as the official pipeline.
    """
    matrix = get_affine_transform(center, scale, rot_deg, output_size_wh)
    crop = cv2.warpAffine(
        np.ascontiguousarray(image), matrix, (int(output_size_wh[0]), int(output_size_wh[1])),
        flags=cv2.INTER_LINEAR,
    )
    return crop, matrix


# ------------------------------------------------------------------------------------------ augmentation
def flip_joints(
    joints: np.ndarray, joints_vis: np.ndarray, image_width: int, flip_index: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror joints for a horizontally flipped image of width ``image_width``.

    ``x -> image_width - 1 - x``, then joint ``j`` takes the place of ``flip_index[j]`` (left <-> right,
    see ``KeypointSpec.flip_index``). Invisible joints come back as ``(0, 0)``, as in the official code.
    """
    idx = np.asarray(flip_index, dtype=np.int64)
    joints = np.asarray(joints, dtype=np.float64).copy()
    joints[:, 0] = image_width - 1 - joints[:, 0]
    joints, vis = joints[idx], np.asarray(joints_vis, dtype=np.float32)[idx]
    return joints * (vis[:, None] > 0), vis


def half_body_center_scale(
    joints: np.ndarray,
    joints_vis: np.ndarray,
    upper_body_ids: Sequence[int],
    aspect_ratio: float,
    rng: np.random.Generator,
    scale_mult: float = 1.5,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Half-body crop: a box around the visible upper-body or lower-body joints, or ``None``.

    The official rule: upper body is picked when ``randn < 0.5`` (about 69 %) and it has more than 2 visible
    joints, else the lower body if it has more than 2, else the upper body; fewer than 2 joints -> ``None``.
    The center is the joints' mean, the joints' bounding box is widened to ``aspect_ratio`` and the
    scale is ``(w, h) / pixel_std * scale_mult``.
    """
    upper_set = set(int(j) for j in upper_body_ids)
    visible = np.flatnonzero(np.asarray(joints_vis) > 0)
    upper = [j for j in visible if j in upper_set]
    lower = [j for j in visible if j not in upper_set]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    pts = np.asarray(joints, dtype=np.float32)[chosen, :2]
    center = pts.mean(axis=0)
    w, h = (pts.max(axis=0) - pts.min(axis=0)).astype(np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / pixel_std, h / pixel_std], dtype=np.float32) * np.float32(scale_mult)
    return center.astype(np.float32), scale.astype(np.float32)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the top-down augmentation (``center`` / ``scale`` already include half-body + zoom;
    ``center`` is still in unflipped image coordinates)."""

    center: np.ndarray
    scale: np.ndarray
    rotation: float
    flip: bool
    half_body: bool


@dataclass(frozen=True)
class TopDownAugment:
    """Random half-body, zoom, rotation and horizontal flip of a top-down crop (official recipe).

    Defaults are the official COCO HRNet configs (``w32_256x192``): ``SCALE_FACTOR 0.35``,
    ``ROT_FACTOR 45``, rotation applied with probability 0.6, flip 0.5, ``PROB_HALF_BODY 0.3`` with
    ``NUM_JOINTS_HALF_BODY 8``. The MPII configs use ``0.25`` / ``30`` and no half-body.

    Draw order (one generator): half-body gate ``rand`` (only when more than ``num_joints_half_body`` joints
    are visible), half-body choice ``randn``, zoom ``randn``, rotation gate ``rand`` (+ ``randn`` when taken),
    flip ``rand``.
    """

    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    flip: bool = True
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    num_joints_half_body: int = 8
    half_body_scale: float = 1.5

    def sample(
        self,
        joints: np.ndarray,
        joints_vis: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
        spec: KeypointSpec,
        aspect_ratio: float,
        rng: np.random.Generator,
    ) -> AugmentParams:
        center = np.asarray(center, dtype=np.float32).copy()
        scale = np.asarray(scale, dtype=np.float32).copy()
        half = False
        if (
            spec.upper_body_ids
            and float(np.sum(np.asarray(joints_vis) > 0)) > self.num_joints_half_body
            and rng.random() < self.half_body_prob
        ):
            hb = half_body_center_scale(joints, joints_vis, spec.upper_body_ids, aspect_ratio, rng,
                                        scale_mult=self.half_body_scale)
            if hb is not None:
                center, scale, half = hb[0], hb[1], True
        sf, rf = self.scale_factor, self.rotation_factor
        scale = scale * np.float32(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
        rotation = 0.0
        if rng.random() <= self.rotation_prob:
            rotation = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
        flip = bool(self.flip and rng.random() <= self.flip_prob)
        return AugmentParams(center=center, scale=scale.astype(np.float32), rotation=rotation, flip=flip,
                             half_body=half)


def top_down_transform(
    image: np.ndarray,
    joints: np.ndarray,
    joints_vis: np.ndarray,
    center: Sequence[float],
    scale: Sequence[float],
    input_size_hw: Sequence[int],
    spec: KeypointSpec,
    augment: TopDownAugment | None = None,
    rng: np.random.Generator | None = None,
    params: AugmentParams | None = None,
    drop_out_of_crop: bool = False,
) -> dict[str, np.ndarray | float | bool]:
    """Crop one person: optional augmentation, warp to ``input_size_hw = (H, W)``, move the joints.

    ``params`` forces one augmentation draw (tests, visualisation); otherwise ``augment`` + ``rng`` draw
    one, and with neither the crop is the plain validation crop. Returns ``image`` (H, W, C) uint8 crop,
    ``joints`` (K, 2) float32 in crop pixels (invisible joints at 0), ``joints_vis`` (K,) float32,
    ``center`` / ``scale`` (after augmentation, flipped center when flipped: the values whose affine made
    the crop), ``rotation``, ``flipped``, ``matrix`` (2x3 image -> crop of the possibly flipped image).

    Joints that land outside the crop keep ``joints_vis = 1`` by default, as in the official pipeline,
    where the heatmap encoder zeroes the weight of joints whose Gaussian misses the heatmap entirely;
    ``drop_out_of_crop=True`` zeroes them here instead (any joint outside ``[0, W) x [0, H)``).
    """
    in_h, in_w = int(input_size_hw[0]), int(input_size_hw[1])
    joints = np.asarray(joints, dtype=np.float64).reshape(-1, 2).copy()
    joints_vis = (np.asarray(joints_vis, dtype=np.float32).reshape(-1) > 0).astype(np.float32)
    if joints.shape[0] != spec.num_joints or joints_vis.shape[0] != spec.num_joints:
        raise ValueError(f"top_down_transform: got {joints.shape[0]} joints / {joints_vis.shape[0]} "
                         f"visibilities, KeypointSpec {spec.name!r} has {spec.num_joints}")
    if params is None and augment is not None:
        if rng is None:
            raise ValueError("top_down_transform: augment needs a numpy.random.Generator (rng)")
        params = augment.sample(joints, joints_vis, np.asarray(center), np.asarray(scale), spec, in_w / in_h, rng)
    if params is None:
        params = AugmentParams(np.asarray(center, np.float32).copy(), np.asarray(scale, np.float32).copy(),
                               0.0, False, False)

    c = np.asarray(params.center, dtype=np.float32).copy()
    if params.flip:
        width = image.shape[1]
        image = image[:, ::-1]
        joints, joints_vis = flip_joints(joints, joints_vis, width, spec.flip_index)
        c[0] = width - c[0] - 1
    crop, matrix = crop_image(image, c, params.scale, params.rotation, (in_w, in_h))

    vis = joints_vis > 0
    out = np.zeros_like(joints)
    out[vis] = affine_points(joints[vis], matrix)
    if drop_out_of_crop:
        inside = (out[:, 0] >= 0) & (out[:, 0] < in_w) & (out[:, 1] >= 0) & (out[:, 1] < in_h)
        joints_vis = joints_vis * inside.astype(np.float32)
        out[joints_vis <= 0] = 0.0
    return {
        "image": crop,
        "joints": out.astype(np.float32),
        "joints_vis": joints_vis.astype(np.float32),
        "center": c,
        "scale": np.asarray(params.scale, dtype=np.float32),
        "rotation": float(params.rotation),
        "flipped": bool(params.flip),
        "half_body": bool(params.half_body),
        "matrix": matrix,
    }
