"""Post-training int8 quantization for x86 CPUs (AMX / AVX512-VNNI), through PT2E and inductor.

:func:`quantize_int8` exports a BN-folded model with ``torch.export`` (batch, height and width left
dynamic), annotates it with torchao's ``X86InductorQuantizer`` (static, per-tensor activations and
per-channel weights, the quantizer's default recipe), calibrates the observers on sample inputs and
converts it to a quantize/dequantize graph. Compiled by inductor with weight freezing, each
dequantize -> conv (-> add) (-> ReLU) -> quantize chain becomes one oneDNN int8 convolution.

HRNet needs one change before annotation. The quantizer finds conv / conv+ReLU / conv+add+ReLU by
"source partitions" (the nodes that came from one module or function call), but HRNet's blocks and
fusion layers call one ``nn.ReLU`` module several times, and non-strict export records every call of a
module under that module's name: the calls merge into one partition with several outputs, which the
quantizer rejects ("Input partition has more than one output node"). :func:`label_partitions` gives
each conv, add and ReLU node its own partition, which is what those calls are.

Needs ``pip install torchao`` (the ``int8`` extra).
"""

from __future__ import annotations

import importlib.util
import itertools
import operator
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

SOURCES: dict[str, object] = {
    "aten.conv2d.default": nn.Conv2d,
    "aten.relu.default": nn.ReLU,
    "aten.relu_.default": nn.ReLU,
    "aten.add.Tensor": operator.add,
    "aten.add_.Tensor": operator.add,
}
"""The exported ops the quantizer's conv patterns are made of, and the source each one stands for."""


def label_partitions(graph_module: torch.fx.GraphModule) -> int:
    """Give every conv, add and ReLU node of an exported graph its own source partition; returns
    how many nodes were labelled."""
    labelled = 0
    for node in graph_module.graph.nodes:
        source = SOURCES.get(str(node.target)) if node.op == "call_function" else None
        if source is not None:
            node.meta["source_fn_stack"] = [(node.name, source)]
            labelled += 1
    return labelled


def available() -> bool:
    """Whether torchao (needed for int8) is installed."""
    return importlib.util.find_spec("torchao") is not None


def _torchao() -> tuple[Callable[..., Any], Callable[..., Any], ModuleType, Callable[..., Any]]:
    """torchao's PT2E entry points, with an install hint when it is missing."""
    try:
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as err:
        raise ImportError("int8 quantization needs torchao: pip install torchao (or the hrnet[int8] extra)") from err
    return prepare_pt2e, convert_pt2e, x86, allow_exported_model_train_eval


def quantize_int8(
    model: nn.Module, calibration: Iterable[Tensor], channels_last: bool = True
) -> torch.fx.GraphModule:
    """An int8 quantize/dequantize graph of ``model`` (eval mode, BN already folded: see
    :func:`hrnet.inference.prepare`), calibrated on the batches in ``calibration``.

    ``calibration`` yields NCHW float tensors like the inputs the model will see (a few hundred
    real images is the usual recipe; the activation ranges come from them). ``channels_last``:
    the memory format the inputs will have at run time (the graph is traced and calibrated in it;
    tracing in another format costs about 100x more error against the reference graph). The
    result only runs fast through ``torch.compile`` with inductor freezing on; eagerly it simulates int8 in fp32.
    """
    prepare_pt2e, convert_pt2e, x86, allow_train_eval = _torchao()
    batches = iter(calibration)
    try:
        first = next(batches)
    except StopIteration:
        raise ValueError("quantize_int8: calibration is empty; pass an iterable of input batches") from None
    if not isinstance(first, Tensor) or first.dim() != 4:
        raise ValueError(f"quantize_int8: calibration must yield NCHW tensors, got {type(first).__name__}"
                         f"{tuple(first.shape) if isinstance(first, Tensor) else ''}")
    layout = torch.channels_last if channels_last else torch.contiguous_format
    auto = torch.export.Dim.AUTO
    with torch.no_grad():
        exported = torch.export.export(model.eval(), (first.contiguous(memory_format=layout),),
                                       dynamic_shapes=({0: auto, 2: auto, 3: auto},))
    graph = exported.module()
    label_partitions(graph)
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    observed = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in itertools.chain([first], batches):
            observed(batch.contiguous(memory_format=layout))
    quantized = convert_pt2e(observed)
    allow_train_eval(quantized)  # .eval() on a wrapper must not raise; there is no BN or dropout left
    return quantized


def relative_rms_error(reference: Any, output: Any) -> float:
    """``||output - reference|| / ||reference||`` (2-norms over every tensor of two outputs with the
    same structure: a tensor, or lists / tuples / dicts of them)."""
    refs = [t for t in tree_leaves(reference) if isinstance(t, Tensor)]
    outs = [t for t in tree_leaves(output) if isinstance(t, Tensor)]
    if len(refs) != len(outs) or not refs:
        raise ValueError(f"relative_rms_error: outputs differ in structure ({len(refs)} vs {len(outs)} tensors)")
    diff = sum(float((o.float() - r.float()).pow(2).sum()) for r, o in zip(refs, outs))
    norm = sum(float(r.float().pow(2).sum()) for r in refs)
    return (diff / max(norm, 1e-30)) ** 0.5


def int8_error(model: nn.Module, quantized: torch.fx.GraphModule, batch: Tensor, channels_last: bool = True) -> float:
    """How far the int8 graph's outputs are from ``model``'s on ``batch``: :func:`relative_rms_error`.

    Run eagerly (int8 simulated by quantize / dequantize in fp32, which the compiled kernels follow to
    about 1e-2 of the output range). Per-tensor int8 activations fail on networks whose activations
    span thousands of quantization steps (sparse spikes next to small typical values): 0.019 on the
    demo-trained pose model, 0.449 on a W32 trained for 12 epochs whose late-stage activations reach
    several thousand where their median is 3.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with torch.no_grad():
        return relative_rms_error(model(batch), quantized(batch.contiguous(memory_format=layout)))


__all__ = ["SOURCES", "available", "int8_error", "label_partitions", "quantize_int8", "relative_rms_error"]
