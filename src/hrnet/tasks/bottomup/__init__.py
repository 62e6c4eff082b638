"""Bottom-up multi-person pose (HigherHRNet, associative embedding): COCO / CrowdPose data, training, the
official test with grouping, evaluation, prediction."""
