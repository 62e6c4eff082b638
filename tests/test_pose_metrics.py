"""Pose metrics: OKS vs pycocotools, OKS-NMS + rescoring, COCO AP on a tiny GT, MPII PCKh by hand."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrnet.keypoints.evaluation import coco_keypoint_eval, oks, oks_nms, rescore, rescore_and_nms, to_coco_results
from hrnet.keypoints.sets import COCO_KEYPOINTS, MPII_KEYPOINTS
from hrnet.tasks.pose.mpii import headsize_from_boxes, pckh

K = COCO_KEYPOINTS.num_joints
SIGMAS = np.array(COCO_KEYPOINTS.sigmas)
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # pycocotools' iouThrs


# ----------------------------------------------------------------------------------- GT fixtures
def _person(x0: float, y0: float, scale: float, vis_mask=None) -> np.ndarray:
    """A (K, 3) skeleton-ish layout inside a box at (x0, y0) with size ~scale."""
    rng = np.random.default_rng(int(x0 * 7 + y0))
    xy = np.array([x0, y0]) + rng.uniform(0.1, 0.9, size=(K, 2)) * scale
    v = np.full(K, 2.0)
    if vis_mask is not None:
        v[~np.asarray(vis_mask)] = 0
        xy[~np.asarray(vis_mask)] = 0
    return np.concatenate([xy, v[:, None]], axis=1)


def _gt_dataset(persons: dict[int, list[np.ndarray]], num_joints: int = K, names=None) -> dict:
    images, anns = [], []
    aid = 1
    for img_id, kps in persons.items():
        images.append({"id": img_id, "width": 640, "height": 480, "file_name": f"{img_id}.jpg"})
        for kp in kps:
            lab = kp[kp[:, 2] > 0]
            x0, y0 = lab[:, :2].min(0)
            x1, y1 = lab[:, :2].max(0)
            w, h = x1 - x0, y1 - y0
            anns.append({
                "id": aid, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                "bbox": [float(x0), float(y0), float(w), float(h)], "area": float(w * h * 0.6),
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "keypoints": [float(v) for v in kp.reshape(-1)],
            })
            aid += 1
    names = names or [f"kp{i}" for i in range(num_joints)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(names), "skeleton": []}]}


def _coco(dataset: dict) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(dataset))
        coco.createIndex()
    return coco


@pytest.fixture(scope="module")
def tiny_gt():
    vis = np.ones(K, bool)
    vis[[3, 4]] = False
    persons = {
        1: [_person(50, 40, 200), _person(350, 60, 150, vis)],
        2: [_person(100, 100, 250)],
        3: [_person(20, 20, 120), _person(300, 200, 180), _person(450, 50, 90)],
    }
    return persons, _coco(_gt_dataset(persons, names=COCO_KEYPOINTS.joint_names))


def _instances(persons, perturb=None, score=1.0):
    out = []
    for img_id, kps in persons.items():
        for p, kp in enumerate(kps):
            k = kp.copy()
            k[:, 2] = 0.9
            if perturb is not None:
                k[:, :2] += perturb(img_id, p)
            out.append({"image_id": img_id, "keypoints": k, "score": score, "area": 1000.0})
    return out


# ------------------------------------------------------------------------------------------- OKS
def test_oks_hand_value():
    gt = np.zeros((K, 3))
    gt[5] = [100, 100, 2]  # only the left shoulder is labelled (sigma 0.079)
    dt = np.zeros((K, 3))
    dt[5] = [103, 104, 1]  # d^2 = 25; unlabelled joints are ignored however far they are
    dt[0] = [900, 900, 1]
    area = 400.0
    expect = math.exp(-25 / (2 * area * (2 * 0.079) ** 2))
    assert oks(gt, dt, area, SIGMAS) == pytest.approx(expect, rel=1e-9)
    assert oks(gt, dt, area) == pytest.approx(expect, rel=1e-9)  # default = COCO sigmas
    multi = oks(gt, np.stack([dt, gt]), area, SIGMAS)
    np.testing.assert_allclose(multi, [expect, 1.0])
    # vis_thr=None: all joints count (official OKS-NMS)
    gt2 = gt.copy()
    gt2[:, :2] = dt[:, :2]
    gt2[5, :2] = [100, 100]
    gt2[0, :2] = [0, 0]
    e0 = math.exp(-(900**2 * 2) / (2 * area * (2 * 0.026) ** 2))
    assert oks(gt2, dt, area, SIGMAS, vis_thr=None) == pytest.approx((15 + expect + e0) / K, rel=1e-9)


def test_oks_agrees_with_pycocotools_and_ap(tiny_gt):
    persons, coco_gt = tiny_gt
    gt_kp = persons[2][0]
    offsets = np.random.default_rng(5).normal(0, 12.0, size=(K, 2))  # OKS ~0.685
    results = to_coco_results(_instances({2: [gt_kp]}, perturb=lambda i, p: offsets))
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        E = COCOeval(coco_gt, dt, "keypoints")
        E.params.imgIds = [2]
        E.evaluate()
    ann = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=2))[0]
    ours = oks(gt_kp, np.array(results[0]["keypoints"]).reshape(K, 3), ann["area"], SIGMAS)
    assert E.ious[(2, 1)][0, 0] == pytest.approx(ours, rel=1e-12)
    assert 0.55 < ours < 0.9 and np.min(np.abs(OKS_THRESHOLDS - ours)) > 0.01
    # one GT, one detection: AP over OKS thresholds 0.50:0.05:0.95 = fraction of thresholds <= OKS
    sub = _coco({"images": [i for i in coco_gt.dataset["images"] if i["id"] == 2],
                 "annotations": [ann], "categories": coco_gt.dataset["categories"]})
    stats = coco_keypoint_eval(sub, results)
    assert stats["AP"] == pytest.approx(np.mean(OKS_THRESHOLDS <= ours))
    assert stats["AR"] == pytest.approx(np.mean(OKS_THRESHOLDS <= ours))


# ------------------------------------------------------------------------------------- COCO eval
def test_coco_eval_perfect_predictions(tiny_gt, tmp_path):
    persons, coco_gt = tiny_gt
    results = to_coco_results(_instances(persons))
    stats = coco_keypoint_eval(coco_gt, results)
    assert list(stats) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
        assert stats[name] == pytest.approx(1.0), name
    # the same from a results file, and passing COCO's sigmas explicitly changes nothing
    path = tmp_path / "res.json"
    path.write_text(json.dumps(results))
    assert coco_keypoint_eval(coco_gt, path, sigmas=COCO_KEYPOINTS.sigmas) == stats
    assert "area" not in results[0]  # the caller's dicts are left alone


def test_coco_eval_matches_stock_pycocotools(tiny_gt):
    persons, coco_gt = tiny_gt
    rng = np.random.default_rng(11)
    offs = {(i, p): rng.normal(0, 6.0, size=(K, 2)) for i, kps in persons.items() for p in range(len(kps))}
    insts = _instances(persons, perturb=lambda i, p: offs[(i, p)])
    for n, inst in enumerate(insts):
        inst["score"] = 0.5 + 0.05 * n
    results = to_coco_results(insts)
    ours = coco_keypoint_eval(coco_gt, results, sigmas=COCO_KEYPOINTS.sigmas)
    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(results))), "keypoints")
        E.evaluate()
        E.accumulate()
        E.summarize()
    assert list(ours.values()) == [float(s) for s in E.stats]
    assert 0.0 < ours["AP"] < 1.0


def test_coco_eval_custom_keypoint_set():
    sig = [0.05, 0.05, 0.08, 0.1, 0.1]
    gt_kp = np.array([[100, 100, 2], [140, 100, 2], [120, 150, 2], [110, 220, 2], [135, 220, 1.0]])
    coco_gt = _coco(_gt_dataset({7: [gt_kp]}, num_joints=5))
    dt = gt_kp.copy()
    dt[:, 0] += [2, -3, 1, 4, 0]
    dt[:, 2] = 0.8
    results = to_coco_results([{"image_id": 7, "keypoints": dt, "score": 0.9}])
    stats = coco_keypoint_eval(coco_gt, results, sigmas=sig)
    area = coco_gt.loadAnns(coco_gt.getAnnIds())[0]["area"]
    o = oks(gt_kp, dt, area, sig)
    assert np.min(np.abs(OKS_THRESHOLDS - o)) > 0.005
    assert stats["AP"] == pytest.approx(np.mean(OKS_THRESHOLDS <= o))
    perfect = to_coco_results([{"image_id": 7, "keypoints": gt_kp, "score": 0.9}])
    assert coco_keypoint_eval(coco_gt, perfect, sigmas=sig)["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sigmas"):
        coco_keypoint_eval(coco_gt, results)  # 5 keypoints vs 17 default sigmas


def test_coco_eval_empty_results(tiny_gt, caplog):
    _, coco_gt = tiny_gt
    with caplog.at_level(logging.WARNING, logger="hrnet.keypoints.evaluation"):
        stats = coco_keypoint_eval(coco_gt, [])
    assert set(stats.values()) == {0.0} and len(stats) == 10
    assert "no keypoint results" in caplog.text


def test_to_coco_results_format():
    kp = np.arange(K * 3, dtype=np.float32).reshape(K, 3)
    res = to_coco_results([{"image_id": np.int64(5), "keypoints": kp, "score": np.float32(0.5), "area": 3}],
                          category_id=1)
    assert res == [{"image_id": 5, "category_id": 1, "keypoints": [float(v) for v in range(K * 3)],
                    "score": 0.5}]
    json.dumps(res)  # plain Python types only


# ----------------------------------------------------------------------------- rescore and NMS
def test_rescore_official_rule():
    kp = np.zeros((4, 3))
    kp[:, 2] = [0.1, 0.5, 0.9, 0.2]  # 0.2 is not > 0.2
    out = rescore([{"image_id": 1, "keypoints": kp, "score": 0.8, "area": 1.0}], in_vis_thre=0.2)
    assert out[0]["score"] == pytest.approx(0.8 * 0.7)
    assert out[0]["box_score"] == 0.8
    kp[:, 2] = 0.1
    assert rescore([{"image_id": 1, "keypoints": kp, "score": 0.8, "area": 1.0}])[0]["score"] == 0.0


def test_oks_nms_suppresses_duplicate_keeps_distinct():
    a = _person(50, 40, 200)
    dup = a.copy()
    dup[:, :2] += 1.0  # 1 px shift on a ~40000 px^2 person: OKS ~ 0.98
    far = _person(400, 200, 150)
    insts = [
        {"keypoints": dup, "score": 0.8, "area": 40000.0},
        {"keypoints": far, "score": 0.7, "area": 22500.0},
        {"keypoints": a, "score": 0.9, "area": 40000.0},
    ]
    assert oks(a, dup, 40000.0, SIGMAS, vis_thr=None) > 0.9
    assert oks_nms(insts, SIGMAS, threshold=0.9) == [2, 1]
    assert oks_nms(insts, SIGMAS, threshold=0.999) == [2, 0, 1]  # OKS ~0.98 is kept at a looser threshold
    assert oks_nms([], SIGMAS) == []
    # vis_thr masks joints by the other instance's confidence: 4 far-off, low-confidence joints
    b = a.copy()
    b[:4, :2] += 500.0
    b[:, 2], b[:4, 2] = 0.9, 0.1
    pair = [{"keypoints": a, "score": 0.9, "area": 40000.0}, {"keypoints": b, "score": 0.8, "area": 40000.0}]
    assert oks_nms(pair, SIGMAS, threshold=0.9) == [0, 1]               # OKS = 13/17 over all joints
    assert oks_nms(pair, SIGMAS, threshold=0.9, vis_thr=0.5) == [0]     # OKS = 1 over b's confident joints


def test_rescore_and_nms_per_image():
    a = _person(50, 40, 200)
    a[:, 2] = 0.9
    b = a.copy()
    b[:, 2] = 0.6
    insts = [
        {"image_id": 1, "keypoints": a, "score": 1.0, "area": 40000.0},
        {"image_id": 1, "keypoints": b, "score": 1.0, "area": 40000.0},  # same pose, lower conf
        {"image_id": 2, "keypoints": b, "score": 0.5, "area": 40000.0},  # other image: not suppressed
    ]
    kept = rescore_and_nms(insts, SIGMAS)
    assert [(k["image_id"], round(k["score"], 6)) for k in kept] == [(1, 0.9), (2, 0.3)]


# -------------------------------------------------------------------------------------------- PCKh
def test_pckh_hand_example():
    names = MPII_KEYPOINTS.joint_names
    idx = {n: i for i, n in enumerate(names)}
    n, k = 2, len(names)
    gt = np.full((n, k, 2), 100.0)
    err = np.zeros((n, k))
    vis = np.ones((n, k), bool)
    headsize = np.array([10.0, 20.0])  # thresholds 5 px and 10 px at PCKh@0.5
    err[0, idx["head_top"]] = 5.0                 # exactly 0.5 -> hit (<=)
    err[1, idx["head_top"]] = 10.5                # 0.525 -> miss
    err[0, idx["left_wrist"]] = 6.0               # miss
    err[1, idx["left_wrist"]] = 3.0               # hit
    err[:, idx["right_wrist"]] = 100.0            # both miss
    err[0, idx["left_ankle"]] = 50.0              # invisible: ignored
    vis[0, idx["left_ankle"]] = False
    err[:, idx["pelvis"]] = 100.0                 # excluded from the mean
    err[:, idx["thorax"]] = 100.0
    pred = gt.copy()
    pred[..., 0] += err                           # exact distances along x
    res = pckh(pred, gt, vis, headsize)
    assert list(res)[:9] == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1"]
    assert res["Head"] == pytest.approx(50.0)
    assert res["Wrist"] == pytest.approx((50.0 + 0.0) / 2)
    assert res["left_ankle"] == pytest.approx(100.0)
    assert res["Ankle"] == pytest.approx(100.0)
    assert res["pelvis"] == 0.0 and res["thorax"] == 0.0
    # Mean: 14 joints x 2 people - 1 invisible = 27 counted; misses: head 1, lwri 1, rwri 2 -> 23 hits
    assert res["Mean"] == pytest.approx(100.0 * 23 / 27)
    # @0.1: only the zero-error joints hit (the lwri hit at 3 / 20 = 0.15 misses too): 6 misses
    assert res["Mean@0.1"] == pytest.approx(100.0 * (27 - 6) / 27)
    res11 = pckh(pred, gt, vis, headsize, low_threshold=0.11)
    assert "Mean@0.11" in res11


def test_pckh_never_visible_joint_and_headsize():
    names = MPII_KEYPOINTS.joint_names
    vis = np.ones((1, len(names)), bool)
    vis[0, 0] = False
    gt = np.zeros((1, len(names), 2))
    res = pckh(gt, gt, vis, [1.0])
    assert math.isnan(res[names[0]]) and res["Mean"] == 100.0
    np.testing.assert_allclose(headsize_from_boxes([[[0, 0], [30, 40]], [[10, 10], [16, 18]]]), [30.0, 6.0])
    np.testing.assert_allclose(headsize_from_boxes([[0, 0, 30, 40]]), [30.0])
