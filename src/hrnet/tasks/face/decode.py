"""Face crops -> landmarks in image pixels: the network, the flip test and the decoding (official, argmax or
DARK), shared by evaluation, ``hrnet predict`` and the demo; no Lightning, so prediction starts fast."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ...keypoints.codec import HeatmapCodec, flip_back
from ...keypoints.geometry import transform_preds
from .official import official_decode


@torch.no_grad()
def predict_landmarks(model: torch.nn.Module, images: Tensor, centers: Tensor, scales: Tensor, codec: HeatmapCodec,
                      decode: str, flip_index: Sequence[int] | None = None) -> tuple[np.ndarray, Tensor]:
    """(B, 3, H, W) crops -> ((B, K, 2) landmarks in image pixels, (B, K, h, w) heatmaps of the crops).

    ``official``: ``lib/core/evaluation.py decode_preds`` (argmax, quarter offset, +0.5, integer back-projection;
    with ``flip_index``, the heatmaps averaged with the mirrored ones shifted a pixel, as pose's flip test).
    ``argmax`` / ``dark``: decoded and back-projected in float; the flip test averages coordinates: a crop pixel
    ``x`` of the mirrored crop is ``W - 1 - x``, i.e. heatmap ``w - 1 / stride - u``, which no whole-pixel shift
    of the heatmaps reproduces (with the unbiased targets, a shifted heatmap average is off by a quarter pixel).
    """
    heatmaps = model(images).float()
    flipped = model(torch.flip(images, dims=[3])).float() if flip_index is not None else None
    if decode == "official":
        averaged = heatmaps if flipped is None else (heatmaps + flip_back(flipped, flip_index, shift=True)) / 2
        return official_decode(averaged.cpu().numpy(), centers.cpu().numpy(), scales[:, 0].cpu().numpy(),
                               codec.heatmap_size), heatmaps
    coords, _ = codec.decode(heatmaps.cpu().numpy(), decode)
    if flipped is not None:
        mirrored, _ = codec.decode(flipped.cpu().numpy(), decode)
        mirrored = mirrored[:, list(flip_index)]
        mirrored[..., 0] = codec.heatmap_size[1] - 1 / codec.stride[0] - mirrored[..., 0]
        coords = (coords + mirrored) / 2
    size_wh = (codec.heatmap_size[1], codec.heatmap_size[0])
    landmarks = np.stack([transform_preds(c, center, scale, size_wh) for c, center, scale in
                          zip(coords, centers.cpu().numpy(), scales.cpu().numpy())])
    return landmarks.astype(np.float32), heatmaps
