"""Semantic segmentation losses: cross-entropy and OHEM cross-entropy, as the official HRNet code.

Both losses follow ``lib/core/criterion.py`` of HRNet-Semantic-Segmentation (the OCR-era version):

* logits at any resolution (the models give 1/4) are upsampled bilinearly to the label size before
  the loss, with the model's ``align_corners`` (official ``MODEL.ALIGN_CORNERS``);
* a model may return a list of outputs (OCR: ``[aux, ocr]``); the loss is
  ``sum(balance_weights[i] * loss_i(outputs[i]))`` (official ``LOSS.BALANCE_WEIGHTS``: ``[1]`` for a single
  output, ``[0.4, 1]`` for OCR). With :class:`OhemCrossEntropy` only the *last* output uses OHEM, the
  others plain (class-weighted) cross-entropy, as the official ``OhemCrossEntropy.forward``.

Deviations (explicit): under DDP the cross-entropy mean is over the valid pixels of the global batch
(the official one is per GPU; OHEM still selects and averages per process, as the official); a batch
whose pixels are all ``ignore_index`` gives a zero loss that keeps the graph (the official code returns
NaN for cross-entropy and raises for OHEM); logits are cast to float32 before the loss (AMP outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import loss_precision

__all__ = ["CITYSCAPES_CLASS_WEIGHTS", "CrossEntropy", "OhemCrossEntropy", "SegOutputs"]

# Official Cityscapes class weights (``Cityscapes.class_weights`` in the official ``cityscapes.py``),
# in train-id order road, sidewalk, ..., bicycle. Used for both plain and OHEM cross-entropy.
CITYSCAPES_CLASS_WEIGHTS: tuple[float, ...] = (
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
)

SegOutputs = Union[Tensor, Sequence[Tensor]]


def _resize_to(score: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    """(B, C, h, w) logits -> float32 or float64 (B, C, H, W); bilinear only when the sizes differ (as official)."""
    score = loss_precision(score)
    if tuple(score.shape[-2:]) != tuple(size):
        score = F.interpolate(score, size=size, mode="bilinear", align_corners=align_corners)
    return score


def _global_mean_denominator(local: Tensor) -> Tensor:
    """``local`` (a count of valid pixels on this process) -> the mean count per process, summed over the
    ranks of an initialised process group; ``local`` itself on one process. Dividing each rank's loss sum
    by it makes DDP's gradient average equal the gradient of the global-batch mean (the official code
    divides by each GPU's own count, which differs when ignored pixels are spread unevenly)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    total = local.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


class _SegLoss(nn.Module):
    """Shared plumbing: class weights buffer, list outputs with balance weights, label-size upsampling."""

    def __init__(self, ignore_index: int, weight: Sequence[float] | Tensor | None, align_corners: bool,
                 balance_weights: Sequence[float] | None) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.align_corners = bool(align_corners)
        self.balance_weights = None if balance_weights is None else tuple(float(w) for w in balance_weights)
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32).flatten()
        self.register_buffer("weight", w, persistent=False)

    def _weights_for(self, n: int) -> tuple[float, ...]:
        if self.balance_weights is None:
            if n == 1:
                return (1.0,)
            raise ValueError(f"the model returned {n} outputs: pass balance_weights (official OCR: [0.4, 1])")
        if len(self.balance_weights) != n:
            raise ValueError(f"balance_weights {list(self.balance_weights)} has {len(self.balance_weights)} "
                             f"entries but the model returned {n} outputs")
        return self.balance_weights

    def _pixel_ce(self, score: Tensor, target: Tensor) -> Tensor:
        """Per-pixel ``weight[y] * -log softmax(score)[y]`` (0 at ignored pixels): (B, H, W)."""
        return F.cross_entropy(score, target, weight=self.weight, ignore_index=self.ignore_index, reduction="none")

    def _ce(self, score: Tensor, target: Tensor) -> Tensor:
        """``nn.CrossEntropyLoss(weight, ignore_index)`` mean: ``sum(w_y * nll) / sum(w_y)`` over valid pixels.

        Written as that ratio (no host sync); with no valid pixel it is ``0 / tiny = 0``, not NaN. Under
        data parallelism the denominator is the global batch's (:func:`_global_mean_denominator`), so the
        gradient DDP averages is the one a single process gets on the whole batch.
        """
        score = _resize_to(score, tuple(target.shape[-2:]), self.align_corners)
        valid = target != self.ignore_index
        if self.weight is None:
            denom = valid.sum().to(score.dtype)
        else:
            safe = torch.where(valid, target, torch.zeros_like(target))
            denom = (self.weight.to(score.dtype)[safe] * valid).sum()
        return self._pixel_ce(score, target).sum() / _global_mean_denominator(denom).clamp(min=1e-12)

    def _check(self, outputs: SegOutputs, target: Tensor) -> list[Tensor]:
        outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        if target.dim() != 3:
            raise ValueError(f"target must be (B, H, W) class indices, got shape {tuple(target.shape)}")
        for o in outs:
            if o.dim() != 4 or o.shape[0] != target.shape[0]:
                raise ValueError(f"logits must be (B, C, h, w) with B={target.shape[0]}, got {tuple(o.shape)}")
        return outs

    @staticmethod
    def _as_index(target: Tensor) -> Tensor:
        return target if target.dtype == torch.int64 else target.long()


