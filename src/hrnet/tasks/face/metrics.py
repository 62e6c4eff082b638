"""Face landmark metrics: normalised mean error (NME), failure rate and the area under the error curve.

The official evaluation (``lib/core/evaluation.py compute_nme``) scores an image by
``sum_k ||pred_k - gt_k|| / (norm * K)``, the mean point error over the normaliser. Its normaliser is
chosen by the landmark count: the outer eye corners (WFLW 98 points: 60, 72; 300W 68: 36, 45), COFW's
points 8 and 9 (29 points), and AFLW's per-image ``box_size`` (19 points). Here the normaliser is passed
explicitly: :func:`interocular_norm`, :func:`interpupil_norm` (eye-centre distance, the other common 300W
convention) or per-image box sizes, and :func:`normalizers` picks one from a keypoint set's ``extra``.

The official test loop reports the mean NME and the failure rates at 0.08 and 0.10 (``nme > t``, strict);
:func:`auc` adds the area under the cumulative error distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "auc",
    "failure_rate",
    "interocular_norm",
    "interpupil_norm",
    "nme",
    "normalizers",
    "subset_table",
    "summarize",
]

NORMALIZER_KINDS = ("interocular", "interpupil")


def _points(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(f"{name}: expected (N, K, 2) landmarks, got shape {arr.shape}")
    return arr


def _errors(nmes: Any) -> np.ndarray:
    arr = np.asarray(nmes, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"nmes: expected a 1-D array of per-image NMEs, got shape {arr.shape}")
    return arr


def nme(pred: Any, gt: Any, norm: Any) -> np.ndarray:
    """Per-image NME: (N, K, 2) predictions and ground truth, (N,) normalisers -> (N,) mean point error / norm.

    Equals the official ``sum(||pred - gt||) / (interocular * L)`` (``compute_nme``), computed here in
    float64 (the official in float32, from ``torch.Tensor`` landmarks: differences of ~1e-7 relative).
    """
    pred, gt = _points(pred, "pred"), _points(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred: expected the shape of gt {gt.shape}, got {pred.shape}")
    norm = np.asarray(norm, dtype=np.float64)
    if norm.shape != (len(gt),) or not np.all(np.isfinite(norm) & (norm > 0)):
        raise ValueError(f"norm: expected {len(gt)} positive finite values, got {norm!r}")
    return np.linalg.norm(pred - gt, axis=2).mean(axis=1) / norm


def interocular_norm(gt: Any, pair: Sequence[int]) -> np.ndarray:
    """(N, K, 2) ground truth -> (N,) distance between points ``pair = (a, b)`` (0-based; 300W: 36, 45)."""
    gt = _points(gt, "gt")
    a, b = pair
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=1)


def interpupil_norm(gt: Any, eyes: Sequence[Sequence[int]]) -> np.ndarray:
    """(N, K, 2) ground truth -> (N,) distance between the centroids of ``eyes = (left_ids, right_ids)``.

    300W: the six contour points of each eye, (36..41) and (42..47).
    """
    gt = _points(gt, "gt")
    left, right = (gt[:, list(ids)].mean(axis=1) for ids in eyes)
    return np.linalg.norm(left - right, axis=1)


def normalizers(gt: Any, extra: Mapping[str, Any], box_size: Any = None,
                kind: str = "interocular") -> np.ndarray:
    """(N, K, 2) ground truth -> (N,) normalisers as a keypoint set's ``extra`` describes them.

    ``extra["normalizer"] == "box_size"`` (AFLW, as the official) takes the per-image ``box_size``
    whatever ``kind`` is; otherwise ``kind`` picks ``extra["interocular"]`` (a point pair) or
    ``extra["pupils"]`` (two lists of eye points).
    """
    if kind not in NORMALIZER_KINDS:
        raise ValueError(f"kind: expected one of {NORMALIZER_KINDS}, got {kind!r}")
    if extra.get("normalizer") == "box_size":
        if box_size is None:
            raise ValueError("box_size: this keypoint set is normalised by the box size, which was not given")
        return np.asarray(box_size, dtype=np.float64).reshape(-1)
    key = "interocular" if kind == "interocular" else "pupils"
    if key not in extra:
        raise ValueError(f"extra: expected a {key!r} entry for the {kind} normaliser, got keys {sorted(extra)}")
    return interocular_norm(gt, extra[key]) if kind == "interocular" else interpupil_norm(gt, extra[key])


def failure_rate(nmes: Any, threshold: float) -> float:
    """Fraction of images with NME strictly above ``threshold`` (the official ``nme_temp > 0.08``)."""
    return float(np.mean(_errors(nmes) > threshold))


def auc(nmes: Any, limit: float = 0.10) -> float:
    """Area under the cumulative error distribution on [0, ``limit``], divided by ``limit`` (0..1).

    The exact integral of the empirical step CDF ``F(x) = mean(nme <= x)``: since
    ``int_0^limit 1[e <= x] dx = max(0, limit - e)``, it is ``mean(max(0, limit - nme)) / limit``.
    (Papers that integrate a sampled CDF with the trapezoid rule agree to about the grid step.)
    """
    if not limit > 0:
        raise ValueError(f"limit: expected a positive NME limit, got {limit}")
    return float(np.mean(np.maximum(0.0, limit - _errors(nmes))) / limit)


def summarize(nmes: Any) -> dict[str, float]:
    """(N,) per-image NMEs -> count, mean NME, failure rates at 0.08 / 0.10 and AUC to 0.08 / 0.10.

    An empty array gives count 0 and NaN for the rest.
    """
    errors = _errors(nmes)
    if errors.size == 0:
        return {"count": 0, **{k: float("nan") for k in ("nme", "fr_0.08", "fr_0.10", "auc_0.08", "auc_0.10")}}
    return {
        "count": int(errors.size),
        "nme": float(errors.mean()),
        "fr_0.08": failure_rate(errors, 0.08),
        "fr_0.10": failure_rate(errors, 0.10),
        "auc_0.08": auc(errors, 0.08),
        "auc_0.10": auc(errors, 0.10),
    }


def subset_table(nmes_by_subset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One :func:`summarize` row per subset, in the given order, each with its ``subset`` name.

    Subsets are passed whole (300W's ``full`` is common + challenging; WFLW's attribute subsets overlap).
    """
    return [{"subset": name, **summarize(errors)} for name, errors in nmes_by_subset.items()]
