"""Top-down pose data: geometry against hand-computed values, augmentation, COCO / MPII datasets on tiny
fixtures written to tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrnet.files import IMAGENET_MEAN, IMAGENET_STD
from hrnet.keypoints.geometry import (
    AugmentParams,
    TopDownAugment,
    affine_points,
    box_to_center_scale,
    crop_image,
    flip_joints,
    get_affine_transform,
    half_body_center_scale,
    sanitize_box,
    top_down_transform,
    transform_preds,
)
from hrnet.keypoints.sets import COCO_KEYPOINTS, MPII_KEYPOINTS, KeypointSpec
from hrnet.tasks.pose.coco import CocoKeypoints
from hrnet.tasks.pose.mpii import MpiiKeypoints

K = COCO_KEYPOINTS.num_joints


# --------------------------------------------------------------------------------------------- geometry
def test_box_to_center_scale_hand_computed():
    # wide box, 256x192 input (aspect 0.75): h grows to 100 / 0.75
    c, s = box_to_center_scale([10, 20, 100, 100], aspect_ratio=0.75)
    np.testing.assert_allclose(c, [60.0, 70.0])
    np.testing.assert_allclose(s, [100 / 200 * 1.25, (100 / 0.75) / 200 * 1.25], rtol=1e-6)
    # tall box: w grows to 200 * 0.75 = 150
    c, s = box_to_center_scale([0, 0, 30, 200], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(c, [15.0, 100.0])
    np.testing.assert_allclose(s, [0.75, 1.0], rtol=1e-6)
    assert c.dtype == np.float32 and s.dtype == np.float32


def test_sanitize_box_official_rule():
    assert sanitize_box([-5, 10, 20, 30], 100, 100) == [0.0, 10.0, 19.0, 29.0]  # w - 1 inclusive-pixel rule
    assert sanitize_box([90, 90, 50, 50], 100, 100) == [90.0, 90.0, 9.0, 9.0]  # clipped to W - 1, H - 1
    assert sanitize_box([150, 10, 20, 20], 100, 100) is None  # entirely right of the image


@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0])
def test_affine_closed_form_and_inverse(rot):
    center, scale, out_wh = np.array([123.0, 87.5]), np.array([0.9, 1.2]), (192, 256)
    m = get_affine_transform(center, scale, rot, out_wh)
    # independent closed form: zoom k = W / (scale[0] * 200), rotation by -rot, center -> output center
    k, r = 192 / (0.9 * 200), math.radians(rot)
    lin = k * np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])
    np.testing.assert_allclose(m[:, :2], lin, atol=1e-4)
    np.testing.assert_allclose(affine_points(center, m)[0], [96.0, 128.0], atol=1e-3)
    inv = get_affine_transform(center, scale, rot, out_wh, inv=True)
    pts = np.array([[0.0, 0.0], [50.0, 300.0], [123.0, 87.5], [-20.0, 7.0]])
    np.testing.assert_allclose(affine_points(affine_points(pts, m), inv), pts, atol=1e-2)


def test_transform_preds_back_projects_heatmap_coords():
    center, scale = np.array([300.0, 200.0]), np.array([1.0, 4 / 3])
    joints = np.array([[250.0, 150.0], [330.0, 260.0], [300.0, 200.0]])
    hm = affine_points(joints, get_affine_transform(center, scale, 0, (48, 64)))
    # a 200 px wide box on a 48 wide heatmap: 1 heatmap px = 200 / 48 image px
    np.testing.assert_allclose(hm[2], [24.0, 32.0], atol=1e-4)
    np.testing.assert_allclose(hm[0] - hm[2], np.array([-50.0, -50.0]) * 48 / 200, atol=1e-4)
    np.testing.assert_allclose(transform_preds(hm, center, scale, (48, 64)), joints, atol=1e-2)
    with_scores = np.concatenate([hm, np.ones((3, 1))], axis=1)
    assert transform_preds(with_scores, center, scale, (48, 64)).shape == (3, 3)


def _dot_image(h=300, w=400, xy=(150, 120)):
    img = np.zeros((h, w, 3), np.uint8)
    x, y = xy
    img[y - 1:y + 2, x - 1:x + 2] = 255
    return img


def _assert_dot_at(channel: np.ndarray, xy) -> None:
    """The brightest pixel lies within 2 px of ``xy`` and the dot's intensity centroid within 0.5 px."""
    img = channel.astype(np.float64)
    y, x = np.unravel_index(np.argmax(img), img.shape)
    assert abs(x - xy[0]) <= 2 and abs(y - xy[1]) <= 2, ((x, y), xy)
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    cx, cy = (img * xs).sum() / img.sum(), (img * ys).sum() / img.sum()
    assert abs(cx - xy[0]) <= 0.5 and abs(cy - xy[1]) <= 0.5, ((cx, cy), xy)


