"""Evaluation metrics."""

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
