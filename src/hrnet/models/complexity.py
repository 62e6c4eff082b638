"""Parameter and multiply-add counts in the HRNet papers' convention.

"GFLOPs" in the official READMEs are conv + linear multiply-adds divided by 2**30 (their
``get_model_summary`` prints ``flops_sum / 1024**3``); BN, pooling, upsampling and element-wise
adds are not counted. We count the same operations, and a transposed conv by its real MACs
(weight size x input grid); the official HigherHRNet summary counts it on the output grid (4x).

Matrix products that are not modules (the OCR head's gather step and its two attention products)
are counted too, through a ``matmul_macs(inputs, output)`` method of the module that does them,
as fvcore does. The official summary counts convs only, so for HRNet-W48-OCR at 1024x2048 it
reports 2.55 G (0.2%) fewer MACs than we do; pass ``matmuls=False`` for its number. Softmax,
scaling, BN, pooling, upsampling and element-wise ops are never counted.
Counting runs the model on the ``meta`` device: no memory, no compute, any input size. For a detector the
parameters are the whole model's and the MACs those of the backbone and neck (HRNetV2p): the RPN and RoI
heads' work depends on the proposals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GIGA_BINARY = 2**30


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    input_size: tuple[int, int]

    @property
    def gflops(self) -> float:
        """The papers' "GFLOPs": multiply-adds / 2**30."""
        return self.macs / GIGA_BINARY


def count_params(model: nn.Module) -> int:
    """All parameter elements (BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int], in_channels: int = 3, matmuls: bool = True) -> int:
    """Conv/transposed-conv/linear multiply-adds of one forward pass at batch 1, plus (``matmuls``)
    those of modules that report their matrix products through ``matmul_macs``."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if hasattr(module, "matmul_macs"):
            total += module.matmul_macs(inputs, output)
        elif isinstance(module, nn.ConvTranspose2d):
            total += module.weight.numel() * inputs[0].shape[-2] * inputs[0].shape[-1]
        elif isinstance(module, nn.Conv2d):
            total += module.weight.numel() * output.shape[-2] * output.shape[-1]
        else:
            total += module.weight.numel()

    counted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, counted) or (matmuls and hasattr(m, "matmul_macs"))]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def model_complexity(name: str, input_size: tuple[int, int] | None = None, **overrides: object) -> Complexity:
    """Params and MACs of preset ``name`` (at its default input size unless given), computed on meta."""
    from .presets import create_model, get_preset

    preset = get_preset(name)
    size = tuple(input_size or preset.input_size)
    with torch.device("meta"):
        model = create_model(name, **overrides)
    counted = model.backbone if preset.detector else model  # a detector's heads depend on its proposals
    return Complexity(count_params(model), count_macs(counted, size), size)  # type: ignore[arg-type]
