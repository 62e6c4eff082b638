"""HigherHRNet bottom-up decoding, grouping and losses (``hrnet.tasks.bottomup``).

The grouping is checked against a plain, loop-based re-statement of the official ``HeatmapParser``
(``benchmarks/official_grouping.py``, shared with ``benchmarks/bottomup_postprocess.py``) on synthetic maps, end
to end with pycocotools on ground-truth maps, and the losses against values worked out by hand.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from bottomup_postprocess import random_people, render_maps

from hrnet.keypoints.evaluation import coco_keypoint_eval, to_coco_results
from hrnet.keypoints.sets import COCO_KEYPOINTS
from hrnet.tasks.bottomup.grouping import (
    GroupingParams,
    group,
    merge_outputs,
    nms,
    refine,
    to_image,
    top_k,
)
from hrnet.tasks.bottomup.losses import ae_loss, heatmap_loss


@pytest.fixture(scope="module")
def official():
    pytest.importorskip("scipy")
    import official_grouping

    return official_grouping


def _scene(seed: int, num_people: int, distractors: int, size_hw: tuple[int, int], dim: int, smooth: bool,
           heat_noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """People (tags 2 apart, peaks 0.3-1) plus lone peaks with random tags, cropped to ``size_hw``."""
    rng = np.random.default_rng(seed)
    size = max(size_hw)
    people, _ = random_people(rng, num_people, 4 * size, height=(0.3 * 4 * size, 0.8 * 4 * size), min_gap=8.0)
    joints = people.copy()
    joints[..., :2] /= 4
    lone = np.zeros((distractors, 17, 3))
    lone[np.arange(distractors), rng.integers(0, 17, distractors)] = np.c_[rng.uniform(0, size, (distractors, 2)),
                                                                           np.ones(distractors)]
    tags = np.r_[rng.permutation(len(people)) * 2.0 - len(people), rng.uniform(-len(people), len(people), distractors)]
    heatmaps, tag_maps = render_maps(np.concatenate((joints, lone)), size, tags, rng, tag_dim=dim,
                                     amplitude=rng.uniform(0.3, 1.0, len(tags)), tag_noise=0.1,
                                     heat_noise=heat_noise, smooth=smooth)
    h, w = size_hw
    return heatmaps[:, :h, :w].contiguous(), tag_maps[:, :h, :w].contiguous()


def _as_rows(people: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """People as rows (joints flattened, then the score), sorted, to compare as sets."""
    rows = np.concatenate((people.reshape(len(people), -1), np.asarray(scores)[:, None]), axis=1)
    return rows[np.lexsort(rows.T[::-1])]


# ------------------------------------------------------------------------------------- vs the official
@pytest.mark.parametrize(("seed", "num_people", "distractors", "size_hw", "dim", "smooth", "heat_noise"), [
    (0, 30, 12, (64, 64), 2, False, 0.08),
    (1, 30, 0, (100, 90), 2, True, 0.08),  # not whole refine tiles
    (2, 12, 6, (72, 72), 1, False, 0.08),
    (3, 20, 20, (96, 96), 2, False, 0.12),  # noise peaks above the threshold: well over 30 people
    (4, 5, 3, (64, 48), 1, True, 0.08),
])
def test_grouping_matches_the_official_restatement(official, seed, num_people, distractors, size_hw, dim, smooth,
                                                    heat_noise) -> None:
    heatmaps, tags = _scene(seed, num_people, distractors, size_hw, dim, smooth, heat_noise)
    people, scores = group(heatmaps, tags)
    reference, reference_scores = official.parse(heatmaps, tags)
    assert people.shape == (len(reference), 17, 3 + dim)
    np.testing.assert_allclose(_as_rows(people, scores), _as_rows(np.array(reference), reference_scores),
                               rtol=0, atol=1e-6)
    unrefined, _ = group(heatmaps, tags, refine_joints=False)
    assert len(people) >= min(num_people, 5) and (unrefined[:, :, 2] == 0).sum() > (people[:, :, 2] == 0).sum()


@pytest.mark.parametrize("adjust", [True, False])
def test_grouping_options_match_the_official_restatement(official, adjust) -> None:
    heatmaps, tags = _scene(5, 25, 10, (80, 80), 2, False)
    params = GroupingParams(max_num_people=10, detection_threshold=0.2, tag_threshold=0.6,
                            use_detection_val=False, ignore_too_much=True)
    people, scores = group(heatmaps, tags, params, adjust_joints=adjust)
    reference, reference_scores = official.parse(heatmaps, tags, max_people=10, det_thr=0.2, adjust=adjust,
                                                 tag_thr=0.6, use_val=False, ignore_too_much=True)
    np.testing.assert_allclose(_as_rows(people, scores), _as_rows(np.array(reference), reference_scores),
                               rtol=0, atol=1e-6)



@pytest.mark.parametrize("layout", ["contiguous", "merge_outputs"])
@pytest.mark.parametrize("dim", [1, 2])
def test_refine_on_tied_maps_matches_the_official_restatement(official, layout, dim) -> None:
    """Refine's tile pruning is exact, ties included: heatmaps in steps of 1/8 and tags in steps of 1/2 (scores
    tie across many pixels, and the first in row-major order must win), maps of 37 x 45 (not whole tiles), tags
    stored as given or as :func:`merge_outputs` lays them out (a view of (J, D, H, W) memory); every person's
    filled joints equal the loop re-statement's."""
    rng = np.random.default_rng(dim)
    heatmaps = torch.from_numpy(rng.integers(-2, 9, (17, 37, 45)).astype(np.float32) / 8)
    planes = torch.from_numpy(rng.integers(-6, 7, (17, dim, 37, 45)).astype(np.float32) / 2)
    tags = planes.permute(0, 2, 3, 1) if layout == "merge_outputs" else planes.permute(0, 2, 3, 1).contiguous()
    people = np.zeros((12, 17, 3 + dim), np.float32)
    for person in people:
        found = rng.random(17) < 0.4
        found[rng.integers(17)] = True
        x, y = rng.integers(0, 45, 17), rng.integers(0, 37, 17)
        person[found, 0], person[found, 1], person[found, 2] = x[found], y[found], 0.5
    ours = refine(people, heatmaps.numpy(), tags.numpy())
    det, tag = heatmaps.numpy(), tags.contiguous().numpy()
    for mine, person in zip(ours, people):
        np.testing.assert_array_equal(mine[:, :3], official.fill_missing(person, det, tag)[:, :3])
    assert (ours[:, :, 2] > 0).sum() > (people[:, :, 2] > 0).sum()

