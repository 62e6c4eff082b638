"""Synthetic COCO person-keypoints generator: on-disk format, annotation invariants, cues, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hrnet.synthetic import people as syn
from PIL import Image

from hrnet.keypoints.sets import COCO_KEYPOINTS, KeypointSpec
from hrnet.synthetic.people import make_synthetic_coco_keypoints, preview_grid

K = COCO_KEYPOINTS.num_joints
SIZE = (128, 160)  # (H, W): non-square on purpose, so width/height mix-ups show


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    path = make_synthetic_coco_keypoints(root, split="train", num_images=60, image_size=SIZE, seed=3)
    return root, path, json.loads(path.read_text())


def _people(data):
    return [a for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]


def test_layout_and_pycocotools_index(dataset):
    from pycocotools.coco import COCO

    root, path, data = dataset
    assert path == root / "annotations" / "person_keypoints_train.json"
    coco = COCO(str(path))
    assert coco.getCatIds(catNms=["person"]) == [1]
    cat = coco.loadCats(1)[0]
    assert cat["keypoints"] == list(COCO_KEYPOINTS.joint_names)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton]
    assert len(coco.getImgIds()) == 60 and len(coco.getAnnIds()) >= 60
    for ann in coco.loadAnns(coco.getAnnIds()[:20]):  # polygons / RLE decode through pycocotools
        assert coco.annToMask(ann).sum() > 0
    for im in data["images"]:
        f = root / "train" / im["file_name"]
        assert f.name == f"{im['id']:012d}.jpg"
        with Image.open(f) as pil:
            assert pil.format == "JPEG" and pil.size == (im["width"], im["height"]) == (SIZE[1], SIZE[0])


def test_annotation_invariants(dataset):
    _, _, data = dataset
    h, w = SIZE
    ids = [a["id"] for a in data["annotations"]]
    assert len(set(ids)) == len(ids)
    for a in data["annotations"]:
        assert a["category_id"] == 1 and a["iscrowd"] in (0, 1)
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        assert kp.shape == (K, 3)
        v = kp[:, 2]
        assert set(v.tolist()) <= {0, 1, 2}
        assert a["num_keypoints"] == int((v > 0).sum())
        assert np.all(kp[v == 0, :2] == 0)
        x, y, bw, bh = a["bbox"]
        assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6
        assert 0 < a["area"] <= bw * bh + 1e-6
        lab = kp[v > 0]
        assert np.all((lab[:, 0] >= 0) & (lab[:, 0] <= w - 1) & (lab[:, 1] >= 0) & (lab[:, 1] <= h - 1))
        assert np.all((lab[:, 0] >= x - 1) & (lab[:, 0] <= x + bw + 1) & (lab[:, 1] >= y - 1) & (lab[:, 1] <= y + bh + 1))
        if a["iscrowd"]:
            assert a["num_keypoints"] == 0 and isinstance(a["segmentation"], dict)


def test_visibility_mix_and_occlusion_logic(dataset):
    v = np.array([a["keypoints"][2::3] for a in _people(dataset[2])])
    assert len(v) >= 60
    frac = [(v == k).mean() for k in (0, 1, 2)]
    assert frac[2] > 0.75 and 0.01 < frac[1] < 0.25 and frac[0] > 0  # occluded and truncated joints exist
    # the rule itself: outside the image -> 0, under a covering mask or self-hidden -> 1, else 2
    joints = np.array([[5.0, 5.0], [20.0, 7.0], [-1.0, 4.0], [9.6, 31.5], [12.0, 3.0], [3.0, 3.0]])
    covered = np.zeros((32, 24), bool)
    covered[5:10, 18:23] = True
    hidden = np.array([False, False, False, False, False, True])
    assert syn._visibility(joints, covered, hidden, 32, 24).tolist() == [2, 1, 0, 0, 2, 1]


def test_occluders_mark_covered_joints_v1(monkeypatch):
    """With occluders forced on every person, joints lying under an occluder's pixels come out v=1."""
    seen_v1 = 0
    real = syn._occluder

    def spy(rng, img, occ_mask, centre, size):
        real(rng, img, occ_mask, centre, size)
        spy.masks.append(occ_mask)

    spy.masks = []
    monkeypatch.setattr(syn, "_occluder", spy)
    for i in range(6):
        spy.masks.clear()
        r = syn._render_image(np.random.default_rng(i), 96, 96, (1, 1), 2.5, False)
        people = [p for p in r.people if p["kind"] == "person"]
        if not people or not spy.masks:
            continue
        occ = spy.masks[-1] > 0
        p = people[0]
        for (x, y), v in zip(p["joints"], p["v"]):
            xi, yi = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            if 0 <= x <= 95 and 0 <= y <= 95 and occ[yi, xi]:
                assert v == 1
                seen_v1 += 1
    assert seen_v1 > 0


