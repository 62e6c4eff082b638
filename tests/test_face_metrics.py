"""Face metrics: NME, normalisers, failure rate and AUC against hand-computed values and the official
``compute_nme`` (``lib/core/evaluation.py``), restated here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hrnet.tasks.face.metrics import (
    auc,
    failure_rate,
    interocular_norm,
    interpupil_norm,
    nme,
    normalizers,
    subset_table,
    summarize,
)

EXTRA_300W = {"interocular": (36, 45), "pupils": (tuple(range(36, 42)), tuple(range(42, 48)))}


def _ref_compute_nme(preds, meta):
    """``compute_nme`` restated: float32 torch inputs, the normaliser picked by the landmark count."""
    preds, target = preds.numpy(), meta["pts"].cpu().numpy()
    n, num = preds.shape[0], preds.shape[1]
    rmse = np.zeros(n)
    for i in range(n):
        pts_pred, pts_gt = preds[i], target[i]
        if num == 19:
            interocular = meta["box_size"][i]
        else:
            a, b = {29: (8, 9), 68: (36, 45), 98: (60, 72)}[num]
            interocular = np.linalg.norm(pts_gt[a] - pts_gt[b])
        rmse[i] = np.sum(np.linalg.norm(pts_pred - pts_gt, axis=1)) / (interocular * num)
    return rmse


def _eyes_68() -> np.ndarray:
    """A 68-point face, all zero but the eyes: six points round (30, 50) and (70, 50).

    Left eye 36..41: (20, 50) (25, 46) (35, 46) (40, 50) (35, 54) (25, 54) -> centroid (180/6, 300/6) = (30, 50);
    right eye 42..47 the same shifted by +40 in x -> (70, 50). Outer corners 36 = (20, 50), 45 = (80, 50).
    """
    left = np.array([[20, 50], [25, 46], [35, 46], [40, 50], [35, 54], [25, 54]], dtype=np.float64)
    right = np.array([[60, 50], [65, 46], [75, 46], [80, 50], [75, 54], [65, 54]], dtype=np.float64)
    pts = np.zeros((68, 2))
    pts[36:42], pts[42:48] = left, right
    return pts


# ---------------------------------------------------------------------------------- NME
def test_nme_by_hand():
    gt = np.array([[[0, 0], [10, 0], [0, 10]]] * 2, dtype=np.float64)
    pred = gt + np.array([[[3, 4], [0, 0], [0, -5]],  # distances 5, 0, 5: mean 10/3, norm 10 -> 1/3
                          [[1, 0], [0, 2], [0, 0]]])  # distances 1, 2, 0: mean 1, norm 4 -> 1/4
    np.testing.assert_allclose(nme(pred, gt, [10.0, 4.0]), [1 / 3, 1 / 4])


@pytest.mark.parametrize("num", [19, 29, 68, 98])
def test_nme_matches_official_compute_nme(num):
    rng = np.random.default_rng(num)
    gt = rng.uniform(50, 250, size=(5, num, 2))
    pred = gt + rng.normal(0, 4, size=gt.shape)
    box = rng.uniform(150, 250, size=5)
    meta = {"pts": torch.Tensor(gt), "box_size": torch.tensor(box)}
    ref = _ref_compute_nme(torch.Tensor(pred), meta)
    if num == 19:
        norm = box
    else:
        norm = interocular_norm(gt, {29: (8, 9), 68: (36, 45), 98: (60, 72)}[num])
    np.testing.assert_allclose(nme(pred, gt, norm), ref, rtol=2e-6)  # the official works in float32


def test_interocular_vs_interpupil_on_68_points():
    gt = np.stack([_eyes_68(), 2 * _eyes_68()])  # the second face twice as large
    pred = gt + np.array([3.0, 4.0])  # every point off by 5 px
    np.testing.assert_allclose(interocular_norm(gt, (36, 45)), [60, 120])  # |(80, 50) - (20, 50)|
    np.testing.assert_allclose(interpupil_norm(gt, EXTRA_300W["pupils"]), [40, 80])  # |(70, 50) - (30, 50)|
    np.testing.assert_allclose(nme(pred, gt, normalizers(gt, EXTRA_300W)), [5 / 60, 5 / 120])
    np.testing.assert_allclose(nme(pred, gt, normalizers(gt, EXTRA_300W, kind="interpupil")), [5 / 40, 5 / 80])


def test_normalizers_from_extra():
    gt = np.stack([_eyes_68()])
    # AFLW: the box size, whatever kind is asked for
    np.testing.assert_array_equal(normalizers(gt, {"normalizer": "box_size"}, [180.0], "interpupil"), [180.0])
    with pytest.raises(ValueError, match="box_size"):
        normalizers(gt, {"normalizer": "box_size"})
    with pytest.raises(ValueError, match="pupils"):
        normalizers(gt, {"interocular": (36, 45)}, kind="interpupil")
    with pytest.raises(ValueError, match="kind"):
        normalizers(gt, EXTRA_300W, kind="pupil")


def test_nme_checks_its_arguments():
    gt = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match="pred"):
        nme(np.zeros((2, 4, 2)), gt, [1.0, 1.0])
    with pytest.raises(ValueError, match="norm"):
        nme(gt, gt, [1.0, 0.0])
    with pytest.raises(ValueError, match="gt"):
        nme(gt, gt[0], [1.0])


# ------------------------------------------------------------------------ failure rate, AUC
NMES = np.array([0.05, 0.08, 0.09, 0.12])


def test_failure_rate_by_hand():
    assert failure_rate(NMES, 0.08) == 0.5  # 0.09 and 0.12; 0.08 itself is not above 0.08
    assert failure_rate(NMES, 0.10) == 0.25  # 0.12


def test_auc_by_hand():
    # mean(max(0, 0.10 - e)) / 0.10 = (0.05 + 0.02 + 0.01 + 0) / 4 / 0.10 = 0.2
    assert auc(NMES, 0.10) == pytest.approx(0.2)
    # to 0.08: (0.03 + 0 + 0 + 0) / 4 / 0.08 = 0.09375
    assert auc(NMES, 0.08) == pytest.approx(0.09375)
    assert auc([0.0], 0.1) == 1.0 and auc([0.5], 0.1) == 0.0
    with pytest.raises(ValueError, match="limit"):
        auc(NMES, 0.0)


def test_auc_is_the_integral_of_the_step_cdf():
    errors = np.random.default_rng(3).gamma(4.0, 0.012, size=200)
    grid = np.linspace(0.0, 0.10, 200_001)
    cdf = (errors[None, :] <= grid[:, None]).mean(axis=1)
    area = np.sum((cdf[1:] + cdf[:-1]) / 2 * np.diff(grid)) / 0.10
    assert auc(errors, 0.10) == pytest.approx(area, abs=1e-5)


def test_summarize_and_subset_table():
    s = summarize(NMES)
    assert s["count"] == 4 and s["nme"] == pytest.approx(0.085)  # 0.34 / 4
    assert (s["fr_0.08"], s["fr_0.10"]) == (0.5, 0.25)
    assert s["auc_0.08"] == pytest.approx(0.09375) and s["auc_0.10"] == pytest.approx(0.2)
    empty = summarize(np.array([]))
    assert empty["count"] == 0 and math.isnan(empty["nme"])
    table = subset_table({"common": NMES[:2], "challenging": NMES[2:], "full": NMES})
    assert [row["subset"] for row in table] == ["common", "challenging", "full"]
    assert table[0]["nme"] == pytest.approx(0.065) and table[1]["fr_0.10"] == 0.5
    assert table[2] == {"subset": "full", **s}
