"""Face landmark data: the official CSV lists, COFW's MATLAB v7.3 files and mmpose's face JSON, written here in
their layouts and read back; the four face keypoint sets' flip pairs against mirror-symmetric template faces."""

from __future__ import annotations

import csv
import json
import multiprocessing
from pathlib import Path

import h5py
import numpy as np
import pytest

from hrnet.files import write_image
from hrnet.keypoints.sets import KEYPOINT_SPECS, KeypointSpec
from hrnet.tasks.face.datasets import (
    OFFICIAL_LISTS,
    FaceRecord,
    read_coco_faces,
    read_cofw_mat,
    read_face_image,
    read_landmark_csv,
)

RNG = np.random.default_rng(0)


def landmarks(k: int) -> np.ndarray:
    """(K, 2) distinct landmark coordinates with fractional parts."""
    return np.round(RNG.uniform(10, 60, size=(k, 2)), 3)


def write_png(path: Path, h: int = 6, w: int = 5) -> np.ndarray:
    image = RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    write_image(path, image)
    return image


def write_list(path: Path, rows: list[list[object]], lead: tuple[str, ...], k: int) -> None:
    """An official-style CSV list: a header row, then one face a row."""
    header = [*lead, *(f"original_{j}_{axis}" for j in range(k) for axis in "xy")]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


# --------------------------------------------------------------------------------------------- CSV lists
@pytest.mark.parametrize("name", ["wflw", "300w"])
def test_csv_list_reads_exact_values(tmp_path: Path, name: str) -> None:
    spec = KEYPOINT_SPECS[name]
    k = spec.num_joints
    pts = [landmarks(k), landmarks(k)]
    write_png(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "b.png")
    rows = [["a.png", 0.4, 30.5, 20.25, *pts[0].ravel()], ["sub/b.png", 1.37, 100.0, 80.5, *pts[1].ravel()]]
    write_list(tmp_path / "list.csv", rows, ("image_name", "scale", "center_w", "center_h"), k)

    records = read_landmark_csv(tmp_path / "list.csv", tmp_path, spec)
    assert [type(r) for r in records] == [FaceRecord, FaceRecord]
    a, b = records
    assert a.image_file == str(tmp_path / "a.png") and b.image_file == str(tmp_path / "sub" / "b.png")
    assert (a.image_id, b.image_id) == (0, 1)
    np.testing.assert_array_equal(a.center, np.float32([30.5, 20.25]))
    np.testing.assert_array_equal(b.scale, np.float32([1.37 * 1.25] * 2))
    np.testing.assert_array_equal(a.joints, pts[0].astype(np.float32))  # x0, y0, x1, y1, ...
    assert a.joints.shape == (k, 2) and a.joints.dtype == np.float32 and a.scale.dtype == np.float32
    np.testing.assert_array_equal(a.joints_vis, np.ones(k, np.float32))
    assert a.box_size == 0.0


def test_aflw_list_has_box_size_before_center(tmp_path: Path) -> None:
    pts = landmarks(19)
    write_png(tmp_path / "f.jpg.png")
    rows = [["f.jpg.png", 1.81, 362.0, 449.0, 321.5, *pts.ravel()]]
    write_list(tmp_path / "aflw.csv", rows, ("image_name", "scale", "box_size", "center_w", "center_h"), 19)
    (rec,) = read_landmark_csv(tmp_path / "aflw.csv", tmp_path, "aflw")
    assert rec.box_size == 362.0
    np.testing.assert_array_equal(rec.center, np.float32([449.0, 321.5]))
    np.testing.assert_array_equal(rec.scale, np.float32([1.81 * 1.25] * 2))
    np.testing.assert_array_equal(rec.joints, pts.astype(np.float32))


