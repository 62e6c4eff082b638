"""Face landmark annotations in the official formats, read into top-down :class:`FaceRecord` s.

* WFLW, 300W, AFLW: the official CSV lists of HRNet-Facial-Landmark-Detection (``data/<set>/*.csv``, one face a
  row after a header row; read by ``lib/datasets/{wflw,face300w,aflw}.py``):
  ``face_landmarks_wflw_{train,test,test_blur,test_expression,test_illumination,test_largepose,test_makeup,
  test_occlusion}.csv``, ``face_landmarks_300w_{train,valid,valid_challenge,valid_common,test}.csv``,
  ``face_landmarks_aflw_{train,test,test_frontal}.csv`` (:data:`OFFICIAL_LISTS` maps split names to them).
* COFW: ``COFW_{train,test}_color.mat`` (MATLAB v7.3, read by ``lib/datasets/cofw.py``).
* mmpose's COCO-style face JSON (``tools/dataset_converters/wflw2coco.py``, ``parse_cofw_dataset.py``, ...).

Every record's ``scale`` is the official one already padded (``scale *= 1.25`` in each official loader), as
``(s, s)``: the crop side is ``200 * s`` pixels. Landmarks are kept in the file's pixel frame, as the official
loaders keep them; CSV and COFW landmarks are all visible (``joints_vis`` 1: the official loaders train on every
landmark), the JSON's keep its visibility flags.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...files import is_number_list, read_image, read_json
from ...keypoints.geometry import box_to_center_scale
from ...keypoints.sets import COFW_KEYPOINTS, KeypointSpec, resolve_keypoints
from ...keypoints.topdown import PersonRecord
from ..base import check_coco_images
from .official import cofw_center_scale

__all__ = [
    "OFFICIAL_LISTS",
    "FaceRecord",
    "is_matlab_image",
    "read_coco_faces",
    "read_cofw_mat",
    "read_face_image",
    "read_landmark_csv",
]

PADDING = 1.25  # the official loaders' ``scale *= 1.25``

_WFLW_TESTS = ("blur", "expression", "illumination", "largepose", "makeup", "occlusion")
OFFICIAL_LISTS: dict[str, dict[str, str]] = {
    "wflw": {"train": "face_landmarks_wflw_train.csv", "test": "face_landmarks_wflw_test.csv",
             **{f"test_{s}": f"face_landmarks_wflw_test_{s}.csv" for s in _WFLW_TESTS}},
    "300w": {s: f"face_landmarks_300w_{s}.csv" for s in ("train", "valid", "valid_challenge", "valid_common", "test")},
    "aflw": {s: f"face_landmarks_aflw_{s}.csv" for s in ("train", "test", "test_frontal")},
    "cofw": {"train": "COFW_train_color.mat", "test": "COFW_test_color.mat"},
}
"""Official split name -> file name per dataset (the official README's ``data/`` folder)."""

COFW_KEYS = {"train": ("IsTr", "phisTr"), "test": ("IsT", "phisT")}  # (images, landmarks) per split


@dataclass(frozen=True)
class FaceRecord(PersonRecord):
    """One face: :class:`PersonRecord` (``scale`` (2,) padded by 1.25) plus ``box_size``, AFLW's NME normaliser
    (the annotation's face box size in pixels; 0 for the other sets)."""

    box_size: float = 0.0


def _record(image_file: str, image_id: int, center: Sequence[float], scale: float, points: np.ndarray,
            visible: np.ndarray | None = None, box_size: float = 0.0, ann_id: int = -1) -> FaceRecord:
    joints = np.asarray(points, np.float32).reshape(-1, 2)
    return FaceRecord(
        image_file=image_file, image_id=image_id, center=np.asarray(center, np.float32),
        scale=np.array([scale, scale], np.float32), joints=joints,
        joints_vis=np.ones(len(joints), np.float32) if visible is None else visible.astype(np.float32),
        ann_id=ann_id, box_size=float(box_size),
    )


def _check_images(records: Sequence[FaceRecord], labels: Sequence[str], where: str) -> None:
    """Raise naming the first record (by its label, e.g. ``line 7``) whose image file is missing."""
    missing = [(label, r.image_file) for label, r in zip(labels, records) if not os.path.isfile(r.image_file)]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{where}, {missing[0][0]}: image file {missing[0][1]} not found{more}")


# ------------------------------------------------------------------------------------------------ CSV lists
def _csv_columns(spec: KeypointSpec) -> tuple[str, ...]:
    """The official column names: AFLW (``extra normalizer: box_size``) has ``box_size`` after ``scale``."""
    box = spec.extra.get("normalizer") == "box_size"
    lead = ("image_name", "scale", "box_size") if box else ("image_name", "scale")
    points = tuple(f"{axis}{j}" for j in range(spec.num_joints) for axis in "xy")
    return (*lead, "center_w", "center_h", *points)


def _numbers(row: list[str], columns: Sequence[str], where: str) -> np.ndarray:
    """The numeric cells ``row[1:]`` as float64; a bad cell is an error naming its column."""
    values = []
    for j, cell in enumerate(row[1:], start=1):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{where}, column {j + 1} ({columns[j]}): {cell!r} is not a finite number")
        values.append(value)
    return np.asarray(values, np.float64)


def _is_number(cell: str) -> bool:
    """``cell`` parses as a float (a header cell does not)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_landmark_csv(csv_file: str | Path, image_root: str | Path,
                      keypoints: KeypointSpec | str) -> list[FaceRecord]:
    """The official CSV list ``csv_file`` (header row, then one face a row) as records, images under
    ``image_root``.

    Columns as the official loaders index them: WFLW / 300W ``image_name, scale, center_w, center_h, x0, y0,
    x1, y1, ...``; AFLW (``lib/datasets/aflw.py``) ``image_name, scale, box_size, center_w, center_h, x0, ...``.
    The layout follows ``keypoints`` (a ``box_size`` normaliser means AFLW's). ``image_id`` is the row index.
    """
    spec = resolve_keypoints(keypoints)
    columns = _csv_columns(spec)
    where = f"landmark list {csv_file}"
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(f"{where}: file not found")
    with open(csv_file, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    lead = len(columns) - 2 * spec.num_joints
    if not rows or len(rows[0]) < 2 or _is_number(rows[0][1]):
        raise ValueError(f"{where}: line 1 is not a header row (expected {', '.join(columns[:lead])}, then the "
                         "landmark columns)")
    records, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(columns):
            raise ValueError(f"{where}, line {line}: {len(row)} columns, expected {len(columns)} = {lead} "
                             f"({', '.join(columns[:lead])}) + 2 x {spec.num_joints} landmarks of KeypointSpec "
                             f"{spec.name!r}")
        values = _numbers(row, columns, f"{where}, line {line}")
        records.append(_record(
            os.path.join(str(image_root), row[0]), len(records), values[lead - 3:lead - 1], values[0] * PADDING,
            values[lead - 1:], box_size=values[1] if lead == 5 else 0.0,
        ))
        labels.append(f"line {line}")
    _check_images(records, labels, where)
    return records


# ------------------------------------------------------------------------------------------------ COFW .mat
def _open_mat(mat_file: str) -> Any:
    """``mat_file`` as an open read-only ``h5py.File``; not a v7.3 (HDF5) file is a one-line error."""
    import h5py

    if not os.path.isfile(mat_file):
        raise FileNotFoundError(f"COFW file {mat_file} not found")
    try:
        return h5py.File(mat_file, "r")
    except OSError as err:
        raise ValueError(f"COFW file {mat_file}: not a MATLAB v7.3 (HDF5) file ({err})") from err


def read_cofw_mat(mat_file: str | Path, split: str) -> list[FaceRecord]:
    """COFW's ``COFW_train_color.mat`` (``split="train"``: ``IsTr``, ``phisTr``) or ``COFW_test_color.mat``
    (``"test"``: ``IsT``, ``phisT``) as 29-landmark records, as the official ``lib/datasets/cofw.py``.

    ``phis`` is MATLAB (N, 87): 29 x's, then 29 y's, then 29 occlusion flags (1 = occluded; unused, as
    official). The crop comes from the landmarks' box: ``center = ((floor(x_min) + ceil(x_max)) / 2, (floor(y_min)
    + ceil(y_max)) / 2)``, ``scale = max(ceil(x_max) - floor(x_min), ceil(y_max) - floor(y_min)) / 200 * 1.25``.
    Landmarks stay as stored (MATLAB's 1-based pixels), as official (mmpose's converter subtracts 1).
    ``image_file`` is ``f"{mat_file}#{index}"``, read by :func:`read_face_image`.
    """
    if split not in COFW_KEYS:
        raise ValueError(f"COFW split must be one of {sorted(COFW_KEYS)}, got {split!r}")
    mat_file = str(mat_file)
    image_key, phis_key = COFW_KEYS[split]
    k = COFW_KEYPOINTS.num_joints
    with _open_mat(mat_file) as f:
        if image_key not in f or phis_key not in f:
            raise ValueError(f"COFW file {mat_file}: no {image_key!r} / {phis_key!r} for split {split!r} "
                             f"(it holds {sorted(f.keys())})")
        phis = np.asarray(f[phis_key], np.float64).T  # HDF5 keeps MATLAB's column-major (87, N)
        n_images = f[image_key].size
    if phis.ndim != 2 or phis.shape[1] not in (2 * k, 3 * k) or len(phis) != n_images:
        raise ValueError(f"COFW file {mat_file}: {phis_key} has MATLAB shape {phis.shape} for {n_images} images; "
                         f"expected (N, {3 * k}): {k} x's, {k} y's, {k} occlusion flags per face")
    records = []
    for i, row in enumerate(phis):
        points = row[:2 * k].reshape(2, k).T
        records.append(_record(f"{mat_file}#{i}", i, *cofw_center_scale(points), points))
    return records


_MAT_IMAGES: dict[tuple[int, str], tuple[Any, np.ndarray]] = {}


def _mat_images(mat_file: str) -> tuple[Any, np.ndarray]:
    """This process's open handle on ``mat_file`` and its image references, opened on first use (a DataLoader
    worker opens its own: HDF5 handles do not survive a fork)."""
    key = (os.getpid(), mat_file)
    if key not in _MAT_IMAGES:
        f = _open_mat(mat_file)
        names = [name for name, _ in COFW_KEYS.values() if name in f]
        if len(names) != 1:
            f.close()
            raise ValueError(f"COFW file {mat_file}: expected one image cell array, IsTr or IsT; found {names}")
        _MAT_IMAGES[key] = (f, np.asarray(f[names[0]]).reshape(-1))
    return _MAT_IMAGES[key]


def is_matlab_image(image_file: str) -> bool:
    """Whether ``image_file`` names an image inside a COFW ``.mat`` file (``"<mat_file>#<index>"``)."""
    mat_file, sep, index = image_file.rpartition("#")
    return bool(sep and index.isdigit() and mat_file.lower().endswith(".mat"))


def read_face_image(image_file: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB: an image file (:func:`hrnet.files.read_image`) or a COFW ``"<mat_file>#<index>"``.

    COFW images are HDF5 object references, each array transposed as MATLAB stores it ((3, W, H) or (W, H));
    grey images are repeated to three channels, as the official ``cofw.py``.
    """
    if not is_matlab_image(image_file):
        return read_image(image_file)
    mat_file, _, index = image_file.rpartition("#")
    f, refs = _mat_images(mat_file)
    i = int(index)
    if i >= len(refs):
        raise ValueError(f"{image_file}: index out of range, COFW file {mat_file} holds {len(refs)} images")
    image = np.asarray(f[refs[i]]).T
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"{image_file}: image is {image.dtype} {image.shape}, expected uint8 (H, W) or (H, W, 3)")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