def test_equal_first_tags_stay_two_people(official) -> None:
    """The one deviation: the official dict keyed by the first tag value merges two peaks with equal tags."""
    heatmaps = torch.zeros(17, 32, 32)
    heatmaps[0, 5, 5] = heatmaps[0, 20, 24] = 1.0
    tags = torch.full((17, 32, 32, 1), 0.7)
    people, _ = group(heatmaps, tags)
    assert sorted(people[:, 0, :2].tolist()) == [[5.25, 5.25], [24.25, 20.25]]
    assert len(official.parse(heatmaps, tags)[0]) == 1


def test_nms_and_top_k_are_the_official_max_pool_and_topk() -> None:
    rng = np.random.default_rng(0)
    heatmaps = rng.random((17, 40, 36)).astype(np.float32)
    heatmaps[0, 10:12, 10:12] = 2.0  # a plateau: all four pixels survive
    tags = rng.random((17, 40, 36, 2)).astype(np.float32)
    maps = torch.from_numpy(heatmaps)
    kept = maps * (F.max_pool2d(maps[None], 5, 1, 2)[0] == maps)
    np.testing.assert_array_equal(nms(heatmaps), kept.numpy())
    assert (nms(heatmaps)[0, 10:12, 10:12] == 2.0).all()
    values, index = kept.reshape(17, -1).topk(30, dim=1)
    tag_k, loc_k, val_k = top_k(heatmaps, tags)
    np.testing.assert_array_equal(val_k, values.numpy())
    np.testing.assert_array_equal(loc_k[1:], torch.stack((index % 36, index // 36), dim=2)[1:].numpy())
    np.testing.assert_array_equal(tag_k, np.take_along_axis(tags.reshape(17, -1, 2), loc_k[..., 1:] * 36
                                                            + loc_k[..., :1], axis=1))
    above = top_k(heatmaps, tags, threshold=0.9)
    keep = val_k > 0.9
    np.testing.assert_array_equal(above[2][keep], val_k[keep])
    assert np.isneginf(above[2][~keep]).all()


def test_group_takes_one_tag_map_per_joint_or_one_for_all() -> None:
    heatmaps, tags = _scene(6, 6, 0, (48, 48), 1, True)
    people, scores = group(heatmaps, tags[..., 0])
    assert people.shape[1:] == (17, 4) and scores.shape == (len(people),)
    shared, _ = group(heatmaps, tags[:1, ..., 0])
    assert shared.shape[1:] == (17, 4)


# ------------------------------------------------------------------------------ outputs and coordinates
def test_merge_outputs_of_a_flip_equivariant_network() -> None:
    """Outputs for the mirrored image that are the plain ones mirrored, joints swapped, merge to the plain
    ones: heatmaps unchanged, the second tag dimension equal to the first."""
    torch.manual_seed(0)
    joints, flip_index = 3, [0, 2, 1]
    low, high = torch.rand(1, 2 * joints, 8, 10), torch.rand(1, joints, 16, 20)
    mirrored = [low.flip(3)[:, flip_index + [joints + i for i in flip_index]], high.flip(3)[:, flip_index]]
    heatmaps, tags = merge_outputs([low, high], joints, mirrored, flip_index)
    up = F.interpolate(low, size=(16, 20), mode="bilinear", align_corners=False)
    torch.testing.assert_close(heatmaps, (up[:, :joints] + high) / 2)
    torch.testing.assert_close(tags[..., 0], up[:, joints:])
    torch.testing.assert_close(tags[..., 1], tags[..., 0])
    heatmaps, tags = merge_outputs([low, high], joints, size_hw=(32, 40))
    assert heatmaps.shape == (1, joints, 32, 40) and tags.shape == (1, joints, 32, 40, 1)


def test_to_image_inverts_the_official_resize() -> None:
    """A 640x480 image at input size 512 (official ``get_multi_scale_size``): resized to 704x512, center
    (320, 240), scale (704 / 512 * 480 / 200, 480 / 200) = (3.3, 2.4); half-resolution maps 352x256, so one map
    pixel is 3.3 * 200 / 352 = 1.875 image pixels around the map centre (176, 128)."""
    people = np.array([[[176.0, 128.0, 0.9], [0.0, 0.0, 0.5], [200.0, 100.0, 0.7]]])
    out = to_image(people, (320, 240), (3.3, 2.4), (352, 256))
    np.testing.assert_allclose(out, [[[320.0, 240.0, 0.9], [-10.0, 0.0, 0.5], [365.0, 187.5, 0.7]]], atol=1e-3)
    assert to_image(np.zeros((0, 17, 4)), (320, 240), (3.3, 2.4), (352, 256)).shape == (0, 17, 4)


# ------------------------------------------------------------------------------------------------ oracle
def test_oracle_maps_give_coco_ap_above_095(tmp_path) -> None:
    """Ground-truth heatmaps (Gaussians, sigma 2, at 1/4 of the image resolution) and perfect tags, decoded,
    grouped, mapped back and scored by pycocotools (at most 20 people an image: COCO keeps 20 detections)."""
    rng = np.random.default_rng(0)
    images, annotations, results = [], [], []
    for image_id, count in enumerate((3, 8, 14, 20), start=1):
        people, boxes = random_people(rng, count, 512, height=(128.0, 320.0), min_gap=16.0)
        joints = people.copy()
        joints[..., :2] /= 4
        heatmaps, tags = render_maps(joints, 128, np.arange(len(people)) * 2.0, rng, tag_dim=1, field_noise=0.0)
        found, scores = group(heatmaps, tags)
        keypoints = to_image(found[:, :, :3], (256, 256), (2.56, 2.56), (128, 128))
        results += to_coco_results({"image_id": image_id, "keypoints": k, "score": s}
                                   for k, s in zip(keypoints, scores))
        images.append({"id": image_id, "width": 512, "height": 512, "file_name": f"{image_id:012d}.jpg"})
        for person, box in zip(people, boxes):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": box.tolist(), "area": float(0.6 * box[2] * box[3]), "keypoints": person.reshape(-1).tolist(),
                "num_keypoints": int((person[:, 2] > 0).sum()),
            })
    categories = [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS.joint_names), "skeleton": []}]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                  "categories": categories}))
    (tmp_path / "results.json").write_text(json.dumps(results))
    stats = coco_keypoint_eval(tmp_path / "gt.json", tmp_path / "results.json")
    assert stats["AP"] >= 0.95, stats