@pytest.mark.parametrize("rot", [0.0, 25.0])
def test_crop_keeps_dot_at_transformed_joint(rot):
    img = _dot_image()
    crop, m = crop_image(img, (170.0, 140.0), (0.6, 0.8), rot, (192, 256))
    assert crop.shape == (256, 192, 3)
    expected = affine_points(np.array([[150.0, 120.0]]), m)[0]
    _assert_dot_at(crop[..., 0], expected)


def test_flip_joints_swaps_pairs_and_mirrors_x():
    joints = np.zeros((K, 2))
    vis = np.zeros(K)
    joints[5], vis[5] = (10.0, 40.0), 1  # left shoulder
    joints[0], vis[0] = (50.0, 5.0), 1  # nose (unpaired)
    out, ovis = flip_joints(joints, vis, 100, COCO_KEYPOINTS.flip_index)
    np.testing.assert_allclose(out[6], [89.0, 40.0])  # becomes right shoulder at W - 1 - x
    np.testing.assert_allclose(out[0], [49.0, 5.0])
    assert ovis[6] == 1 and ovis[5] == 0 and np.all(out[5] == 0)


def test_flipped_crop_keeps_dot_under_flipped_joint():
    img = _dot_image(xy=(150, 120))
    joints = np.zeros((K, 2))
    vis = np.zeros(K)
    joints[9], vis[9] = (150.0, 120.0), 1  # left wrist on the dot
    params = AugmentParams(np.float32([170, 140]), np.float32([0.6, 0.8]), 10.0, True, False)
    out = top_down_transform(img, joints, vis, (0, 0), (1, 1), (256, 192), COCO_KEYPOINTS, params=params)
    assert out["flipped"] and out["joints_vis"][10] == 1 and out["joints_vis"][9] == 0
    np.testing.assert_allclose(out["center"], [400 - 170 - 1, 140])
    _assert_dot_at(out["image"][..., 0], out["joints"][10])


def test_half_body_picks_only_upper_or_lower():
    rng = np.random.default_rng(0)
    joints = rng.uniform(0, 300, size=(K, 2)).astype(np.float32)
    vis = np.ones(K, np.float32)
    upper, lower = list(range(11)), list(range(11, 17))
    seen = set()
    for _ in range(40):
        center, scale = half_body_center_scale(joints, vis, COCO_KEYPOINTS.upper_body_ids, 0.75, rng)
        part = upper if np.allclose(center, joints[upper].mean(0), atol=1e-4) else lower
        np.testing.assert_allclose(center, joints[part].mean(0), atol=1e-4)
        w, h = joints[part].max(0) - joints[part].min(0)
        w, h = max(w, 0.75 * h), max(h, w / 0.75)
        np.testing.assert_allclose(scale, np.array([w, h]) / 200 * 1.5, rtol=1e-5)
        seen.add(len(part))
    assert seen == {11, 6}
    # too few visible joints on both halves -> no half-body crop
    vis_few = np.zeros(K, np.float32)
    vis_few[0] = 1
    assert half_body_center_scale(joints, vis_few, COCO_KEYPOINTS.upper_body_ids, 0.75, rng) is None


