"""Semantic segmentation metrics from a confusion matrix: IoU per class, mIoU, pixel and mean accuracy.

The matrix is ``M[gt, pred]`` (rows: ground truth, columns: prediction), accumulated over the whole
evaluation with :func:`torch.bincount` on the data's device, and summed over ranks by
:meth:`ConfusionMatrix.all_reduce` (the official code reduces its matrix the same way in ``validate``).

Classes that never occur (chosen convention, explicit)
------------------------------------------------------
A class with zero union (absent from both ground truth and prediction over the whole evaluation) has
IoU ``NaN`` and is left out of ``mIoU`` (``nanmean``, as mmsegmentation). Likewise the per-class
accuracy of a class absent from the ground truth is ``NaN`` and left out of ``mean_accuracy``.
The official HRNet code instead divides by ``max(1, union)`` (``max(1, gt)``) and averages over *all*
classes, so such a class counts as 0; that number is reported as ``official_mIoU``
(``official_mean_accuracy``). On full Cityscapes val every class occurs and both agree.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["ConfusionMatrix", "confusion_matrix", "metrics_from_confusion"]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255) -> Tensor:
    """(num_classes, num_classes) int64 counts ``M[gt, pred]`` over pixels whose target is not ignored.

    ``pred`` and ``target`` are integer tensors of the same shape (e.g. (B, H, W)). Raises ``ValueError``
    naming the first offending value when a target (other than ``ignore_index``) or a prediction at a
    counted pixel lies outside ``[0, num_classes)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("pred and target must be integer class indices (take argmax of the logits first)")
    t = target.reshape(-1).long()
    p = pred.reshape(-1).to(t.device).long()
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    for name, v in (("target", t), ("prediction", p)):
        bad = (v < 0) | (v >= num_classes)
        if bool(bad.any()):
            value = int(v[bad][0])
            hint = f" (ignore_index is {ignore_index})" if name == "target" else ""
            raise ValueError(f"{name} contains class {value}, outside [0, {num_classes}){hint}")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _div(num: Tensor, den: Tensor) -> Tensor:
    """Elementwise ``num / den`` with NaN where ``den == 0`` (float64)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, math.nan))


def _nanmean(x: Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else math.nan


def metrics_from_confusion(matrix: Tensor) -> dict[str, Any]:
    """Metrics of a ``M[gt, pred]`` matrix (see the module note for the absent-class convention).

    Returns floats / per-class lists: ``mIoU``, ``IoU``, ``pixel_accuracy`` (``sum(tp) / sum(M)``),
    ``mean_accuracy``, ``accuracy`` (per class ``tp / gt``), ``official_mIoU``, ``official_IoU``,
    ``official_mean_accuracy``. Empty matrix: NaN everywhere except the ``official_*`` zeros.
    """
    m = matrix.detach().to("cpu", torch.float64)
    tp = m.diagonal()
    gt = m.sum(1)
    pr = m.sum(0)
    union = gt + pr - tp
    iou = _div(tp, union)
    acc = _div(tp, gt)
    official_iou = tp / union.clamp(min=1.0)
    total = gt.sum()
    return {
        "mIoU": _nanmean(iou),
        "IoU": iou.tolist(),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
        "mean_accuracy": _nanmean(acc),
        "accuracy": acc.tolist(),
        "official_mIoU": float(official_iou.mean()),
        "official_IoU": official_iou.tolist(),
        "official_mean_accuracy": float((tp / gt.clamp(min=1.0)).mean()),
    }


class ConfusionMatrix:
    """Accumulating ``M[gt, pred]`` confusion matrix (int64, kept on the device of the data).

    Usage: ``update(pred, target)`` per batch with ``pred`` = ``logits.argmax(1)`` (B, H, W) at the label
    resolution, ``all_reduce()`` once at the end of the evaluation (DDP; a no-op without an initialised
    process group), then ``compute()``; ``reset()`` before the next evaluation. Calling ``all_reduce``
    twice without a reset counts the other ranks twice.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix = torch.zeros_like(self.matrix)

    def to(self, device: torch.device | str) -> "ConfusionMatrix":
        self.matrix = self.matrix.to(device)
        return self

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` and ``target`` integer (B, H, W) (any equal shapes)."""
        counts = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        if self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts

    @torch.no_grad()
    def all_reduce(self) -> None:
        """Sum the matrix over all ranks (every rank must call it; NCCL gets a CUDA copy)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        buf = self.matrix
        if dist.get_backend() == "nccl" and buf.device.type != "cuda":
            buf = buf.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        self.matrix = buf.to(self.matrix.device)

    def compute(self) -> dict[str, Any]:
        """:func:`metrics_from_confusion` of the accumulated matrix."""
        return metrics_from_confusion(self.matrix)
