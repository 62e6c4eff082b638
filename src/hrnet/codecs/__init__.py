"""Target codecs: one object encodes training targets and decodes predictions."""

from .heatmap import (
    HeatmapCodec,
    JointsMSELoss,
    dark_blur_kernel,
    flip_back,
    flip_test_average,
    get_max_preds,
)

__all__ = [
    "HeatmapCodec",
    "JointsMSELoss",
    "dark_blur_kernel",
    "flip_back",
    "flip_test_average",
    "get_max_preds",
]