def test_csv_list_errors_name_file_line_and_expectation(tmp_path: Path) -> None:
    lead = ("image_name", "scale", "center_w", "center_h")
    write_png(tmp_path / "a.png")
    good = ["a.png", 0.4, 30.5, 20.5, *landmarks(68).ravel()]
    path = tmp_path / "list.csv"

    write_list(path, [good, good[:-1]], lead, 68)
    with pytest.raises(ValueError, match=rf"{path}, line 3: 139 columns, expected 140 = 4 .* '300w'"):
        read_landmark_csv(path, tmp_path, "300w")
    with pytest.raises(ValueError, match=r"line 2: 140 columns, expected 43 = 5 \(image_name, scale, box_size, "
                                         r"center_w, center_h\) \+ 2 x 19 landmarks"):
        read_landmark_csv(path, tmp_path, "aflw")

    write_list(path, [good, [*good[:5], "n/a", *good[6:]]], lead, 68)
    with pytest.raises(ValueError, match=r"line 3, column 6 \(y0\): 'n/a' is not a finite number"):
        read_landmark_csv(path, tmp_path, "300w")

    write_list(path, [good, ["gone.png", *good[1:]], ["gone2.png", *good[1:]]], lead, 68)
    with pytest.raises(FileNotFoundError, match=rf"{path}, line 3: image file {tmp_path / 'gone.png'} not found "
                                                r"\(and 1 more missing\)"):
        read_landmark_csv(path, tmp_path, "300w")

    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(good)
    with pytest.raises(ValueError, match="line 1 is not a header row"):
        read_landmark_csv(path, tmp_path, "300w")


def test_official_list_names() -> None:
    assert OFFICIAL_LISTS["wflw"]["test_largepose"] == "face_landmarks_wflw_test_largepose.csv"
    assert len(OFFICIAL_LISTS["wflw"]) == 8
    assert sorted(OFFICIAL_LISTS["300w"]) == ["test", "train", "valid", "valid_challenge", "valid_common"]
    assert OFFICIAL_LISTS["aflw"]["test_frontal"] == "face_landmarks_aflw_test_frontal.csv"
    assert OFFICIAL_LISTS["cofw"] == {"train": "COFW_train_color.mat", "test": "COFW_test_color.mat"}


# --------------------------------------------------------------------------------------------- COFW .mat
def write_mat73(path: Path, cells: dict[str, list[np.ndarray]], arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file as MATLAB writes one: HDF5 after a 512-byte user block holding the MAT header, arrays
    stored column-major (so transposed as h5py sees them), a cell array as a dataset of object references to
    the cells' arrays in ``#refs#``, and a ``MATLAB_class`` attribute on each."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for name, items in cells.items():
            cell_refs = []
            for j, item in enumerate(items):
                d = refs.create_dataset(f"{name}{j}", data=item.T)
                d.attrs["MATLAB_class"] = np.bytes_("uint8")
                cell_refs.append(d.ref)
            # an (N, 1) cell array is stored as (1, N)
            d = f.create_dataset(name, data=np.array([cell_refs], dtype=h5py.ref_dtype))
            d.attrs["MATLAB_class"] = np.bytes_("cell")
        for name, a in arrays.items():
            d = f.create_dataset(name, data=np.asarray(a, np.float64).T)
            d.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116)
    with open(path, "r+b") as f:
        f.write(header + bytes(8) + b"\x00\x02IM")


@pytest.fixture()
def cofw_files(tmp_path: Path) -> tuple[Path, list[np.ndarray], np.ndarray]:
    color = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    grey = RNG.integers(0, 256, size=(6, 4), dtype=np.uint8)
    xs = np.linspace(10.3, 40.7, 29)
    ys = np.linspace(70.9, 20.2, 29)
    occluded = (np.arange(29) % 3 == 0).astype(np.float64)
    phis = np.stack([np.concatenate([xs, ys, occluded]), np.concatenate([xs + 5, ys + 1, occluded])])  # (N, 87)
    path = tmp_path / "COFW_train_color.mat"
    write_mat73(path, {"IsTr": [color, grey]}, {"phisTr": phis, "bboxesTr": np.zeros((2, 4))})
    return path, [color, grey], phis


def test_cofw_mat_records_follow_official_cofw_py(cofw_files) -> None:
    path, _, phis = cofw_files
    a, b = read_cofw_mat(path, "train")
    assert a.image_file == f"{path}#0" and b.image_file == f"{path}#1" and b.image_id == 1
    np.testing.assert_array_equal(a.joints[:, 0], phis[0, :29].astype(np.float32))  # 29 x's, then 29 y's
    np.testing.assert_array_equal(a.joints[:, 1], phis[0, 29:58].astype(np.float32))
    # landmark box floor/ceil: x 10..41, y 20..71 -> center (25.5, 45.5), side 51
    np.testing.assert_array_equal(a.center, np.float32([25.5, 45.5]))
    np.testing.assert_array_equal(a.scale, np.float32([51 / 200 * 1.25] * 2))
    np.testing.assert_array_equal(b.center, np.float32([30.5, 46.5]))
    np.testing.assert_array_equal(a.joints_vis, np.ones(29, np.float32))


