"""hrnet.cpu: the kernels a call ran, from oneDNN's verbose log (its documented line format) and from a compiled
OpenVINO graph, and the ISA family each kernel name stands for."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from hrnet import cpu, openvino_backend

# oneDNN's verbose format: marker, version, primitive, exec, engine, primitive kind, implementation, prop, ...
VERBOSE = """onednn_verbose,v1,info,oneDNN v3.7.1 (commit 8d263e693366ef8db40acc569cc7d8edf644556d)
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:abcd::f0 dst:bf16::blocked:aBcd16b::f0,,,1x16x32x32,0.01
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_inference,src:bf16,,alg:convolution_direct,mb1_ic16oc16,0.05
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_inference,src:bf16,,alg:convolution_direct,mb1_ic32oc32,0.05
onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit:avx2,forward_inference,src:f32,,,mb1,0.2
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16,,,2x2048:2048x1000,0.02
some other line printed meanwhile""".splitlines()


def test_parse_onednn_verbose_counts_executed_compute_kernels_only() -> None:
    assert cpu.parse_onednn_verbose(VERBOSE) == Counter({"convolution:brg_conv_fwd:avx512_core_amx": 2,
                                                        "matmul:brg_matmul:avx512_core_bf16": 1})


@pytest.mark.parametrize(("kernel", "family"), [
    ("convolution:brg_conv_fwd:avx512_core_amx", "AMX"), ("brgconv_avx512_amx_bf16 (bf16)", "AMX"),
    ("convolution:jit_bf16:avx512_core_bf16", "AVX-512 BF16"), ("brgconv_avx512_bf16 (bf16)", "AVX-512 BF16"),
    ("convolution:brg_conv_fwd:avx512_core_vnni", "VNNI"), ("convolution:jit:avx512_core", "AVX-512"),
    ("convolution:jit:avx2", "AVX2"), ("convolution:ref:any", "reference"),
])
def test_isa_paths_names_the_family_of_a_kernel(kernel: str, family: str) -> None:
    assert cpu.isa_paths([kernel]) == [family]


def test_isa_paths_keeps_a_fixed_order() -> None:
    assert cpu.isa_paths(["jit:avx2", "brg:avx512_core_amx", "jit:avx512_core"]) == ["AMX", "AVX-512", "AVX2"]


def test_onednn_kernels_sees_a_convolution_and_restores_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    """An fp32 convolution: it runs in oneDNN on every x86 CPU (bf16 autocast goes to PyTorch's own kernels where
    the CPU has no native bf16, as on an AVX2-only EPYC)."""
    conv = torch.nn.Conv2d(16, 16, 3).eval()
    x = torch.randn(8, 16, 32, 32)
    with torch.no_grad():
        seen = cpu.onednn_kernels(lambda: conv(x))
    print("after")
    out = capfd.readouterr().out
    assert "after" in out and "onednn_verbose" not in out
    assert sum(seen.values()) >= 1 and all(k.startswith("convolution:") for k in seen)


@pytest.mark.skipif(not openvino_backend.available(), reason="needs openvino")
def test_openvino_kernels_lists_the_compiled_convolutions() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    fast = openvino_backend.OpenVinoModel.convert(model, example=torch.randn(1, 3, 16, 16))
    fast(torch.randn(1, 3, 16, 16))
    seen = cpu.openvino_kernels(fast.compiled_models())
    assert sum(seen.values()) == 2 and all(k.endswith("(f32)") for k in seen)