def test_augment_ranges_and_reproducibility():
    aug = TopDownAugment(half_body_prob=0.0)
    joints, vis = np.zeros((K, 2)), np.zeros(K)
    c, s = np.float32([100, 100]), np.float32([1.0, 4 / 3])
    draws = [aug.sample(joints, vis, c, s, COCO_KEYPOINTS, 0.75, np.random.default_rng(i)) for i in range(300)]
    zoom = np.array([d.scale[0] for d in draws])
    rot = np.array([d.rotation for d in draws])
    assert zoom.min() >= 0.65 - 1e-6 and zoom.max() <= 1.35 + 1e-6
    assert np.abs(rot).max() <= 90 and 0.45 < np.mean(rot != 0) < 0.75
    assert 0.35 < np.mean([d.flip for d in draws]) < 0.65
    a = aug.sample(joints, vis, c, s, COCO_KEYPOINTS, 0.75, np.random.default_rng(7))
    b = aug.sample(joints, vis, c, s, COCO_KEYPOINTS, 0.75, np.random.default_rng(7))
    assert (a.rotation, a.flip) == (b.rotation, b.flip) and np.array_equal(a.scale, b.scale)


# ------------------------------------------------------------------------------------------- COCO fixture
def _kps(points: dict[int, tuple[float, float]], k: int = K) -> list[float]:
    out = [0.0] * (3 * k)
    for j, (x, y) in points.items():
        out[3 * j:3 * j + 3] = [x, y, 2]
    return out


def _write_coco(tmp: Path, k: int = K, anns_override=None, colour=(30, 120, 200)) -> tuple[Path, Path]:
    img_dir = tmp / "images"
    img_dir.mkdir(exist_ok=True)
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 320, "height": 240} for i in (1, 2, 3, 4)]
    for im in images:
        cv2.imwrite(str(img_dir / im["file_name"]), np.full((240, 320, 3), colour, np.uint8))  # BGR on disk
    full = {j: (100 + 3 * j, 60 + 5 * j) for j in range(k)}
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [80, 50, 60, 120], "area": 5000, "iscrowd": 0,
         "num_keypoints": k, "keypoints": _kps(full, k)},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [200, 40, 50, 90], "area": 3000, "iscrowd": 0,
         "num_keypoints": 1, "keypoints": _kps({0: (220, 60)}, k)},
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 300, 200], "area": 40000, "iscrowd": 1,
         "num_keypoints": 0, "keypoints": [0] * (3 * k)},  # crowd
        {"id": 20, "image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2000, "iscrowd": 0,
         "num_keypoints": 0, "keypoints": [0] * (3 * k)},  # no keypoints
        {"id": 21, "image_id": 2, "category_id": 1, "bbox": [100, 30, 40, 100], "area": 3000, "iscrowd": 0,
         "num_keypoints": 2, "keypoints": _kps({1: (110, 40), 2: (120, 40)}, k)},
        {"id": 22, "image_id": 2, "category_id": 1, "bbox": [400, 30, 40, 100], "area": 3000, "iscrowd": 0,
         "num_keypoints": 1, "keypoints": _kps({1: (410, 40)}, k)},  # box outside the image
        {"id": 23, "image_id": 2, "category_id": 1, "bbox": [20, 30, 40, 100], "area": 0, "iscrowd": 0,
         "num_keypoints": 1, "keypoints": _kps({1: (30, 40)}, k)},  # zero area
        {"id": 40, "image_id": 4, "category_id": 2, "bbox": [20, 30, 40, 100], "area": 900, "iscrowd": 0},
    ]
    # image 3: no annotations at all; image 4: only a non-person object
    if anns_override is not None:
        anns = anns_override(anns)
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}]
    ann_file = tmp / "person_keypoints.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann_file, img_dir