class CrossEntropy(_SegLoss):
    """Official ``CrossEntropy``: pixel-wise (class-weighted) softmax cross-entropy, mean over valid pixels.

    ``forward(outputs, target)``: ``outputs`` is (B, C, h, w) logits or a list of them (e.g. OCR's
    ``[aux, ocr]``), ``target`` (B, H, W) int64 class indices with ``ignore_index`` for void.
    Returns a scalar: ``sum_i balance_weights[i] * CE(upsample(outputs[i]), target)``.
    """

    def __init__(self, ignore_index: int = 255, weight: Sequence[float] | Tensor | None = None,
                 align_corners: bool = False, balance_weights: Sequence[float] | None = None) -> None:
        super().__init__(ignore_index, weight, align_corners, balance_weights)

    def forward(self, outputs: SegOutputs, target: Tensor) -> Tensor:
        target = self._as_index(target)
        outs = self._check(outputs, target)
        weights = self._weights_for(len(outs))
        return sum(w * self._ce(o, target) for w, o in zip(weights, outs))  # type: ignore[return-value]


class OhemCrossEntropy(_SegLoss):
    """Official ``OhemCrossEntropy`` (online hard example mining on pixels).

    For the (last) output: upsample to the label size, ``p`` = softmax probability of the true class
    at each valid pixel; ``threshold = max(thresh, p_sorted[min(min_kept, n - 1)])`` (ascending sort);
    the loss is the plain mean of the per-pixel (class-weighted) losses over valid pixels with
    ``p < threshold``. So every pixel predicted with probability below ``thresh`` is kept and, if those
    are fewer than ``min_kept``, the ``min_kept`` hardest pixels are (ties at the cut-off excluded,
    as the strict ``<`` of the official code). ``min_kept`` counts pixels per call, i.e. per device
    batch (official: per GPU). Official Cityscapes values: ``thresh=0.9, min_kept=131072`` with
    :data:`CITYSCAPES_CLASS_WEIGHTS`.

    Note: with class weights the OHEM mean is *not* normalised by the weights (``reduction='none'``
    then ``.mean()``), unlike :class:`CrossEntropy`; this is the official arithmetic.
    Earlier outputs of a list (OCR's auxiliary head) use plain :class:`CrossEntropy` arithmetic.
    """

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7, min_kept: int = 100000,
                 weight: Sequence[float] | Tensor | None = None, align_corners: bool = False,
                 balance_weights: Sequence[float] | None = None) -> None:
        super().__init__(ignore_index, weight, align_corners, balance_weights)
        self.thresh = float(thresh)
        self.min_kept = max(1, int(min_kept))

    def ohem(self, score: Tensor, target: Tensor) -> Tensor:
        """OHEM loss of one (B, C, h, w) output against (B, H, W) targets (scalar)."""
        score = _resize_to(score, tuple(target.shape[-2:]), self.align_corners)
        pixel_losses = self._pixel_ce(score, target).flatten()
        valid = target.flatten() != self.ignore_index
        n = int(valid.sum())
        if n == 0:
            return score.sum() * 0.0
        with torch.no_grad():
            safe_target = torch.where(target == self.ignore_index, torch.zeros_like(target), target)
            prob = score.softmax(dim=1).gather(1, safe_target.unsqueeze(1)).flatten()[valid]
            k = min(self.min_kept, n - 1)  # 0-based index into the ascending sort
            min_value = prob.kthvalue(k + 1).values
            threshold = torch.clamp(min_value, min=self.thresh)
            keep = prob < threshold
        kept = pixel_losses[valid][keep]
        if kept.numel() == 0:  # every pixel at p >= threshold (e.g. all p == 1): official gives NaN
            return score.sum() * 0.0
        return kept.mean()

    def forward(self, outputs: SegOutputs, target: Tensor) -> Tensor:
        target = self._as_index(target)
        outs = self._check(outputs, target)
        weights = self._weights_for(len(outs))
        losses = [self._ce(o, target) for o in outs[:-1]] + [self.ohem(outs[-1], target)]
        return sum(w * loss for w, loss in zip(weights, losses))  # type: ignore[return-value]
