"""Semantic segmentation (HRNetV2, HRNet-OCR): Cityscapes / folder / list data, training, test-time
augmentation, evaluation, prediction."""
