"""Segmentation confusion-matrix metrics (against a brute-force count) and the segmentation losses."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrnet.tasks.segmentation.losses import CITYSCAPES_CLASS_WEIGHTS, CrossEntropy, OhemCrossEntropy
from hrnet.tasks.segmentation.metrics import ConfusionMatrix, confusion_matrix, metrics_from_confusion

IGNORE = 255


# ------------------------------------------------------------------------------------ brute force
def brute_matrix(preds: list[np.ndarray], targets: list[np.ndarray], c: int) -> np.ndarray:
    m = np.zeros((c, c), dtype=np.int64)
    for pred, target in zip(preds, targets):
        for p, t in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist()):
            if t == IGNORE:
                continue
            m[t, p] += 1
    return m


def brute_metrics(m: np.ndarray) -> dict[str, object]:
    c = m.shape[0]
    iou, acc, off_iou, off_acc = [], [], [], []
    for k in range(c):
        tp = m[k, k]
        gt = sum(m[k, j] for j in range(c))
        pr = sum(m[i, k] for i in range(c))
        union = gt + pr - tp
        iou.append(tp / union if union else math.nan)
        acc.append(tp / gt if gt else math.nan)
        off_iou.append(tp / max(1, union))
        off_acc.append(tp / max(1, gt))
    present = [v for v in iou if not math.isnan(v)]
    present_acc = [v for v in acc if not math.isnan(v)]
    return {
        "IoU": iou, "mIoU": sum(present) / len(present), "accuracy": acc,
        "mean_accuracy": sum(present_acc) / len(present_acc),
        "pixel_accuracy": sum(m[k, k] for k in range(c)) / m.sum(),
        "official_mIoU": sum(off_iou) / c, "official_mean_accuracy": sum(off_acc) / c,
    }


def random_batch(rng: np.random.Generator, c: int, absent: int | None = None, shape=(2, 7, 9)):
    target = rng.integers(0, c, size=shape)
    pred = rng.integers(0, c, size=shape)
    if absent is not None:  # class never in GT nor prediction
        target[target == absent] = (absent + 1) % c
        pred[pred == absent] = (absent + 2) % c
    target[rng.random(shape) < 0.2] = IGNORE
    return pred, target


def assert_metrics_close(got: dict, want: dict) -> None:
    for key in ("mIoU", "mean_accuracy", "pixel_accuracy", "official_mIoU", "official_mean_accuracy"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    for key in ("IoU", "accuracy"):
        np.testing.assert_allclose(np.array(got[key]), np.array(want[key]), rtol=1e-12, equal_nan=True)


# ------------------------------------------------------------------------------------------- tests
def test_matches_brute_force_with_ignore_and_absent_class():
    rng = np.random.default_rng(0)
    c = 5
    cm = ConfusionMatrix(c, ignore_index=IGNORE)
    preds, targets = [], []
    for i in range(3):  # multi-batch accumulation; class 3 absent everywhere
        pred, target = random_batch(rng, c, absent=3)
        preds.append(pred)
        targets.append(target)
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    want = brute_matrix(preds, targets, c)
    np.testing.assert_array_equal(cm.matrix.numpy(), want)
    got = cm.compute()
    assert math.isnan(got["IoU"][3]) and math.isnan(got["accuracy"][3])
    assert got["official_IoU"][3] == 0.0
    assert got["mIoU"] > got["official_mIoU"]  # the zero is averaged in officially
    assert_metrics_close(got, brute_metrics(want))


def test_class_absent_from_one_batch_only_counts_over_the_whole_evaluation():
    rng = np.random.default_rng(1)
    c = 4
    p1, t1 = random_batch(rng, c, absent=2)
    p2, t2 = random_batch(rng, c)
    cm = ConfusionMatrix(c)
    cm.update(torch.from_numpy(p1), torch.from_numpy(t1))
    assert math.isnan(cm.compute()["IoU"][2])
    cm.update(torch.from_numpy(p2), torch.from_numpy(t2))
    got = cm.compute()
    assert not any(math.isnan(v) for v in got["IoU"])
    assert got["mIoU"] == pytest.approx(got["official_mIoU"], rel=1e-12)
    # accumulating batch by batch == one concatenated batch
    one = confusion_matrix(torch.from_numpy(np.concatenate([p1, p2])), torch.from_numpy(np.concatenate([t1, t2])), c)
    assert torch.equal(one, cm.matrix)
    assert_metrics_close(got, brute_metrics(brute_matrix([p1, p2], [t1, t2], c)))


def test_hand_computed_tiny_example():
    # GT:   0 0 1 | 2 255 1      pred: 0 1 1 | 2 0 0
    target = torch.tensor([[[0, 0, 1], [2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1], [2, 0, 0]]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    # rows GT, cols pred: class 0: (0->0), (0->1); class 1: (1->1), (1->0); class 2: (2->2)
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    r = cm.compute()
    # IoU0 = 1 / (2 + 2 - 1) = 1/3, IoU1 = 1/3, IoU2 = 1, class 3 absent -> NaN
    assert r["IoU"][:3] == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert math.isnan(r["IoU"][3])
    assert r["mIoU"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert r["official_mIoU"] == pytest.approx((1 / 3 + 1 / 3 + 1 + 0) / 4)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)
    assert r["accuracy"][:3] == pytest.approx([0.5, 0.5, 1.0])
    assert r["mean_accuracy"] == pytest.approx(2 / 3)
    assert r["official_mean_accuracy"] == pytest.approx(2 / 4)
    cm.reset()
    assert int(cm.matrix.sum()) == 0
    empty = cm.compute()
    assert math.isnan(empty["mIoU"]) and math.isnan(empty["pixel_accuracy"]) and empty["official_mIoU"] == 0.0


def test_invalid_values_raise_naming_the_value():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError, match="target contains class 7"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 7], [255, 1]]]))
    with pytest.raises(ValueError, match="target contains class -1"):
        cm.update(torch.zeros(1, 1, 2, dtype=torch.long), torch.tensor([[[0, -1]]]))
    with pytest.raises(ValueError, match="prediction contains class 3"):
        cm.update(torch.tensor([[[3, 0]]]), torch.tensor([[[0, 0]]]))
    cm.update(torch.tensor([[[9, 0]]]), torch.tensor([[[255, 0]]]))  # ignored pixel: any prediction
    with pytest.raises(ValueError, match="same shape"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(TypeError):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    cm_neg = ConfusionMatrix(3, ignore_index=-1)  # official default ignore label
    cm_neg.update(torch.tensor([[[1, 2]]]), torch.tensor([[[-1, 2]]]))
    assert int(cm_neg.matrix.sum()) == 1 and int(cm_neg.matrix[2, 2]) == 1


def test_uint8_targets_and_all_reduce_without_process_group():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[[1, 0]]], dtype=torch.int32), torch.tensor([[[1, 255]]], dtype=torch.uint8))
    before = cm.matrix.clone()
    cm.all_reduce()  # no process group: no-op
    assert torch.equal(before, cm.matrix) and cm.matrix.tolist() == [[0, 0], [0, 1]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(2)
    pred, target = random_batch(rng, 6, shape=(2, 33, 41))
    a, b = ConfusionMatrix(6), ConfusionMatrix(6)
    a.update(torch.from_numpy(pred), torch.from_numpy(target))
    b.update(torch.from_numpy(pred).cuda(), torch.from_numpy(target).cuda())
    assert b.matrix.device.type == "cuda"
    assert torch.equal(a.matrix, b.matrix.cpu())


def _dist_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cm = ConfusionMatrix(3)
    if rank == 0:
        cm.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    else:
        cm.update(torch.tensor([[[2, 2, 0]]]), torch.tensor([[[2, 1, 255]]]))
    cm.all_reduce()
    torch.save(cm.matrix, os.path.join(out_dir, f"m{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.skipif(sys.platform == "win32", reason="file:// rendezvous")
def test_all_reduce_sums_over_ranks(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    want = [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    for rank in range(2):
        assert torch.load(tmp_path / f"m{rank}.pt").tolist() == want


# ------------------------------------------------------------------------------------------ losses
def official_ohem_reference(score, target, thresh, min_kept, weight=None, ignore=IGNORE):
    """The official algorithm written out literally (sort, index, strict threshold)."""
    score = F.interpolate(score, size=target.shape[-2:], mode="bilinear", align_corners=False)
    pixel = F.cross_entropy(score, target, weight=weight, ignore_index=ignore, reduction="none").view(-1)
    mask = target.view(-1) != ignore
    t = target.clone()
    t[t == ignore] = 0
    pred = F.softmax(score, 1).gather(1, t.unsqueeze(1)).view(-1)[mask]
    pred, ind = pred.sort()
    threshold = max(float(pred[min(min_kept, pred.numel() - 1)]), thresh)
    return pixel[mask][ind][pred < threshold].mean()


def seg_batch(seed: int, c: int = 4, b: int = 2, hw=(16, 20)):
    g = torch.Generator().manual_seed(seed)
    score = torch.randn(b, c, hw[0] // 4, hw[1] // 4, generator=g) * 2
    target = torch.randint(0, c, (b, *hw), generator=g)
    target[torch.rand(b, *hw, generator=g) < 0.15] = IGNORE
    return score, target


def test_cross_entropy_upsamples_and_weights_like_official():
    score, target = seg_batch(0)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5])
    up = F.interpolate(score, size=target.shape[-2:], mode="bilinear", align_corners=False)
    want = F.cross_entropy(up, target, weight=w, ignore_index=IGNORE)
    assert torch.allclose(CrossEntropy(weight=w)(score, target), want, atol=1e-6)
    up_ac = F.interpolate(score, size=target.shape[-2:], mode="bilinear", align_corners=True)
    want_ac = F.cross_entropy(up_ac, target, ignore_index=IGNORE)
    assert torch.allclose(CrossEntropy(align_corners=True)(score, target), want_ac, atol=1e-6)
    # list outputs with balance weights (OCR: [0.4, 1])
    aux, _ = seg_batch(1)
    ce = CrossEntropy(balance_weights=[0.4, 1.0])
    want_list = 0.4 * CrossEntropy()(aux, target) + CrossEntropy()(score, target)
    assert torch.allclose(ce([aux, score], target), want_list, atol=1e-6)
    with pytest.raises(ValueError, match="balance_weights"):
        CrossEntropy()([aux, score], target)
    with pytest.raises(ValueError, match="2 outputs"):
        CrossEntropy(balance_weights=[1.0])([aux, score], target)


@pytest.mark.parametrize("thresh,min_kept", [(0.7, 10), (0.9, 100), (0.05, 37), (0.7, 100000), (0.99, 1)])
def test_ohem_matches_official_algorithm(thresh, min_kept):
    score, target = seg_batch(3)
    w = torch.tensor(CITYSCAPES_CLASS_WEIGHTS[:4])
    for weight in (None, w):
        got = OhemCrossEntropy(thresh=thresh, min_kept=min_kept, weight=weight)(score, target)
        want = official_ohem_reference(score, target, thresh, min_kept, weight)
        assert torch.allclose(got, want, atol=1e-6), (thresh, min_kept, got, want)


def test_ohem_keeps_low_confidence_pixels_and_at_least_min_kept_hardest():
    score, target = seg_batch(4)
    up = F.interpolate(score, size=target.shape[-2:], mode="bilinear", align_corners=False)
    valid = target != IGNORE
    p = up.softmax(1).gather(1, target.clamp(max=3).unsqueeze(1))[:, 0][valid]
    nll = F.cross_entropy(up, target, ignore_index=IGNORE, reduction="none")[valid]
    # min_kept small: exactly the pixels with p < thresh
    loss = OhemCrossEntropy(thresh=0.5, min_kept=1)(score, target)
    assert torch.allclose(loss, nll[p < 0.5].mean(), atol=1e-6)
    # thresh tiny: the min_kept hardest pixels (probabilities are distinct)
    k = 25
    loss = OhemCrossEntropy(thresh=1e-9, min_kept=k)(score, target)
    hardest = p.argsort()[:k]
    assert torch.allclose(loss, nll[hardest].mean(), atol=1e-6)


def test_ohem_list_outputs_only_last_is_mined_and_edge_cases():
    score, target = seg_batch(5)
    aux, _ = seg_batch(6)
    w = torch.tensor([1.0, 0.8, 1.2, 1.1])
    ohem = OhemCrossEntropy(thresh=0.7, min_kept=20, weight=w, balance_weights=[0.4, 1.0])
    want = 0.4 * CrossEntropy(weight=w)(aux, target) + official_ohem_reference(score, target, 0.7, 20, w)
    assert torch.allclose(ohem([aux, score], target), want, atol=1e-6)
    # everything ignored: a zero loss that still backpropagates (official: NaN / IndexError)
    s = score.clone().requires_grad_(True)
    all_ignored = torch.full_like(target, IGNORE)
    for loss_fn in (CrossEntropy(), OhemCrossEntropy()):
        loss = loss_fn(s, all_ignored)
        assert float(loss) == 0.0
        loss.backward()
    # gradients flow to the logits
    s.grad = None
    OhemCrossEntropy(min_kept=10)(s, target).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0
    # uint8 labels and bf16 (AMP) logits are accepted; the loss is computed in float32
    ref = OhemCrossEntropy(min_kept=10)(score, target)
    got = OhemCrossEntropy(min_kept=10)(score.bfloat16(), target.to(torch.uint8))
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=0.05)
    assert torch.allclose(CrossEntropy()(score, target.to(torch.uint8)), CrossEntropy()(score, target))
    # the weight buffer follows .to() / state is not saved
    assert "weight" not in ohem.state_dict()


def test_cityscapes_class_weights():
    assert len(CITYSCAPES_CLASS_WEIGHTS) == 19
    assert CITYSCAPES_CLASS_WEIGHTS[0] == 0.8373 and CITYSCAPES_CLASS_WEIGHTS[-1] == 1.0507
    assert sum(CITYSCAPES_CLASS_WEIGHTS) == pytest.approx(19.0, abs=0.01)


def test_brute_metrics_helper_agrees_with_module_function():
    m = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    got = metrics_from_confusion(m)
    assert_metrics_close(got, brute_metrics(m.numpy()))