# ------------------------------------------------------------------------------------------------ mmpose JSON
def _center_scale(ann: dict[str, Any], image: dict[str, Any], where: str) -> tuple[np.ndarray, float]:
    """mmpose's crop: the annotation's ``center`` and ``scale`` (x 200 px), else its ``bbox`` clipped to the
    image; then padded by 1.25 (``GetBBoxCenterScale``) and made square (``TopdownAffine`` at 256 x 256)."""
    if "center" in ann and "scale" in ann:
        if not is_number_list(ann["center"], 2) or not is_number_list([ann["scale"]], 1):
            raise ValueError(f"{where}: center {ann['center']!r} / scale {ann['scale']!r} are not [x, y], a number")
        return np.asarray(ann["center"], np.float64), float(ann["scale"]) * PADDING
    if not is_number_list(ann.get("bbox"), 4):
        raise ValueError(f"{where}: needs 'center' and 'scale' or a 'bbox' [x, y, w, h], got {ann.get('bbox')!r}")
    x, y, w, h = ann["bbox"]
    x0, y0 = np.clip([x, y], 0, [image["width"] - 1, image["height"] - 1])
    x1, y1 = np.clip([x + w, y + h], 0, [image["width"] - 1, image["height"] - 1])
    center, scale = box_to_center_scale([x0, y0, x1 - x0, y1 - y0], 1.0, PADDING)
    return center.astype(np.float64), float(scale[0])


