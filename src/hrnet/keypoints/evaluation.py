"""Keypoint evaluation: OKS, OKS-NMS with rescoring, COCO AP/AR (MPII PCKh: :mod:`hrnet.tasks.pose.mpii`).

* :func:`oks` is COCO's object keypoint similarity (the formula of ``COCOeval.computeOks``).
* :func:`rescore` + :func:`oks_nms` (or both via :func:`rescore_and_nms`) reproduce the official
  HRNet test pipeline (``COCODataset.evaluate`` and ``nms.oks_nms``).
* :func:`coco_keypoint_eval` runs stock ``pycocotools`` ``COCOeval(gt, dt, "keypoints")``;
  :func:`crowd_keypoint_eval` the CrowdPose benchmark (``xtcocotools``, ``"keypoints_crowd"``).

An *instance* is a dict with ``image_id`` (int), ``keypoints`` ((K, 3) array of x, y, confidence in
original-image pixels), ``score`` (detection box score before rescoring) and ``area`` (the official
code uses the enlarged crop box area ``prod(scale * 200)``). Extra keys are carried along.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "COCO_STAT_NAMES",
    "CROWD_STAT_NAMES",
    "XTCOCOTOOLS_FROM_SOURCE",
    "coco_keypoint_eval",
    "crowd_keypoint_eval",
    "oks",
    "oks_nms",
    "require_xtcocotools",
    "rescore",
    "rescore_and_nms",
    "to_coco_results",
]

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
CROWD_STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
"""The stats of xtcocotools' ``keypoints_crowd`` summary, in order (easy / medium / hard: by crowd index)."""

# pycocotools' stock Params.kpt_oks_sigmas, written the same way so the values are bit-identical.
_PYCOCOTOOLS_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                                1.07, 1.07, .87, .87, .89, .89]) / 10.0


# ---------------------------------------------------------------------------------------------- OKS
def oks(gt: Any, dt: Any, area: Any, sigmas: Sequence[float] | None = None,
        vis_thr: float | None = 0.0) -> Any:
    """Object keypoint similarity of detection(s) ``dt`` against ``gt``.

    ``OKS = mean_j exp(-d_j^2 / (2 * area * (2 * sigma_j)^2))`` over joints with ``gt[j, 2] > vis_thr``
    (COCO: labelled joints, ``v > 0``); ``vis_thr=None`` averages over all joints (what the official
    OKS-NMS does). ``area`` is the object scale ``s^2`` (COCO: the GT's area), a scalar or one value per
    detection; ``np.spacing(1)`` is added as in pycocotools.

    Args:
        gt: (K, 3) x, y, visibility (or (K, 2) with ``vis_thr=None``).
        dt: (K, 2+) or (M, K, 2+).
        sigmas: per-joint falloff, default COCO's.
    Returns:
        a float for a single ``dt``, else an (M,) array. 0 when no joint qualifies.
    """
    g = np.asarray(gt, dtype=np.float64)
    d = np.asarray(dt, dtype=np.float64)
    single = d.ndim == 2
    if single:
        d = d[None]
    k = g.shape[0]
    s = _PYCOCOTOOLS_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    if s.shape[0] != k or d.shape[1] != k:
        raise ValueError(f"oks: gt has {k} joints, dt {d.shape[1]}, sigmas {s.shape[0]}")
    variances = (s * 2) ** 2
    a = np.broadcast_to(np.asarray(area, dtype=np.float64), (d.shape[0],))
    sq = (d[..., 0] - g[None, :, 0]) ** 2 + (d[..., 1] - g[None, :, 1]) ** 2
    e = sq / variances[None] / (a[:, None] + np.spacing(1)) / 2
    mask = np.ones(k, dtype=bool) if vis_thr is None else g[:, 2] > vis_thr
    if mask.sum() == 0:
        out = np.zeros(d.shape[0])
    else:
        out = np.exp(-e[:, mask]).mean(axis=1)
    return float(out[0]) if single else out


