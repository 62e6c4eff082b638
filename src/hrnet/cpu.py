"""What this CPU offers and which kernels a call actually ran, so speed tables from different CPUs are read right.

The same benchmark gives other ratios on an AMX Xeon and on an AVX-512 BF16 EPYC; a table is only comparable with
the ISA paths it took. :func:`cpu_flags` lists the relevant instruction sets the CPU reports; :func:`onednn_kernels`
runs a call under oneDNN's verbose mode (PyTorch's CPU convolutions and matmuls) and :func:`openvino_kernels`
reads a compiled OpenVINO model's runtime graph, both returning the kernel implementations by name (for example
``jit_bf16:avx512_core_bf16``, ``brgconv_avx512_amx_bf16``); :func:`isa_paths` names the ISA family of each.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
"""The /proc/cpuinfo flags that decide which bf16 / int8 kernels can run."""
COMPUTE_PRIMITIVES = ("convolution", "matmul", "inner_product", "deconvolution")
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "MatMul", "FullyConnected", "Deconvolution")
_ISA_PATTERNS = (("AMX", re.compile(r"amx")), ("AVX-512 BF16", re.compile(r"avx512.*bf16|bf16.*avx512")),
                 ("VNNI", re.compile(r"vnni")), ("AVX-512", re.compile(r"avx512")), ("AVX2", re.compile(r"avx2")),
                 ("reference", re.compile(r"ref|gemm:jit|any")))


@functools.cache
def _cpuinfo(field: str) -> str | None:
    """The first ``field`` of ``/proc/cpuinfo`` (Linux), read once per process; ``None`` elsewhere."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of :data:`FLAGS` this CPU reports (Linux; empty elsewhere)."""
    flags = (_cpuinfo("flags") or "").split()
    return [flag for flag in FLAGS if flag in flags]


def onednn_kernels(call: Callable[[], Any]) -> Counter[str]:
    """Run ``call`` once with oneDNN's verbose log on and count its compute kernels as ``primitive:impl``
    (reorders left out). oneDNN prints to the process's standard output, which is captured at the file
    descriptor and restored."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                call()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return parse_onednn_verbose(log.read().decode(errors="replace").splitlines())


def parse_onednn_verbose(lines: Iterable[str]) -> Counter[str]:
    """Count the compute kernels in oneDNN verbose lines (``onednn_verbose,...,exec,cpu,<primitive>,<impl>,...``,
    oneDNN's documented format) as ``primitive:impl``; other lines are ignored."""
    kernels: Counter[str] = Counter()
    for line in lines:
        fields = line.split(",")
        if fields[0] != "onednn_verbose" or "exec" not in fields or "cpu" not in fields:
            continue
        at = fields.index("cpu")
        if len(fields) > at + 2 and fields[at + 1] in COMPUTE_PRIMITIVES:
            kernels[f"{fields[at + 1]}:{fields[at + 2]}"] += 1
    return kernels


def openvino_kernels(compiled_models: Iterable[Any]) -> Counter[str]:
    """Count the compute layers of compiled OpenVINO models by ``primitiveType`` (the kernel chosen) and
    ``runtimePrecision``, e.g. ``brgconv_avx512_bf16 (bf16)``."""
    kernels: Counter[str] = Counter()
    for compiled in compiled_models:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if str(info["layerType"].astype(str)) in COMPUTE_LAYERS:
                precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
                kernels[f"{info['primitiveType'].astype(str)} ({precision})"] += 1
    return kernels


VNNI_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


def int8_dot_products() -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX), or cannot tell (no /proc/cpuinfo). Without
    them oneDNN's x86 int8 convolutions multiply-add u8 x s8 pairs into saturating 16-bit sums: on an AVX2-only
    EPYC the torch int8 path then missed its quantize/dequantize reference by 17% (``tests/test_quantization.py``)."""
    flags = cpu_flags()
    return not flags or any(flag in flags for flag in VNNI_FLAGS)


def isa_paths(kernels: Iterable[str]) -> list[str]:
    """The ISA families (AMX, AVX-512 BF16, VNNI, AVX-512, AVX2, reference) named by kernel implementations,
    in that order; an int8 AVX-512 kernel is counted as VNNI where the CPU has it (oneDNN's int8 AVX-512 path
    is its VNNI one then)."""
    vnni = "avx512_vnni" in cpu_flags()
    found = set()
    for kernel in kernels:
        name = kernel.lower()
        family = next((label for label, pattern in _ISA_PATTERNS if pattern.search(name)), "other")
        if family == "AVX-512" and vnni and re.search(r"i8|int8|u8|s8", name):
            family = "VNNI"
        found.add(family)
    order = [label for label, _ in _ISA_PATTERNS] + ["other"]
    return [label for label in order if label in found]


def describe(kernels: Counter[str]) -> str:
    """``ISA families: kernel x count, ...`` on one line, most used kernel first."""
    if not kernels:
        return "no oneDNN / OpenVINO compute kernel seen (PyTorch's own kernels)"
    listing = ", ".join(f"{name} x{count}" for name, count in kernels.most_common())
    return f"{' + '.join(isa_paths(kernels))}: {listing}"


__all__ = ["cpu_flags", "cpu_name", "describe", "isa_paths", "onednn_kernels", "openvino_kernels", "parse_onednn_verbose"]
