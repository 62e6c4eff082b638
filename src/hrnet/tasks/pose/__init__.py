"""Top-down human pose (HRNetV1): COCO and MPII data, training, evaluation, prediction."""