def test_cofw_images_color_and_grey(cofw_files) -> None:
    path, (color, grey), _ = cofw_files
    np.testing.assert_array_equal(read_face_image(f"{path}#0"), color)
    image = read_face_image(f"{path}#1")
    assert image.shape == (6, 4, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], grey)
    with pytest.raises(ValueError, match=r"#5: index out of range, COFW file .* holds 2 images"):
        read_face_image(f"{path}#5")


def test_cofw_images_read_in_a_forked_worker(cofw_files) -> None:
    """The handle opened here is not reused in a forked DataLoader-style worker: it opens its own."""
    path, (color, _), _ = cofw_files
    read_face_image(f"{path}#0")
    with multiprocessing.get_context("fork").Pool(1) as pool:
        (image,) = pool.map(read_face_image, [f"{path}#0"])
    np.testing.assert_array_equal(image, color)


def test_cofw_errors(cofw_files, tmp_path: Path) -> None:
    path, _, _ = cofw_files
    with pytest.raises(ValueError, match=r"no 'IsT' / 'phisT' for split 'test' \(it holds \['#refs#', 'IsTr'"):
        read_cofw_mat(path, "test")
    with pytest.raises(ValueError, match="COFW split must be one of"):
        read_cofw_mat(path, "valid")
    bad = tmp_path / "COFW_test_color.mat"
    write_mat73(bad, {"IsT": [np.zeros((3, 3), np.uint8)]}, {"phisT": np.zeros((1, 50))})
    with pytest.raises(ValueError, match=r"phisT has MATLAB shape \(1, 50\) for 1 images; expected \(N, 87\)"):
        read_cofw_mat(bad, "test")
    (tmp_path / "old.mat").write_bytes(b"MATLAB 5.0 MAT-file".ljust(256))
    with pytest.raises(ValueError, match="not a MATLAB v7.3"):
        read_cofw_mat(tmp_path / "old.mat", "train")


def test_read_face_image_reads_plain_files(tmp_path: Path) -> None:
    image = write_png(tmp_path / "face#1.png")
    np.testing.assert_array_equal(read_face_image(str(tmp_path / "face#1.png")), image)


# --------------------------------------------------------------------------------------------- mmpose JSON
def face_json(path: Path, anns: list[dict], file_name: str = "a.png") -> None:
    images = [{"id": 7, "file_name": file_name, "width": 64, "height": 48}]
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "face", "keypoints": [], "skeleton": []}]}))


def keypoint_triples(k: int, flags: list[int] | None = None) -> tuple[np.ndarray, list[float]]:
    pts = landmarks(k)
    v = flags if flags is not None else [2] * k
    return pts, [c for (x, y), f in zip(pts, v) for c in (x, y, f)]