def test_edge_cases_are_emitted(tmp_path, monkeypatch):
    monkeypatch.setattr(syn, "_EDGE_RATES", {"empty": 0.3, "crowd": 0.4, "tiny": 0.4})
    path = make_synthetic_coco_keypoints(tmp_path, split="val", num_images=12, image_size=(96, 96), seed=1)
    data = json.loads(path.read_text())
    anns = data["annotations"]
    with_anns = {a["image_id"] for a in anns}
    assert any(im["id"] not in with_anns for im in data["images"])  # an image without any person
    crowd = [a for a in anns if a["iscrowd"]]
    assert crowd and all(a["num_keypoints"] == 0 and a["area"] > 0 for a in crowd)
    assert any(not a["iscrowd"] and a["num_keypoints"] == 0 for a in anns)  # tiny, unlabelled person
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    assert coco.annToMask(crowd[0]).sum() == crowd[0]["area"]


def test_deterministic_and_seed_dependent(tmp_path):
    kw = dict(split="train", num_images=5, image_size=(96, 96))
    a = make_synthetic_coco_keypoints(tmp_path / "a", seed=7, **kw)
    b = make_synthetic_coco_keypoints(tmp_path / "b", seed=7, **kw)
    c = make_synthetic_coco_keypoints(tmp_path / "c", seed=8, **kw)
    assert a.read_bytes() == b.read_bytes()
    for f in sorted((tmp_path / "a" / "train").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / "train" / f.name).read_bytes()
    ka = [x["keypoints"] for x in json.loads(a.read_text())["annotations"]]
    kc = [x["keypoints"] for x in json.loads(c.read_text())["annotations"]]
    assert ka != kc
    # the split name is part of the seed: train and val never coincide
    v = make_synthetic_coco_keypoints(tmp_path / "a", seed=7, **{**kw, "split": "val"})
    assert [x["keypoints"] for x in json.loads(v.read_text())["annotations"]] != ka


def _render_alone(seed: int, *, fixed: bool = False):
    rng = np.random.default_rng(seed)
    fig = syn._sample_figure(rng, height_px=150.0, difficulty=0.0, fixed_side_colours=fixed)
    syn._shift_figure(fig, (100.0, 100.0))
    img = np.full((200, 200, 3), 128, np.uint8)
    syn._draw_figure(img, None, fig, np.array([0.0, -1.0]))
    return img, fig


def _patch(img, p):
    x, y = int(round(p[0])), int(round(p[1]))
    return img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(np.float64).mean(0)


def test_left_and_right_limbs_look_different():
    """Each side wears its own tint (sleeve, trouser leg): this fails if the side cue is removed."""
    J = syn
    differ = 0
    for seed in range(20):
        img, fig = _render_alone(seed)
        j = fig.joints
        arm = np.abs(_patch(img, (j[J.L_SHO] + j[J.L_ELB]) / 2) - _patch(img, (j[J.R_SHO] + j[J.R_ELB]) / 2)).sum()
        leg = np.abs(_patch(img, (j[J.L_HIP] + j[J.L_KNE]) / 2) - _patch(img, (j[J.R_HIP] + j[J.R_KNE]) / 2)).sum()
        differ += int(arm > 45) + int(leg > 45)
    assert differ >= 34  # of 40 limb pairs (a few are hidden behind the other arm / the torso)


def test_face_points_are_drawn_features():
    """Eyes sit on drawn dark pupils, so the face keypoints are determined by the image."""
    for seed in range(5):
        img, fig = _render_alone(seed)
        for k in (syn.L_EYE, syn.R_EYE):
            x, y = np.round(fig.joints[k]).astype(int)
            assert img[y, x].max() < 90
        assert np.linalg.norm(fig.joints[syn.L_EYE] - fig.joints[syn.R_EYE]) > 3


def test_side_colours_mirror_safe_by_default_fixed_on_request():
    warm = lambda c: c[0] - c[2]  # noqa: E731  red minus blue
    for fixed in (False, True):
        rng = np.random.default_rng(0)
        outfits = [syn._sample_outfit(rng, fixed) for _ in range(300)]
        d = np.mean([warm(o.side_top[0]) - warm(o.side_top[1]) for o in outfits])
        assert (d > 60) if fixed else (abs(d) < 20)


def test_keypoint_subset_and_preview(tmp_path):
    spec = KeypointSpec(name="mini", joint_names=("left_wrist", "right_wrist", "nose"), flip_pairs=((0, 1),),
                        skeleton=((0, 2), (1, 2)))
    path = make_synthetic_coco_keypoints(tmp_path, split="s", num_images=4, image_size=(96, 128), keypoints=spec)
    data = json.loads(path.read_text())
    assert data["categories"][0]["keypoints"] == list(spec.joint_names)
    assert all(len(a["keypoints"]) == 9 for a in data["annotations"])
    out = preview_grid(tmp_path, "s", tmp_path / "p.png", n=4, cell=64)
    with Image.open(out) as im:
        assert im.size == (128, 128)
    with pytest.raises(ValueError):
        make_synthetic_coco_keypoints(tmp_path, num_images=1, keypoints=KeypointSpec("x", ("head_top",)))
    with pytest.raises(ValueError):
        make_synthetic_coco_keypoints(tmp_path, num_images=1, persons_per_image=(2, 1))


def test_preview_of_coco_split(dataset, tmp_path):
    root, _, _ = dataset
    out = preview_grid(root, "train", tmp_path / "grid.png", n=6, cell=100)
    with Image.open(out) as im:
        assert im.size == (300, 200)
    assert Path(out).stat().st_size > 1000
