"""MPII Human Pose in the official HRNet annotation JSON (``annot/{train,valid,test}.json``), top-down.

Each entry is ``{"image": "xxx.jpg", "center": [x, y], "scale": s, "joints": [[x, y]] * 16,
"joints_vis": [0/1] * 16}`` with MATLAB 1-based pixel coordinates and ``s`` = person height / 200.
As the official loader: ``center.y += 15 * s`` and ``scale *= 1.25`` (to keep limbs inside), then
center and joints are shifted to 0-based (``- 1``). ``joints`` / ``joints_vis`` may be absent (test split).
The output samples are the same dicts as ``CocoKeypoints`` (see ``TopDownDataset``). :func:`pckh` is the
official MPII evaluation (``MPIIDataset.evaluate``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...files import is_number_list, read_json
from ...keypoints.geometry import TopDownAugment
from ...keypoints.sets import MPII_KEYPOINTS, KeypointSpec
from ...keypoints.topdown import PersonRecord, SampleTransform, TopDownDataset

__all__ = ["MpiiKeypoints", "headsize_from_boxes", "load_headboxes", "pckh"]


class MpiiKeypoints(TopDownDataset):
    """MPII top-down samples. Defaults follow the official MPII configs (``w32_256x256``): input 256x256,
    ``SCALE_FACTOR 0.25``, ``ROT_FACTOR 30``, flip, no half-body (``PROB_HALF_BODY -1``).

    The scale stays square (``[s, s] * 1.25``, not widened to the input aspect ratio), as official; the crop
    affine uses ``scale[0]`` for the width. ``image_id`` is the entry's index in the annotation list.
    ``headboxes`` (see :func:`load_headboxes`) gives the PCKh normaliser per person, in file order.
    """

    def __init__(
        self,
        *,
        ann_file: str | Path,
        img_dir: str | Path,
        train: bool,
        keypoints: KeypointSpec = MPII_KEYPOINTS,
        input_size: tuple[int, int] = (256, 256),
        scale_factor: float = 0.25,
        rotation_factor: float = 30.0,
        rotation_prob: float = 0.6,
        flip: bool = True,
        half_body_prob: float = 0.0,
        num_joints_half_body: int = 8,
        padding: float = 1.25,
        center_y_offset: float = 15.0,
        color_rgb: bool = True,
        seed: int | None = None,
        drop_out_of_crop: bool = False,
        sample_transform: SampleTransform | None = None,
        headboxes: str | Path | None = None,
    ) -> None:
        self.ann_file = str(ann_file)
        self.img_dir = str(img_dir)
        augment = TopDownAugment(
            scale_factor=scale_factor, rotation_factor=rotation_factor, rotation_prob=rotation_prob, flip=flip,
            half_body_prob=half_body_prob, num_joints_half_body=num_joints_half_body,
        )
        records = self._records(read_json(self.ann_file, "ann_file"), keypoints, padding, center_y_offset)
        super().__init__(
            records, keypoints=keypoints, input_size=input_size, train=train, augment=augment,
            color_rgb=color_rgb, seed=seed, drop_out_of_crop=drop_out_of_crop, sample_transform=sample_transform,
        )
        self.headboxes = None if headboxes is None else load_headboxes(headboxes)
        if self.headboxes is not None and len(self.headboxes) != len(self.records):
            raise ValueError(f"headboxes {headboxes}: {len(self.headboxes)} boxes for {len(self.records)} "
                             f"people in ann_file {self.ann_file}")

    def _records(self, data: object, spec: KeypointSpec, padding: float, y_offset: float) -> list[PersonRecord]:
        where = f"ann_file {self.ann_file}"
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a JSON list of {{image, center, scale, joints, joints_vis}}, "
                             f"got {type(data).__name__}")
        k = spec.num_joints
        records = []
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or any(key not in entry for key in ("image", "center", "scale")):
                raise ValueError(f"{where}: entry {i} needs 'image', 'center' and 'scale'")
            if not is_number_list(entry["center"], 2) or not isinstance(entry["scale"], (int, float)):
                raise ValueError(f"{where}: entry {i} has center {entry['center']!r} / scale {entry['scale']!r}; "
                                 "expected [x, y] and a number")
            s = float(entry["scale"])
            center = np.asarray(entry["center"], dtype=np.float64)
            scale = np.array([s, s], dtype=np.float64)
            if center[0] != -1:  # official: -1 marks "no center"
                center[1] += y_offset * scale[1]
                scale *= padding
            center -= 1.0  # MATLAB 1-based -> 0-based
            joints = np.zeros((k, 2), np.float64)
            vis = np.zeros(k, np.float32)
            if "joints" in entry:
                raw = entry["joints"]
                raw_vis = entry.get("joints_vis")
                if not isinstance(raw, list) or len(raw) != k or not all(is_number_list(j, 2) for j in raw):
                    n = len(raw) if isinstance(raw, list) else "?"
                    raise ValueError(f"{where}: entry {i} ({entry['image']}) has {n} joints, expected K={k} "
                                     f"[x, y] pairs for KeypointSpec {spec.name!r}")
                if not is_number_list(raw_vis, k):
                    raise ValueError(f"{where}: entry {i} ({entry['image']}) joints_vis must be {k} numbers")
                vis = (np.asarray(raw_vis, dtype=np.float32) > 0).astype(np.float32)
                joints = (np.asarray(raw, dtype=np.float64) - 1.0) * vis[:, None]
            records.append(PersonRecord(
                image_file=os.path.join(self.img_dir, entry["image"]), image_id=i,
                center=center.astype(np.float32), scale=scale.astype(np.float32),
                joints=joints.astype(np.float32), joints_vis=vis,
            ))
        return records


def load_headboxes(path: str | Path) -> np.ndarray:
    """MPII head boxes ``(N, 2, 2)`` [[x1, y1], [x2, y2]] in annotation order, for PCKh.

    Reads the official ``gt_valid.mat`` (``headboxes_src``, needs scipy), or ``.npy`` / ``.json``
    arrays of shape (N, 2, 2) or (N, 4).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"headboxes file {path} not found")
    if path.suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError as err:
            raise ImportError(f"reading {path} needs scipy (pip install scipy), or pass an .npy/.json array") from err
        mat = loadmat(str(path))
        if "headboxes_src" not in mat:
            raise ValueError(f"headboxes file {path}: no 'headboxes_src' array (expected the official gt_valid.mat)")
        boxes = np.transpose(mat["headboxes_src"], (2, 0, 1))
    elif path.suffix == ".npy":
        boxes = np.load(path)
    else:
        boxes = np.asarray(read_json(path, "headboxes file"), dtype=np.float64)
    if boxes.ndim not in (2, 3) or boxes.reshape(len(boxes), -1).shape[1] != 4:
        raise ValueError(f"headboxes file {path}: expected (N, 2, 2) or (N, 4) boxes, got shape {boxes.shape}")
    return boxes.reshape(-1, 2, 2).astype(np.float64)