def test_coco_gt_sample_count_and_content(tmp_path):
    ann_file, img_dir = _write_coco(tmp_path)
    ds = CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False)
    assert len(ds) == 3 and ds.num_joints == K
    assert [r.ann_id for r in ds.records] == [10, 11, 21]
    assert ds.coco.getImgIds() == [1, 2, 3, 4]  # pycocotools object for evaluation

    s = ds[0]
    assert s["image"].shape == (3, 256, 192) and s["image"].dtype == torch.float32
    # center/scale from the sanitised box [80, 50, 59, 119] (official w - 1 rule), aspect 0.75
    box = [80.0, 50.0, 59.0, 119.0]
    np.testing.assert_allclose(s["center"].numpy(), [80 + 29.5, 50 + 59.5])
    np.testing.assert_allclose(s["scale"].numpy(), [119 * 0.75 / 200 * 1.25, 119 / 200 * 1.25], rtol=1e-6)
    center, scale = box_to_center_scale(box, 0.75)
    raw = np.array([(100 + 3 * j, 60 + 5 * j) for j in range(K)], np.float64)
    expected = affine_points(raw, get_affine_transform(center, scale, 0, (192, 256)))
    np.testing.assert_allclose(s["joints"].numpy(), expected, atol=1e-3)
    assert s["joints_vis"].tolist() == [1.0] * K
    assert int(s["image_id"]) == 1 and float(s["score"]) == 1.0 and not bool(s["flipped"])
    np.testing.assert_allclose(float(s["area"]), np.prod(scale * 200), rtol=1e-5)
    # a pixel in the middle of the crop: RGB of the BGR-written colour, ImageNet-normalised
    rgb = np.array([200, 120, 30]) / 255.0
    np.testing.assert_allclose(s["image"][:, 128, 96].numpy(), (rgb - IMAGENET_MEAN) / IMAGENET_STD, atol=0.05)

    s1 = ds[1]  # single visible joint, others zero
    assert s1["joints_vis"].sum() == 1 and torch.all(s1["joints"][1:] == 0)


def test_coco_detections_mode_threshold(tmp_path):
    ann_file, img_dir = _write_coco(tmp_path)
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [80, 50, 60, 120], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.3},
        {"image_id": 3, "category_id": 1, "bbox": [10, 10, 30, 60], "score": 0.05},
        {"image_id": 3, "category_id": 2, "bbox": [10, 10, 30, 60], "score": 0.99},  # not a person
    ]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    ds = CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, boxes=det_file, box_score_threshold=0.2)
    assert len(ds) == 2
    s = ds[1]
    assert float(s["score"]) == pytest.approx(0.3) and s["joints_vis"].sum() == 0
    c, sc = box_to_center_scale([10, 10, 30, 30], 0.75)  # detection boxes are not clipped
    np.testing.assert_allclose(s["center"].numpy(), c)
    np.testing.assert_allclose(s["scale"].numpy(), sc)
    assert len(CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, boxes=det_file)) == 3


def test_coco_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoKeypoints(ann_file=tmp_path / "missing.json", img_dir=tmp_path, train=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        CocoKeypoints(ann_file=bad, img_dir=tmp_path, train=False)

    spec5 = KeypointSpec(name="five", joint_names=("a", "b", "c", "d", "e"))
    ann_file, img_dir = _write_coco(tmp_path)
    with pytest.raises(ValueError, match=r"person_keypoints.json: annotation id 10 has 51 keypoint values, "
                                         r"expected 3\*K=15"):
        CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, keypoints=spec5)

    def drop_kps(anns):
        del anns[0]["keypoints"]
        return anns
    sub = tmp_path / "nokps"
    sub.mkdir()
    ann_file2, _ = _write_coco(sub, anns_override=drop_kps)
    with pytest.raises(ValueError, match=r"nokps.*annotation id 10 .*no 'keypoints'"):
        CocoKeypoints(ann_file=ann_file2, img_dir=img_dir, train=False)

    ds = CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False)
    (img_dir / "000000000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000000000001.jpg not found"):
        ds[0]
    (img_dir / "000000000002.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="000000000002.jpg unreadable"):
        ds[2]

    det_file = tmp_path / "dets_bad.json"
    det_file.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3]}]))
    with pytest.raises(ValueError, match="dets_bad.json: entry 0"):
        CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, boxes=det_file)
    det_file.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(ValueError, match="dets_bad.json.*JSON list"):
        CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, boxes=det_file)