# ------------------------------------------------------------------------------------------------ losses
def test_heatmap_loss_by_hand() -> None:
    pred = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]],
                         [[[0.5, 0.0]], [[0.0, 0.0]]]])  # (B=2, J=2, H=1, W=2)
    target = torch.tensor([[[[0.0, 0.0]], [[0.0, 1.0]]],
                           [[[0.0, 0.0]], [[1.0, 0.0]]]])
    mask = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # (B, H, W)
    # image 0: squared errors 1, 4 | 0, 4, masked to 1, 0 | 0, 0 -> mean 1 / 4
    # image 1: squared errors 0.25, 0 | 1, 0 -> mean 1.25 / 4
    torch.testing.assert_close(heatmap_loss(pred, target, mask), torch.tensor([0.25, 0.3125]))


def test_ae_loss_official_example_by_hand() -> None:
    """The official ``test_ae_loss`` input: tags 0.0 .. 3.1; person 0 at indices 3 and 22, person 1 at 10 and 30."""
    tags = (torch.arange(32, dtype=torch.float32) * 0.1).reshape(1, 2, 4, 4)
    joints = torch.tensor([[[[3, 1], [22, 1]], [[10, 1], [30, 1]]]])  # (B=1, M=2, J=2, 2)
    push, pull = ae_loss(tags, joints)
    # person 0: tags 0.3, 2.2, mean 1.25, pull (0.95^2 + 0.95^2) / 2 = 0.9025
    # person 1: tags 1.0, 3.0, mean 2.0, pull (1 + 1) / 2 = 1.0  ->  pull (0.9025 + 1.0) / 2 = 0.95125
    # push: 2 * exp(-(1.25 - 2.0)^2) off the diagonal / (1 * 2) * 0.5 = 0.5 * exp(-0.5625) = 0.284891
    torch.testing.assert_close(pull, torch.tensor([0.95125]))
    torch.testing.assert_close(push, torch.tensor([0.284891]), atol=1e-6, rtol=0)