# ------------------------------------------------------------------------------------------- MPII
def headsize_from_boxes(headboxes: Any, sc_bias: float = 0.6) -> np.ndarray:
    """MPII normaliser: ``sc_bias * ||br - tl||`` per person from head boxes ``(N, 2, 2)`` (tl, br)
    or ``(N, 4)`` (x1, y1, x2, y2), as the official ``SC_BIAS = 0.6`` over ``headboxes_src``."""
    b = np.asarray(headboxes, dtype=np.float64).reshape(-1, 2, 2)
    return sc_bias * np.linalg.norm(b[:, 1] - b[:, 0], axis=1)


_PCKH_TABLE = (
    ("Head", ("head_top",)),
    ("Shoulder", ("left_shoulder", "right_shoulder")),
    ("Elbow", ("left_elbow", "right_elbow")),
    ("Wrist", ("left_wrist", "right_wrist")),
    ("Hip", ("left_hip", "right_hip")),
    ("Knee", ("left_knee", "right_knee")),
    ("Ankle", ("left_ankle", "right_ankle")),
)


def pckh(pred: Any, gt: Any, visible: Any, headsize: Any, threshold: float = 0.5,
         joint_names: Sequence[str] = MPII_KEYPOINTS.joint_names,
         exclude_from_mean: Sequence[str] = ("pelvis", "thorax"),
         low_threshold: float = 0.1) -> dict[str, float]:
    """MPII PCKh in percent, as the official ``MPIIDataset.evaluate``.

    A visible joint is correct when ``||pred - gt|| / headsize <= threshold``. ``headsize`` (N,) is the
    *already scaled* normaliser: official = ``0.6 * head box diagonal`` from the GT ``.mat``
    (:func:`headsize_from_boxes`); pred and gt must share one pixel convention (the official compares
    1-based predictions with the 1-based ``.mat``).

    Returns an ordered dict: the official table ``Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle``
    (left/right averaged; rows whose joints are not in ``joint_names`` are left out), ``Mean`` (over all
    joints but ``exclude_from_mean``, weighted by visible count = total hits / total count),
    ``Mean@<low_threshold>``, then per-joint PCKh keyed by joint name (NaN for a joint never visible).
    Note: the official "Mean@0.1" column reads ``pckAll[11]`` of ``arange(0, 0.51, 0.01)``, i.e. a 0.11
    threshold; pass ``low_threshold=0.11`` to reproduce it.
    """
    p = np.asarray(pred, dtype=np.float64)[..., :2]
    g = np.asarray(gt, dtype=np.float64)[..., :2]
    vis = np.asarray(visible).astype(bool)
    hs = np.asarray(headsize, dtype=np.float64).reshape(-1)
    n, k = vis.shape
    if p.shape != (n, k, 2) or g.shape != (n, k, 2) or hs.shape != (n,) or len(joint_names) != k:
        raise ValueError(f"pckh: shapes pred {p.shape}, gt {g.shape}, visible {vis.shape}, "
                         f"headsize {hs.shape}, {len(joint_names)} joint names do not agree")
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.linalg.norm(p - g, axis=-1) / hs[:, None]
    count = vis.sum(axis=0)
    names = list(joint_names)
    in_mean = np.array([name not in set(exclude_from_mean) for name in names])

    def per_joint(thr: float) -> tuple[np.ndarray, float]:
        hits = ((err <= thr) & vis).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            pck = 100.0 * hits / count
        total = count[in_mean].sum()
        mean = 100.0 * hits[in_mean].sum() / total if total > 0 else float("nan")
        return pck, float(mean)

    pck, mean = per_joint(threshold)
    _, mean_low = per_joint(low_threshold)
    out: OrderedDict[str, float] = OrderedDict()
    for row, members in _PCKH_TABLE:
        if all(m in names for m in members):
            out[row] = float(np.mean([pck[names.index(m)] for m in members]))
    out["Mean"] = mean
    out[f"Mean@{low_threshold:g}"] = mean_low
    for j, name in enumerate(names):
        out[name] = float(pck[j])
    return out