def test_coco_train_determinism_with_seed(tmp_path):
    ann_file, img_dir = _write_coco(tmp_path)
    kw = dict(ann_file=ann_file, img_dir=img_dir, train=True, input_size=(128, 96), half_body_prob=1.0)
    a, b = CocoKeypoints(seed=3, **kw), CocoKeypoints(seed=3, **kw)
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        for key in ("image", "joints", "joints_vis", "center", "scale", "rotation", "flipped"):
            assert torch.equal(sa[key], sb[key]), key
    # the epoch changes the draw; some augmentation happened
    draws = []
    for epoch in range(4):
        a.set_epoch(epoch)
        draws.append((float(a[0]["rotation"]), bool(a[0]["flipped"]), a[0]["scale"].tolist()))
    assert len(set(map(str, draws))) > 1
    # flipped samples still have joints where the swapped raw joints land
    s = a[0]
    vis = s["joints_vis"].numpy() > 0
    assert vis.sum() == K


def test_custom_five_joint_spec(tmp_path):
    spec = KeypointSpec(name="hand5", joint_names=("w", "t", "i", "m", "r"), flip_pairs=((1, 4),),
                        upper_body_ids=(0, 1, 2))
    ann_file, img_dir = _write_coco(tmp_path, k=5)
    ds = CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=True, keypoints=spec, seed=0,
                       input_size=(64, 64), half_body_prob=1.0, num_joints_half_body=2)
    assert len(ds) == 3 and ds.num_joints == 5
    for i in range(len(ds)):
        s = ds[i]
        assert s["joints"].shape == (5, 2) and s["joints_vis"].shape == (5,) and s["image"].shape == (3, 64, 64)