def test_ae_loss_counts_only_visible_joints_and_people_by_hand() -> None:
    flat = torch.zeros(3, 12)
    flat[0, [0, 1, 2, 3, 4, 5, 6]] = torch.tensor([1.0, 3.0, 0.5, 4.0, 4.0, 4.0, 9.0])
    flat[1, [0, 1]] = torch.tensor([2.0, 6.0])
    tags = flat.reshape(3, 3, 2, 2).requires_grad_()
    joints = torch.zeros(3, 4, 3, 2, dtype=torch.long)
    joints[0, 0, :2] = torch.tensor([[0, 1], [1, 1]])  # A: tags 1, 3
    joints[0, 1, :2] = torch.tensor([[2, 1], [6, 0]])  # B: tag 0.5 (index 6 not visible)
    joints[0, 2] = torch.tensor([[3, 1], [4, 1], [5, 1]])  # C: tags 4, 4, 4
    joints[1, 0, :2] = torch.tensor([[0, 1], [1, 1]])  # one person: tags 2, 6
    joints[2, 0, 0] = torch.tensor([7, 0])  # nobody visible
    push, pull = ae_loss(tags, joints)
    # image 0: means 2, 0.5, 4; pulls 1, 0, 0 -> 1/3; push over the pairs (1.5, 2, 3.5 apart), each twice,
    # / (2 * 3) * 0.5 = (exp(-2.25) + exp(-4) + exp(-12.25)) / 6
    # image 1: mean 4, pull (4 + 4) / 2 = 4, push 0; image 2: both 0
    torch.testing.assert_close(pull, torch.tensor([1 / 3, 4.0, 0.0]))
    torch.testing.assert_close(push, torch.tensor([(0.105399 + 0.018316 + 0.0000048) / 6, 0.0, 0.0]),
                               atol=1e-6, rtol=0)
    (push.sum() + pull.sum()).backward()
    used = torch.zeros(3, 12, dtype=torch.bool)
    used[0, :6] = used[1, :2] = True
    assert (tags.grad.reshape(3, 12)[~used] == 0).all() and (tags.grad.reshape(3, 12)[used] != 0).all()
    assert math.isfinite(float((push.sum() + pull.sum()).detach()))
