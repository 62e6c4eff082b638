"""Image classification (HRNet-C): ImageNet / image-folder / WebDataset data, training, evaluation, prediction."""
