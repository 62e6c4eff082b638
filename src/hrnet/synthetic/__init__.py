"""Synthetic datasets written in real on-disk formats (COCO keypoints, Cityscapes), for demos and tests."""
