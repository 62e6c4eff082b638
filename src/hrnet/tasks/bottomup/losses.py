"""HigherHRNet training losses: the masked heatmap MSE and the associative embedding (tag) loss.

Both follow the official HigherHRNet ``lib/core/loss.py`` (``HeatmapLoss``, ``AELoss`` with ``loss_type='exp'``)
and return one value per image, ``(B,)``; the official ``MultiLossFactory`` then weights them per output
(heatmaps 1.0, push and pull 0.001 in the COCO configs) and the trainer averages over the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ae_loss", "heatmap_loss"]


def heatmap_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked heatmap MSE per image (official ``HeatmapLoss``).

    ``((pred - target) ** 2 * mask)`` averaged over width, then height, then joints; ``pred`` and ``target``
    are ``(B, J, H, W)``, ``mask`` ``(B, H, W)`` (0 where crowds and unlabelled people are). Returns ``(B,)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"heatmap_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    loss = (pred - target) ** 2 * mask[:, None, :, :].expand_as(pred)
    return loss.mean(dim=3).mean(dim=2).mean(dim=1)


def ae_loss(tags: Tensor, joints: Tensor) -> tuple[Tensor, Tensor]:
    """Associative embedding loss per image, official ``AELoss('exp')``: ``(push (B,), pull (B,))``.

    Args:
        tags: the tag maps, ``(B, J, H, W)`` (one tag per joint) or anything of ``B`` rows that flattens to
            the index space of ``joints``.
        joints: ``(B, M, J, 2)`` as the official ``JointsGenerator`` writes them: per person the flat index
            into ``tags[b]`` (``j * H * W + y * W + x``) and a visibility flag (> 0: use it).

    A person with no visible joint does not count. With ``n`` people and mean tags ``m_i``:
    pull = mean over people of the mean squared distance of their tags to ``m_i``;
    push = ``(sum_ij exp(-(m_i - m_j) ** 2) - n) / ((n - 1) * n) * 0.5``, 0 for ``n < 2``; pull is 0 for
    ``n = 0``.
    """
    batch = tags.shape[0]
    flat = tags.reshape(batch, -1)
    index = joints[..., 0].long()
    visible = (joints[..., 1] > 0).to(flat.dtype)  # (B, M, J)
    picked = torch.gather(flat, 1, index.reshape(batch, -1).clamp(0, flat.shape[1] - 1)).reshape(index.shape)
    count = visible.sum(dim=2)
    person = count > 0
    mean = (picked * visible).sum(dim=2) / count.clamp(min=1)
    spread = ((picked - mean[..., None]) ** 2 * visible).sum(dim=2) / count.clamp(min=1)
    num = person.sum(dim=1).to(flat.dtype)
    pull = (spread * person).sum(dim=1) / num.clamp(min=1)
    both = (person[:, :, None] & person[:, None, :]).to(flat.dtype)
    similarity = (torch.exp(-(mean[:, :, None] - mean[:, None, :]) ** 2) * both).sum(dim=(1, 2)) - num
    push = similarity / ((num - 1) * num).clamp(min=1) * 0.5
    return torch.where(num > 1, push, torch.zeros_like(push)), pull