def test_coco_faces_with_center_scale_and_box_size(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    pts, kps = keypoint_triples(19)
    ann = {"id": 3, "image_id": 7, "keypoints": kps, "num_keypoints": 19, "bbox": [1, 2, 30, 40], "iscrowd": 0,
           "area": 1200.0, "category_id": 1, "center": [30.5, 20.5], "scale": 0.4, "box_size": 80.0}
    face_json(tmp_path / "aflw.json", [ann])
    (rec,) = read_coco_faces(tmp_path / "aflw.json", tmp_path, "aflw")
    assert (rec.image_id, rec.ann_id, rec.box_size) == (7, 3, 80.0)
    assert rec.image_file == str(tmp_path / "a.png")
    np.testing.assert_array_equal(rec.center, np.float32([30.5, 20.5]))
    np.testing.assert_array_equal(rec.scale, np.float32([0.5, 0.5]))
    np.testing.assert_array_equal(rec.joints, pts.astype(np.float32))


def test_coco_faces_from_bbox_as_mmpose(tmp_path: Path) -> None:
    """COFW's converter writes only ``bbox``: clipped to the image, padded 1.25, squared on the longer side."""
    write_png(tmp_path / "a.png")
    flags = [2, 1, 0] + [2] * 26
    _, kps = keypoint_triples(29, flags)
    anns = [{"id": 1, "image_id": 7, "keypoints": kps, "bbox": [38, 10, 20, 30]},
            {"id": 2, "image_id": 7, "keypoints": kps, "bbox": [50, 30, 30, 30]}]
    face_json(tmp_path / "cofw.json", anns)
    a, b = read_coco_faces(tmp_path / "cofw.json", tmp_path, "cofw")
    np.testing.assert_array_equal(a.center, np.float32([48, 25]))
    np.testing.assert_array_equal(a.scale, np.float32([30 / 200 * 1.25] * 2))
    np.testing.assert_array_equal(b.center, np.float32([56.5, 38.5]))  # x2, y2 clipped to 63, 47
    np.testing.assert_allclose(b.scale, np.float32([17 / 200 * 1.25] * 2), rtol=1e-6)
    np.testing.assert_array_equal(a.joints_vis[:3], np.float32([1, 1, 0]))
    assert a.box_size == 0.0


def test_coco_faces_errors(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    _, kps = keypoint_triples(68)
    path = tmp_path / "faces.json"
    face_json(path, [{"id": 11, "image_id": 7, "keypoints": kps[:-3], "center": [1, 1], "scale": 1}])
    with pytest.raises(ValueError, match=rf"{path}: annotation id 11 has 201 keypoint values, expected 3\*K=204"):
        read_coco_faces(path, tmp_path, "300w")
    face_json(path, [{"id": 12, "image_id": 7, "keypoints": kps}])
    with pytest.raises(ValueError, match="annotation id 12: needs 'center' and 'scale' or a 'bbox'"):
        read_coco_faces(path, tmp_path, "300w")
    face_json(path, [{"id": 13, "image_id": 9, "keypoints": kps, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(ValueError, match="annotation id 13 refers to unknown image_id 9"):
        read_coco_faces(path, tmp_path, "300w")
    face_json(path, [{"id": 14, "image_id": 7, "keypoints": kps, "bbox": [0, 0, 5, 5]}], file_name="gone.png")
    with pytest.raises(FileNotFoundError, match=rf"annotation id 14: image file {tmp_path / 'gone.png'} not found"):
        read_coco_faces(path, tmp_path, "300w")


# --------------------------------------------------------------------------------------------- flip pairs
def ring(cx: float, cy: float, rx: float, ry: float, n: int) -> list[tuple[float, float]]:
    """``n`` points round an ellipse from its image-left end, clockwise on screen (over the top first): how
    300W and WFLW number eyes and lips (image y grows downwards)."""
    t = np.pi - 2 * np.pi * np.arange(n) / n
    return list(zip(cx + rx * np.cos(t), cy - ry * np.sin(t)))


def contour(n: int) -> list[tuple[float, float]]:
    """Jaw line from the image-left temple down round the chin (the middle point) to the image-right one."""
    t = np.pi + np.pi * np.arange(n) / (n - 1)
    return list(zip(np.cos(t), -np.sin(t)))


def wflw_brow(cx: float) -> list[tuple[float, float]]:
    """WFLW brow: upper edge image-left to image-right (5 points), lower edge back (4)."""
    t = [*(np.pi - np.pi * np.arange(5) / 4), *(-np.pi * np.arange(1, 5) / 5)]
    return [(cx + 0.25 * np.cos(a), -0.6 - 0.05 * np.sin(a)) for a in t]


def row(xs: list[float], y: float) -> list[tuple[float, float]]:
    return [(x, y) for x in xs]


def brow_300w(x0: float, x1: float) -> list[tuple[float, float]]:
    return [(x, -0.6 - 0.1 * np.sin(np.pi * (abs(x) - 0.2) / 0.6)) for x in np.linspace(x0, x1, 5)]


BRIDGE = [(0.0, y) for y in (-0.3, -0.15, 0.0, 0.15)]
NOSE_BASE = row(list(np.linspace(-0.15, 0.15, 5)), 0.25)
TEMPLATES = {
    "wflw": [*contour(33), *wflw_brow(-0.45), *wflw_brow(0.45), *BRIDGE, *NOSE_BASE,  # 0-32, 33-50, 51-59
             *ring(-0.45, -0.35, 0.18, 0.07, 8), *ring(0.45, -0.35, 0.18, 0.07, 8),  # eyes 60-75
             *ring(0, 0.55, 0.35, 0.12, 12), *ring(0, 0.55, 0.25, 0.05, 8),  # lips 76-95
             (-0.45, -0.35), (0.45, -0.35)],  # pupils 96, 97
    "300w": [*contour(17), *brow_300w(-0.8, -0.2), *brow_300w(0.2, 0.8), *BRIDGE, *NOSE_BASE,  # 0-16, 17-26, 27-35
             *ring(-0.45, -0.35, 0.18, 0.07, 6), *ring(0.45, -0.35, 0.18, 0.07, 6),  # eyes 36-47
             *ring(0, 0.55, 0.35, 0.12, 12), *ring(0, 0.55, 0.25, 0.05, 8)],  # lips 48-67
    # COFW's mark-up: image-left point then its image-right partner, then the midline points.
    "cofw": [(-0.8, -0.6), (0.8, -0.6), (-0.2, -0.6), (0.2, -0.6), (-0.5, -0.7), (-0.5, -0.55), (0.5, -0.7),
             (0.5, -0.55), (-0.7, -0.35), (0.7, -0.35), (-0.25, -0.35), (0.25, -0.35), (-0.45, -0.42),
             (-0.45, -0.28), (0.45, -0.42), (0.45, -0.28), (-0.45, -0.35), (0.45, -0.35), (-0.15, 0.2), (0.15, 0.2),
             (0, 0.15), (0, 0.25), (-0.35, 0.55), (0.35, 0.55), (0, 0.45), (0, 0.52), (0, 0.58), (0, 0.65), (0, 1)],
    # AFLW: brows, eyes (corner, centre, corner), nose, mouth image-left to image-right, then the chin.
    "aflw": [*row([-0.8, -0.5, -0.2, 0.2, 0.5, 0.8], -0.6), *row([-0.7, -0.45, -0.2, 0.2, 0.45, 0.7], -0.35),
             *row([-0.15, 0, 0.15], 0.2), *row([-0.35, 0, 0.35], 0.55), (0, 1)],
}


def side(name: str) -> str | None:
    return next((s for s in ("right", "left") if name.startswith(s)), None)


@pytest.mark.parametrize("name", ["wflw", "300w", "cofw", "aflw"])
def test_flip_pairs_mirror_a_symmetric_face(name: str) -> None:
    spec = KEYPOINT_SPECS[name]
    face = np.asarray(TEMPLATES[name], np.float64)
    assert face.shape == (spec.num_joints, 2)
    index = np.asarray(spec.flip_index)
    assert sorted(index) == list(range(spec.num_joints))
    np.testing.assert_array_equal(index[index], np.arange(spec.num_joints))  # an involution
    mirrored = face * [-1, 1]
    np.testing.assert_allclose(mirrored[index], face, atol=1e-12)  # flip the image, relabel: the same face
    paired = {j for pair in spec.flip_pairs for j in pair}
    for a, b in spec.flip_pairs:
        assert face[a, 0] * face[b, 0] < 0, f"{name} pair ({a}, {b}) does not cross the midline"
    for j in set(range(spec.num_joints)) - paired:
        assert abs(face[j, 0]) < 1e-12, f"{name} point {j} ({spec.joint_names[j]}) is unpaired but off the midline"


@pytest.mark.parametrize("name", ["wflw", "300w", "cofw", "aflw"])
def test_face_names_sides_agree_with_pairs_and_image_sides(name: str) -> None:
    """``right_*`` (the subject's right) lies on the image's left; pairs join a right and a left point, or two
    points of a symmetric part; the unpaired points have no side."""
    spec = KEYPOINT_SPECS[name]
    face = np.asarray(TEMPLATES[name], np.float64)
    for j, joint in enumerate(spec.joint_names):
        assert side(joint) is None or (face[j, 0] < 0) == (side(joint) == "right"), joint
    for a, b in spec.flip_pairs:
        pair = {side(spec.joint_names[a]), side(spec.joint_names[b])}
        assert pair in ({"right", "left"}, {None}), (spec.joint_names[a], spec.joint_names[b])


def test_face_sets_normalisers_and_skeletons() -> None:
    assert KEYPOINT_SPECS["wflw"].extra == {"interocular": (60, 72)}
    assert KEYPOINT_SPECS["300w"].extra["interocular"] == (36, 45)
    assert KEYPOINT_SPECS["300w"].extra["pupils"] == (tuple(range(36, 42)), tuple(range(42, 48)))
    assert KEYPOINT_SPECS["cofw"].extra == {"interocular": (8, 9)}
    assert KEYPOINT_SPECS["aflw"].extra == {"normalizer": "box_size"}
    for name in ("wflw", "300w", "cofw", "aflw"):
        spec: KeypointSpec = KEYPOINT_SPECS[name]
        assert len(set(spec.joint_names)) == spec.num_joints
        assert len({tuple(sorted(s)) for s in spec.skeleton}) == len(spec.skeleton)
    assert (41, 33) in KEYPOINT_SPECS["wflw"].skeleton and (47, 42) in KEYPOINT_SPECS["300w"].skeleton  # loops