# -------------------------------------------------------------------------------------------------- MPII
def test_mpii_conventions(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    cv2.imwrite(str(img_dir / "a.jpg"), np.zeros((200, 300, 3), np.uint8))
    joints = [[101 + 2 * j, 41 + 4 * j] for j in range(16)]
    vis = [1] * 15 + [0]
    entries = [{"image": "a.jpg", "center": [151.0, 81.0], "scale": 0.8, "joints": joints, "joints_vis": vis},
               {"image": "a.jpg", "center": [100.0, 100.0], "scale": 0.5}]  # test-split entry, no joints
    ann = tmp_path / "valid.json"
    ann.write_text(json.dumps(entries))
    ds = MpiiKeypoints(ann_file=ann, img_dir=img_dir, train=False)
    assert len(ds) == 2
    s = ds[0]
    # center.y += 15 * s, scale *= 1.25, then 1-based -> 0-based
    np.testing.assert_allclose(s["center"].numpy(), [150.0, 81.0 + 15 * 0.8 - 1])
    np.testing.assert_allclose(s["scale"].numpy(), [1.0, 1.0])
    expected = affine_points(np.array(joints, float)[:15] - 1, get_affine_transform([150, 92], [1, 1], 0, (256, 256)))
    np.testing.assert_allclose(s["joints"].numpy()[:15], expected, atol=1e-3)
    assert s["joints_vis"][15] == 0 and torch.all(s["joints"][15] == 0)
    assert ds[1]["joints_vis"].sum() == 0

    bad = tmp_path / "bad_mpii.json"
    bad.write_text(json.dumps([{"image": "a.jpg", "center": [1, 1], "scale": 1, "joints": joints[:10],
                                "joints_vis": vis[:10]}]))
    with pytest.raises(ValueError, match="bad_mpii.json: entry 0 .*10 joints, expected K=16"):
        MpiiKeypoints(ann_file=bad, img_dir=img_dir, train=False, keypoints=MPII_KEYPOINTS)


def test_collate_sample_transform_and_drop_out_of_crop(tmp_path):
    ann_file, img_dir = _write_coco(tmp_path)

    def add_key(sample):
        sample["n_vis"] = sample["joints_vis"].sum()
        return sample
    ds = CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, input_size=(64, 48), sample_transform=add_key)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 64, 48) and batch["joints"].shape == (3, K, 2)
    assert batch["n_vis"].tolist() == [K, 1, 2] and len(batch["image_file"]) == 3

    # a joint far outside its person box: kept visible (official; the codec zeroes it) unless dropped
    def far_joint(anns):
        anns[0]["keypoints"][3 * 16:3 * 16 + 3] = [300, 230, 2]
        return anns
    sub = tmp_path / "far"
    sub.mkdir()
    ann2, img2 = _write_coco(sub, anns_override=far_joint)
    keep = CocoKeypoints(ann_file=ann2, img_dir=img2, train=False)[0]
    drop = CocoKeypoints(ann_file=ann2, img_dir=img2, train=False, drop_out_of_crop=True)[0]
    assert keep["joints_vis"][16] == 1 and keep["joints"][16, 0] > 192
    assert drop["joints_vis"][16] == 0 and torch.all(drop["joints"][16] == 0)
    assert torch.equal(keep["joints_vis"][:16], drop["joints_vis"][:16])


def test_heatmap_codec_plugs_in_as_sample_transform(tmp_path):
    heatmap = pytest.importorskip("hrnet.keypoints.codec")
    ann_file, img_dir = _write_coco(tmp_path)
    codec = heatmap.HeatmapCodec((256, 192))

    def encode(sample):
        target, weight = codec.encode(sample["joints"].numpy(), sample["joints_vis"].numpy())
        sample["target"], sample["target_weight"] = torch.from_numpy(target), torch.from_numpy(weight)
        return sample
    s = CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False, sample_transform=encode)[0]
    assert s["target"].shape == (K, 64, 48)
    # each heatmap peaks where the joint lands (input pixels / stride 4, official int(x + 0.5) rounding)
    for j in range(K):
        y, x = np.unravel_index(int(s["target"][j].argmax()), (64, 48))
        jx, jy = s["joints"][j].tolist()
        assert (x, y) == (int(jx / 4 + 0.5), int(jy / 4 + 0.5))


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][0].update(id="one"), r"images\[0\] id 'one' is not an integer"),
    (lambda d: d["images"][0].update(file_name=5), r"image id 1 file_name 5 is not a string"),
    (lambda d: d["images"][0].update(width="wide"), r"image id 1 width/height 'wide', 240 are not positive numbers"),
    (lambda d: d["images"][0].update(height=0), r"image id 1 width/height 320, 0 are not positive numbers"),
    (lambda d: d["images"].__setitem__(1, [2]), r"images\[1\] is not an object"),
    (lambda d: d["annotations"][0].update(iscrowd="no"), r"annotation id 10 iscrowd 'no' is not 0 or 1"),
    (lambda d: d["annotations"][0].update(keypoints={"nose": [1, 2, 2]}), r"annotation id 10 keypoints is not a list"),
])
def test_wrong_types_inside_coco_records_name_the_record(tmp_path, change, message) -> None:
    """Types checked field by field: a record of the wrong shape is named, never a TypeError from deep inside."""
    ann_file, img_dir = _write_coco(tmp_path)
    data = json.loads(ann_file.read_text())
    change(data)
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"person_keypoints.json: {message}"):
        CocoKeypoints(ann_file=ann_file, img_dir=img_dir, train=False)
