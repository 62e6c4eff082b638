"""Semantic segmentation test-time inference: whole image or sliding window, multi-scale, flip.

:func:`predict_logits` reproduces the official HRNet-Semantic-Segmentation test pipeline
(``BaseDataset.inference`` / ``BaseDataset.multi_scale_inference`` and the Cityscapes override of
``multi_scale_inference``), batched and on any device. Per scale ``s``:

1. **resize** the normalised image bilinearly (half-pixel, as ``cv2.INTER_LINEAR``) so that its long
   side is ``int(L * s + 0.5)`` and the short side keeps the aspect ratio
   (``int(short * long_new / long + 0.5)``); ``L`` is ``base_size`` (official ``TEST.BASE_SIZE``; for
   Cityscapes 2048 = the image's long side) or, by default, the image's own long side;
2. **predict**: the model's logits (for list outputs ``outputs[output_index]``, official
   ``TEST.OUTPUT_INDEX = -1``, the OCR head) upsampled bilinearly to the network input size with
   ``align_corners``; with ``flip`` the logits are averaged with those of the mirrored input mirrored
   back; the official code then takes ``exp`` of these logits;
3. **windows** (``mode="slide"``): ``exp(logits)`` of overlapping windows are averaged by count;
4. the per-scale ``exp`` map is resized bilinearly (``align_corners``) to the input size and the
   scales are **summed**; the class decision is the argmax of that sum.

What is returned: the *log* of that score map divided by ``len(scales)``, i.e. a (B, C, H, W) logit-like
map with the official argmax (softmax-equivalent up to a per-pixel constant). For one scale, whole
image, no flip, it is the model's logits upsampled to (H, W). Log-space arithmetic
(``logaddexp``) avoids the official float32 ``exp`` overflow for logits above ~88; the one resize of
an ``exp`` map (scales != 1) is done in float64 with a per-image shift.

Sliding-window layouts (both official)
--------------------------------------
``window="pad"`` (``BaseDataset.multi_scale_inference``; ADE20K, PASCAL-Context, COCO-Stuff, LIP):
default stride ``int(2/3 * crop)``; an image with ``max(h, w) <= min(crop)`` is padded to the crop and
predicted once; otherwise it is padded (bottom/right, with ``pad_value``) to at least the crop,
``rows = ceil((H' - crop_h) / stride_h) + 1`` (cols alike), window ``r`` spans
``[r * stride, min(r * stride + crop, H'))`` and a short last window is padded to the crop size.

``window="clamp"`` (``Cityscapes.multi_scale_inference``, also mmseg): same grid counts, but a window
that would cross the border is shifted back inside (``start = max(end - crop, 0)``) and nothing is
padded (an image smaller than the crop is one smaller window). The official Cityscapes test uses
``stride = crop = (1024, 2048)`` and runs scales ``<= 1`` whole-image: see :data:`CITYSCAPES_TEST`.

Deviations (explicit): batches of any size (official: 1); the grid count is floored at one window
(the official formula gives zero windows when the image is smaller than ``crop - stride``, a case its
configs never reach); ``stride`` must not exceed the crop (windows would leave gaps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...files import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CITYSCAPES_MS_SCALES",
    "CITYSCAPES_TEST",
    "IMAGENET_PAD_VALUE",
    "predict_logits",
    "scaled_size",
    "slide_windows",
]

# Official pad value: a black pixel after normalisation, ``-mean / std`` (RGB).
IMAGENET_PAD_VALUE: tuple[float, ...] = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))

# Official Cityscapes test (``TEST.IMAGE_SIZE [2048, 1024]``, ``TEST.BASE_SIZE 2048``, Cityscapes override):
# ``predict_logits(model, x, num_classes=19, **CITYSCAPES_TEST, scales=..., flip=...)``.
CITYSCAPES_TEST: dict[str, Any] = {
    "mode": "slide", "window": "clamp", "crop_size": (1024, 2048), "stride": (1024, 2048),
    "whole_max_scale": 1.0, "base_size": 2048,
}
# README multi-scale + flip test: ``TEST.SCALE_LIST 0.5,0.75,1.0,1.25,1.5,1.75 TEST.FLIP_TEST True``.
CITYSCAPES_MS_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(x) for x in v)
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{name} must be a positive int or (h, w), got {v!r}")
    return t  # type: ignore[return-value]


def scaled_size(height: int, width: int, scale: float, base_size: int | None = None) -> tuple[int, int]:
    """Official ``multi_scale_aug`` size: long side ``int(base * scale + 0.5)`` (``base`` = ``base_size``
    or the long side), short side ``int(short * long_new / long + 0.5)``. Returns ``(h, w)``."""
    base = max(height, width) if base_size is None else base_size
    long_new = int(base * scale + 0.5)
    if height > width:
        return long_new, max(1, int(width * long_new / height + 0.5))
    return max(1, int(height * long_new / width + 0.5)), long_new


def slide_windows(height: int, width: int, crop_size: Sequence[int], stride: Sequence[int],
                  window: Literal["pad", "clamp"] = "pad") -> list[tuple[int, int, int, int]]:
    """Window boxes ``(h0, h1, w0, w1)`` over an (already padded, for ``"pad"``) image of ``height x width``.

    ``rows = max(ceil((height - crop_h) / stride_h), 0) + 1`` (cols alike); ``"pad"``: ``h0 = r * stride_h``,
    ``h1 = min(h0 + crop_h, height)``; ``"clamp"``: additionally ``h0 = max(h1 - crop_h, 0)``.
    """
    (ch, cw), (sh, sw) = _pair(crop_size, "crop_size"), _pair(stride, "stride")
    rows = max(math.ceil((height - ch) / sh), 0) + 1
    cols = max(math.ceil((width - cw) / sw), 0) + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            h0, w0 = r * sh, c * sw
            h1, w1 = min(h0 + ch, height), min(w0 + cw, width)
            if window == "clamp":
                h0, w0 = max(h1 - ch, 0), max(w1 - cw, 0)
            boxes.append((h0, h1, w0, w1))
    return boxes


def _pad_to(x: Tensor, size: tuple[int, int], value: Tensor) -> Tensor:
    """Pad (B, 3, h, w) at the bottom/right to at least ``size`` with a per-channel ``value`` (3,)."""
    h, w = x.shape[-2:]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return x
    out = value.to(x.dtype).view(1, -1, 1, 1).expand(x.shape[0], x.shape[1], h + ph, w + pw).clone()
    out[..., :h, :w] = x
    return out


def _resize_log(scores: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    """``log(bilinear(exp(scores)))``: the official resize of the ``exp`` map, overflow-free."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    dtype = torch.float32 if scores.device.type == "mps" else torch.float64
    s = scores.to(dtype)
    shift = s.amax(dim=(1, 2, 3), keepdim=True)
    out = F.interpolate((s - shift).exp(), size=size, mode="bilinear", align_corners=align_corners)
    return (out.log() + shift).float()