def read_coco_faces(ann_file: str | Path, image_root: str | Path,
                    keypoints: KeypointSpec | str) -> list[FaceRecord]:
    """mmpose's COCO-style face JSON as records, images under ``image_root``.

    Each annotation has ``keypoints`` ``[x, y, v] * K`` (visible when ``v > 0``, mmpose's ``min(1, v)``; COFW's
    converter writes 1 for occluded, 2 for visible), and either ``center`` + ``scale`` (box / 200: WFLW, 300W,
    AFLW) or only ``bbox`` (COFW); AFLW's also carry ``box_size``. ``image_id`` / ``ann_id`` are the JSON's.
    """
    spec = resolve_keypoints(keypoints)
    where = f"ann_file {ann_file}"
    data = read_json(ann_file, "ann_file")
    check_coco_images(data, where)
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{where}: missing 'annotations' list")
    images = {img["id"]: img for img in data["images"]}
    k = spec.num_joints
    records, labels = [], []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
            raise ValueError(f"{where}: annotations[{i}] is not an object with an integer 'id'")
        about = f"{where}: annotation id {ann['id']}"
        if ann.get("image_id") not in images:
            raise ValueError(f"{about} refers to unknown image_id {ann.get('image_id')!r}")
        if not is_number_list(ann.get("keypoints"), 3 * k):
            got = len(ann["keypoints"]) if isinstance(ann.get("keypoints"), list) else "no"
            raise ValueError(f"{about} has {got} keypoint values, expected 3*K={3 * k} numbers for KeypointSpec "
                             f"{spec.name!r} (K={k})")
        if not is_number_list([ann.get("box_size", 0.0)], 1):
            raise ValueError(f"{about}: box_size {ann['box_size']!r} is not a number")
        image = images[ann["image_id"]]
        center, scale = _center_scale(ann, image, about)
        kps = np.asarray(ann["keypoints"], np.float64).reshape(k, 3)
        records.append(_record(os.path.join(str(image_root), image["file_name"]), ann["image_id"], center, scale,
                               kps[:, :2], visible=kps[:, 2] > 0, box_size=ann.get("box_size", 0.0),
                               ann_id=ann["id"]))
        labels.append(f"annotation id {ann['id']}")
    _check_images(records, labels, where)
    return records
