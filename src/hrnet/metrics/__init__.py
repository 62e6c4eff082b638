"""Evaluation metrics."""

from .segmentation import ConfusionMatrix, confusion_matrix, metrics_from_confusion
from .keypoints import (
    COCO_STAT_NAMES,
    coco_keypoint_eval,
    headsize_from_boxes,
    oks,
    oks_nms,
    pckh,
    rescore,
    rescore_and_nms,
    to_coco_results,
)

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "metrics_from_confusion",
    "COCO_STAT_NAMES",
    "coco_keypoint_eval",
    "headsize_from_boxes",
    "oks",
    "oks_nms",
    "pckh",
    "rescore",
    "rescore_and_nms",
    "to_coco_results",
]