class _Runner:
    """One network evaluation: select output, upsample to the input size, flip-average (official
    ``BaseDataset.inference`` before its ``exp``)."""

    def __init__(self, model: nn.Module, num_classes: int, flip: bool, align_corners: bool,
                 output_index: int) -> None:
        self.model, self.num_classes, self.flip = model, num_classes, flip
        self.align_corners, self.output_index = align_corners, output_index

    def _forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if isinstance(out, (list, tuple)):
            out = out[self.output_index]
        if out.dim() != 4 or out.shape[1] != self.num_classes:
            raise ValueError(f"model output {tuple(out.shape)} is not (B, num_classes={self.num_classes}, h, w)")
        out = out.float()
        if tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return out

    def __call__(self, x: Tensor) -> Tensor:
        logits = self._forward(x)
        if self.flip:
            logits = (logits + self._forward(x.flip(-1)).flip(-1)) * 0.5
        return logits


def _slide(run: _Runner, x: Tensor, crop: tuple[int, int], stride: tuple[int, int], window: str,
           pad_value: Tensor) -> Tensor:
    """Log of the count-averaged ``exp(logits)`` of the windows, at the size of ``x`` (B, C, h, w)."""
    h, w = x.shape[-2:]
    if window == "pad":
        if max(h, w) <= min(crop):
            return run(_pad_to(x, crop, pad_value))[..., :h, :w]
        x = _pad_to(x, crop, pad_value)
    H, W = x.shape[-2:]
    acc = x.new_full((x.shape[0], run.num_classes, H, W), -math.inf, dtype=torch.float32)
    count = x.new_zeros((1, 1, H, W), dtype=torch.float32)
    for h0, h1, w0, w1 in slide_windows(H, W, crop, stride, window):  # type: ignore[arg-type]
        patch = x[..., h0:h1, w0:w1]
        if window == "pad":
            patch = _pad_to(patch, crop, pad_value)
        out = run(patch)[..., : h1 - h0, : w1 - w0]
        acc[..., h0:h1, w0:w1] = torch.logaddexp(acc[..., h0:h1, w0:w1], out)
        count[..., h0:h1, w0:w1] += 1
    return (acc - count.log())[..., :h, :w]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: Tensor,
    *,
    num_classes: int,
    mode: Literal["whole", "slide"] = "whole",
    crop_size: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    align_corners: bool | None = None,
    output_index: int = -1,
    window: Literal["pad", "clamp"] = "pad",
    pad_value: float | Sequence[float] = IMAGENET_PAD_VALUE,
    whole_max_scale: float | None = None,
    base_size: int | None = None,
) -> Tensor:
    """Official test-time segmentation: normalised (B, 3, H, W) -> float32 (B, C, H, W) log-scores.

    ``argmax(1)`` of the result is the official prediction (see the module note for what is fused how).
    The model must already be in ``eval()`` mode and on the image's device.

    Args:
        mode: ``"whole"`` (the network sees the whole scaled image) or ``"slide"`` (windows of ``crop_size``).
        crop_size / stride: ``(h, w)`` or an int; ``stride`` defaults to ``int(2/3 * crop)`` (official
            ``BaseDataset``; the Cityscapes override uses ``stride = crop``). Only for ``mode="slide"``.
        scales: test scales; the results are averaged over scales (official: summed; same argmax).
        flip: average with the horizontally flipped prediction (logits averaged before ``exp``).
        align_corners: for every logit resize; default ``model.head.align_corners`` (else False). The image
            resize is always half-pixel bilinear (official ``cv2.INTER_LINEAR``).
        output_index: which output of a list-returning model (OCR ``[aux, ocr]``: -1).
        window: sliding layout, ``"pad"`` or ``"clamp"`` (module note).
        pad_value: normalised fill for ``"pad"`` (default: a black pixel, as the official ``-mean/std``).
        whole_max_scale: in slide mode, scales ``<=`` this run whole-image (official Cityscapes: 1.0).
        base_size: long side that scale 1 maps to (official ``TEST.BASE_SIZE``); default: the image's.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (B, 3, H, W), got shape {tuple(image.shape)}")
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if window not in ("pad", "clamp"):
        raise ValueError(f"window must be 'pad' or 'clamp', got {window!r}")
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    crop = stride_hw = None
    if mode == "slide":
        if crop_size is None:
            raise ValueError("mode='slide' needs crop_size (official: TEST.IMAGE_SIZE as (h, w))")
        crop = _pair(crop_size, "crop_size")
        stride_hw = (int(crop[0] * 2.0 / 3.0), int(crop[1] * 2.0 / 3.0)) if stride is None else \
            _pair(stride, "stride")
        if stride_hw[0] > crop[0] or stride_hw[1] > crop[1] or min(stride_hw) < 1:
            raise ValueError(f"stride {stride_hw} must be in [1, crop_size {crop}]")
    if align_corners is None:
        align_corners = bool(getattr(getattr(model, "head", None), "align_corners", False))
    pv = torch.as_tensor(pad_value, dtype=torch.float32, device=image.device).flatten()
    pv = pv.expand(image.shape[1]) if pv.numel() == 1 else pv
    if pv.numel() != image.shape[1]:
        raise ValueError(f"pad_value has {pv.numel()} entries for {image.shape[1]} channels")
    run = _Runner(model, num_classes, flip, align_corners, output_index)

    height, width = image.shape[-2:]
    total: Tensor | None = None
    for scale in scales:
        size = scaled_size(height, width, float(scale), base_size)
        x = image if size == (height, width) else \
            F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        if mode == "whole" or (whole_max_scale is not None and scale <= whole_max_scale):
            scores = run(x)
        else:
            scores = _slide(run, x, crop, stride_hw, window, pv)  # type: ignore[arg-type]
        scores = _resize_log(scores, (height, width), align_corners)
        total = scores if total is None else torch.logaddexp(total, scores)
    assert total is not None
    return total - math.log(len(scales)) if len(scales) > 1 else total