# ------------------------------------------------------------------------------------ rescore / NMS
def _kpts(inst: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(inst["keypoints"], dtype=np.float64).reshape(-1, 3)


def rescore(instances: Iterable[Mapping[str, Any]], in_vis_thre: float = 0.2) -> list[dict[str, Any]]:
    """Official rescoring: ``score = box_score * mean(conf_j for conf_j > in_vis_thre)``.

    A person with no joint above the threshold gets score 0 (official: ``kpt_score`` stays 0).
    Returns copies; the original box score is kept under ``box_score``.
    """
    out = []
    for inst in instances:
        new = dict(inst)
        conf = _kpts(inst)[:, 2]
        valid = conf > in_vis_thre
        kpt_score = float(conf[valid].mean()) if valid.any() else 0.0
        new["box_score"] = float(inst["score"])
        new["score"] = kpt_score * float(inst["score"])
        out.append(new)
    return out


def oks_nms(instances: Sequence[Mapping[str, Any]], sigmas: Sequence[float] | None = None,
            threshold: float = 0.9, vis_thr: float | None = None) -> list[int]:
    """Greedy OKS-NMS of one image's instances, as the official ``nms.oks_nms``.

    Visits instances by descending ``score``, keeps the best and drops every remaining one whose OKS
    with it is ``> threshold``. The pairwise OKS uses the mean of the two ``area`` values and, with
    ``vis_thr=None`` (official call), all joints. Returns kept indices in score order. Ties are visited
    as ``np.argsort(scores)[::-1]`` (later index first), like the official code on small inputs.
    """
    if len(instances) == 0:
        return []
    scores = np.array([float(i["score"]) for i in instances])
    kpts = np.stack([_kpts(i) for i in instances])
    areas = np.array([float(i["area"]) for i in instances])
    order = np.argsort(scores, kind="stable")[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        pair_area = (areas[i] + areas[rest]) / 2
        if vis_thr is None:
            ovr = oks(kpts[i], kpts[rest], pair_area, sigmas, vis_thr=None)
        else:  # official oks_iou then masks by the *other* instance's confidences
            ref = kpts[i].copy()
            ovr = np.empty(rest.size)
            for n, r in enumerate(rest):
                ref[:, 2] = kpts[r, :, 2]
                ovr[n] = oks(ref, kpts[r], pair_area[n], sigmas, vis_thr=vis_thr)
        order = rest[ovr <= threshold]
    return keep


def rescore_and_nms(instances: Iterable[Mapping[str, Any]], sigmas: Sequence[float] | None = None,
                    in_vis_thre: float = 0.2, oks_thre: float = 0.9) -> list[dict[str, Any]]:
    """Official test post-processing: group by ``image_id``, :func:`rescore`, :func:`oks_nms`.

    Defaults are the official COCO test config (``IN_VIS_THRE 0.2``, ``OKS_THRE 0.9``).
    """
    per_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for inst in rescore(instances, in_vis_thre):
        per_image[inst["image_id"]].append(inst)
    kept: list[dict[str, Any]] = []
    for insts in per_image.values():
        kept.extend(insts[k] for k in oks_nms(insts, sigmas, oks_thre))
    return kept


# ------------------------------------------------------------------------------------------- COCO
def to_coco_results(instances: Iterable[Mapping[str, Any]], category_id: int = 1) -> list[dict[str, Any]]:
    """COCO keypoint results: ``{image_id, category_id, keypoints: [x, y, score] * K, score}``."""
    results = []
    for inst in instances:
        results.append({
            "image_id": int(inst["image_id"]),
            "category_id": int(category_id),
            "keypoints": [float(v) for v in _kpts(inst).reshape(-1)],
            "score": float(inst["score"]),
        })
    return results


def coco_keypoint_eval(coco_gt: Any, results: Sequence[Mapping[str, Any]] | str | Path,
                       sigmas: Sequence[float] | None = None) -> dict[str, float]:
    """Stock ``pycocotools`` keypoint evaluation; returns ``{AP, AP50, AP75, APm, APl, AR, ...}``.

    Args:
        coco_gt: a ``pycocotools.coco.COCO`` (or a path to the GT json).
        results: COCO results (see :func:`to_coco_results`) or a path to such a json file.
        sigmas: per-joint OKS sigmas (``KeypointSpec.sigmas``) for custom keypoint sets; ``None`` or
            values equal to COCO's keep pycocotools' own array, so stock numbers are reproduced exactly.

    With no results, logs a warning and returns all zeros. As in pycocotools, a stat whose area range
    has no ground truth is ``-1``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(coco_gt, (str, Path)):
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(str(coco_gt))
    if isinstance(results, (str, Path)):
        with open(results) as f:
            results = json.load(f)
    if not results:
        logger.warning("coco_keypoint_eval: no keypoint results to evaluate; reporting all metrics as 0")
        return {name: 0.0 for name in COCO_STAT_NAMES}
    results = copy.deepcopy(list(results))  # loadRes adds area/id/bbox: leave the caller's dicts alone

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, "keypoints")
        if sigmas is not None:
            s = np.asarray(sigmas, dtype=np.float64)
            stock = coco_eval.params.kpt_oks_sigmas
            if not (s.shape == stock.shape and np.allclose(s, stock, rtol=0, atol=1e-12)):
                coco_eval.params.kpt_oks_sigmas = s
        k = len(coco_eval.params.kpt_oks_sigmas)
        k_res = len(results[0]["keypoints"]) // 3
        if k_res != k:
            raise ValueError(f"results have {k_res} keypoints but OKS sigmas have {k}; pass sigmas=")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.info("COCO keypoint evaluation:\n%s", buf.getvalue())
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, coco_eval.stats)}


XTCOCOTOOLS_FROM_SOURCE = ("pip install cython && pip install --no-build-isolation --no-binary xtcocotools "
                           "--force-reinstall --no-deps xtcocotools")
"""How to build xtcocotools against the installed numpy (its PyPI wheel is built against numpy 1)."""


def require_xtcocotools() -> None:
    """A one-line ``ValueError`` unless ``xtcocotools`` (the CrowdPose evaluation) imports.

    Not installed: how to install it. Installed but not importable, as the PyPI wheel (built against numpy 1)
    is under numpy 2 (``ValueError: numpy.dtype size changed, may indicate binary incompatibility``): how to
    build it from source against the installed numpy (:data:`XTCOCOTOOLS_FROM_SOURCE`).
    """
    try:
        importlib.import_module("xtcocotools.cocoeval")  # imports the compiled xtcocotools._mask
    except (ImportError, ValueError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, ImportError) and importlib.util.find_spec("xtcocotools") is None:
            if int(np.__version__.split(".")[0]) >= 2:
                raise ValueError("CrowdPose keypoint evaluation (keypoints_crowd) needs xtcocotools, built from "
                                 f"source under numpy {np.__version__} (its PyPI wheel is built against numpy 1): "
                                 f"{XTCOCOTOOLS_FROM_SOURCE}") from exc
            raise ValueError("CrowdPose keypoint evaluation (keypoints_crowd) needs xtcocotools: "
                             "pip install xtcocotools") from exc
        raise ValueError(f"xtcocotools is installed but does not import with numpy {np.__version__} "
                         f"({type(exc).__name__}: {first_line}); the PyPI wheel is built against numpy 1, "
                         f"build it from source: {XTCOCOTOOLS_FROM_SOURCE}") from exc


def crowd_keypoint_eval(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], sigmas: Sequence[float] | None,
                        where: str = "ground truth") -> dict[str, float]:
    """The CrowdPose benchmark: ``xtcocotools`` ``COCOeval(gt, dt, "keypoints_crowd", sigmas, use_area=False)``
    (the official HigherHRNet uses crowdposetools, the same protocol); returns :data:`CROWD_STAT_NAMES`.

    ``gt`` is the COCO-format dict; its images need CrowdPose's ``crowdIndex``. AP easy / medium / hard are the
    AP over the images of each difficulty, split as xtcocotools' ``get_type_result(first=0.2, second=0.8)``:
    easy ``crowdIndex < 0.2``, medium ``0.2 <= crowdIndex < 0.8``, hard ``crowdIndex >= 0.8``; a difficulty
    without images reports -1. xtcocotools reads the split from the ground-truth file, so ``gt`` is written to a
    temporary JSON file. With no results, logs a warning and returns all zeros.
    """
    require_xtcocotools()
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    if sigmas is None:
        raise ValueError(f"{where}: CrowdPose evaluation needs the keypoint set's OKS sigmas")
    missing = next((img.get("id") for img in gt["images"] if "crowdIndex" not in img), None)
    if missing is not None:
        raise ValueError(f"{where}: image id {missing} has no 'crowdIndex' (CrowdPose evaluation sorts images by it)")
    if not results:
        logger.warning("crowd_keypoint_eval: no keypoint results to evaluate; reporting all metrics as 0")
        return {name: 0.0 for name in CROWD_STAT_NAMES}
    buf = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="hrnet_crowdpose_") as tmp, contextlib.redirect_stdout(buf):
        gt_file = str(Path(tmp) / "ground_truth.json")
        with open(gt_file, "w") as f:
            json.dump(dict(gt), f)
        # COCO(path) records the path; get_type_result re-reads that file for the images' crowdIndex.
        coco_gt = COCO(gt_file)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(list(results))), "keypoints_crowd",
                             np.asarray(sigmas, dtype=np.float64), use_area=False)
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.info("CrowdPose keypoint evaluation:\n%s", buf.getvalue())
    return {name: float(v) for name, v in zip(CROWD_STAT_NAMES, coco_eval.stats)}
