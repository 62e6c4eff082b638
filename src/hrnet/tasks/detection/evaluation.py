"""COCO box and mask AP with pycocotools: detections -> COCO results -> ``COCOeval`` (``bbox``, ``segm``)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""The twelve numbers ``COCOeval.summarize`` prints for ``bbox`` and ``segm``, in its order."""


def to_coco_results(detections: Sequence[Mapping[str, Any]], category_ids: Sequence[int],
                    mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """Per-image detections (``image_id``; ``boxes`` (N, 4) x1, y1, x2, y2; ``scores``; ``labels`` 1..K; optional
    ``masks`` (N, 1, H, W) probabilities) -> COCO results: ``bbox`` as x, y, w, h, ``category_id`` mapped back
    through ``category_ids`` (label ``k`` is ``category_ids[k - 1]``), ``segmentation`` an RLE of
    ``mask >= mask_threshold`` (torchvision's paste and mmdetection both binarise at 0.5)."""
    from pycocotools import mask as mask_utils

    results = []
    for det in detections:
        boxes, scores, labels = (_numpy(det[k]) for k in ("boxes", "scores", "labels"))
        masks = _numpy(det["masks"]) if "masks" in det else None
        for i in range(len(scores)):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            result = {"image_id": int(det["image_id"]), "category_id": int(category_ids[int(labels[i]) - 1]),
                      "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[i])}
            if masks is not None:
                binary = np.asfortranarray((masks[i, 0] >= mask_threshold).astype(np.uint8))
                rle = mask_utils.encode(binary)
                rle["counts"] = rle["counts"].decode("ascii")
                result["segmentation"] = rle
            results.append(result)
    return results


def _numpy(value: Any) -> np.ndarray:
    return value.detach().float().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def coco_instance_eval(coco_gt: Any, results: Sequence[Mapping[str, Any]], iou_type: str) -> dict[str, float]:
    """Stock ``COCOeval`` for ``iou_type`` ``"bbox"`` or ``"segm"`` over the images of ``coco_gt``: the
    :data:`STAT_NAMES` stats. With no results every stat is 0 (pycocotools cannot load an empty list); as in
    pycocotools, a stat whose area range has no ground truth is -1."""
    from pycocotools.cocoeval import COCOeval

    if not results:
        log.warning("no %s results to evaluate; reporting all metrics as 0", iou_type)
        return {name: 0.0 for name in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))  # loadRes writes into the dicts
        evaluation = COCOeval(coco_gt, coco_dt, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluation.stats)}
