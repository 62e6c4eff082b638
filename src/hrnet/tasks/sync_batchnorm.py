"""Batch normalisation over the batch of every process, on CPU too.

``--trainer.sync_batchnorm true`` makes Lightning convert BatchNorm to ``torch.nn.SyncBatchNorm``, whose
kernels exist only for GPUs (and which ``DistributedDataParallel`` refuses on CPU). :class:`SyncBatchNormPlugin`
keeps torch's layer on GPUs and, on CPU, converts to :class:`CrossProcessBatchNorm2d`, which computes the
same statistics with two ``all_reduce`` calls that autograd differentiates.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import Tensor, nn


class CrossProcessBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch (all ranks of the default
    process group): ``mean = sum(x) / N`` and ``var = sum((x - mean)^2) / N`` over every rank's (B, H, W), the
    running variance updated with ``N / (N - 1)`` as ``F.batch_norm`` does. Outside training or on one process
    it is ``BatchNorm2d``. The backward of ``all_reduce`` sums the ranks' gradients, as torch's
    ``SyncBatchNorm`` does, so DDP's averaged gradient is the single-process one on the global batch."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        sums = dist_fn.all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1].detach()
        mean = sums[:-1] / total
        centred = x - mean[None, :, None, None]
        var = dist_fn.all_reduce((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(total))
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            return centred * (scale * self.weight)[None, :, None, None] + self.bias[None, :, None, None]
        return centred * scale[None, :, None, None]

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, total: float) -> None:
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(var * (total / max(total - 1, 1.0)), alpha=factor)


def _convert(module: nn.Module, to: type[nn.BatchNorm2d], source: type[nn.Module]) -> nn.Module:
    """``module`` with every ``source`` layer (exactly that class) replaced by a ``to`` holding the same
    parameters and buffers."""
    if type(module) is source:
        layer = to(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        layer.load_state_dict(module.state_dict())
        layer.train(module.training)
        return layer.to(next(iter(module.state_dict().values())).device)
    for name, child in module.named_children():
        module.add_module(name, _convert(child, to, source))
    return module


class SyncBatchNormPlugin(TorchSyncBatchNorm):
    """Lightning's ``sync_batchnorm`` for any device: torch's ``SyncBatchNorm`` on GPUs, and
    :class:`CrossProcessBatchNorm2d` when the model is on CPU (gloo). ``hrnet fit`` adds it whenever
    ``trainer.sync_batchnorm`` is true."""

    def apply(self, model: nn.Module) -> nn.Module:
        if all(p.device.type == "cpu" for p in model.parameters()):
            return _convert(model, CrossProcessBatchNorm2d, nn.BatchNorm2d)
        return super().apply(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return super().revert(_convert(model, nn.BatchNorm2d, CrossProcessBatchNorm2d))
