"""hrnet.inference: BN folding exactness, channels_last, bf16 (and its fallback), compiled fp32 and bf16."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import pytest
import torch
from torch import nn

import hrnet.inference as inference
from hrnet import create_model
from hrnet.inference import InferenceModel, bf16_supported, count_batchnorm, fold_batchnorm, prepare
from hrnet.models import HigherHead, HRNet, HRNetBackbone, OCRHead, get_preset

from conftest import as_list, randomise, rel_err

SMALL = ["seg_hrnet_w18_small_v1", "pose_hrnet_w18_small", "hrnet_w18_small"]


def tiny_ocr() -> nn.Module:
    """The OCR head (narrow) on the small backbone: same module structure as seg_hrnet_w48_ocr."""
    backbone = HRNetBackbone(get_preset("seg_hrnet_w18_small_v1").spec)
    return HRNet(backbone, OCRHead(backbone.out_channels, 19, mid_channels=32, key_channels=16, align_corners=True))


def tiny_higher() -> nn.Module:
    """HigherHRNet's deconvolution head (ConvTranspose2d + BN) on the small pose backbone."""
    backbone = HRNetBackbone(get_preset("pose_hrnet_w18_small").spec)
    return HRNet(backbone, HigherHead(backbone.out_channels, 17, num_basic_blocks=1))


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    **{name: (lambda name=name: create_model(name)) for name in SMALL},
    "tiny_ocr": tiny_ocr,
    "tiny_higher": tiny_higher,
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: randomise(build(), seed=i) for i, (name, build) in enumerate(BUILDERS.items())}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def outputs(models: dict[str, nn.Module], x: torch.Tensor) -> Callable[[str, str], object]:
    """Cached outputs: ``outputs(name, "eager")`` (the original) or ``outputs(name, "fp32")`` (prepare)."""
    cache: dict[tuple[str, str], object] = {}

    def get(name: str, kind: str) -> object:
        if (name, kind) not in cache:
            model = models[name] if kind == "eager" else prepare(models[name])
            with torch.inference_mode():
                cache[name, kind] = model(x)
        return cache[name, kind]

    return get


@pytest.mark.parametrize("name", list(BUILDERS))
def test_fold_batchnorm_exact(models: dict[str, nn.Module], x: torch.Tensor, outputs, name: str) -> None:
    model = models[name]
    assert count_batchnorm(model) > 0
    ref = outputs(name, "eager")
    with torch.inference_mode():
        folded = fold_batchnorm(model)
        out = folded(x)
    assert not folded.training
    assert count_batchnorm(folded) == 0  # every pair of this codebase is folded, OCR and deconv included
    assert rel_err(out, ref) < 1e-5
    assert all(not p.requires_grad for p in folded.parameters())


def test_fold_comparison_is_sensitive(models: dict[str, nn.Module], x: torch.Tensor) -> None:
    """The exactness check above can fail: folding stale statistics is caught."""
    model = models["seg_hrnet_w18_small_v1"]
    folded = fold_batchnorm(model)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        saved = bn.running_var.clone()
        bn.running_var.mul_(1.5)
        try:
            changed = fold_batchnorm(model)
        finally:
            bn.running_var.copy_(saved)
        assert rel_err(changed(x), folded(x)) > 1e-3


def test_fold_skips_what_it_cannot_fold() -> None:
    no_stats = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    grouped = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, groups=2), nn.BatchNorm2d(4))
    bn_first = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1))
    for model in (no_stats, grouped, bn_first):
        randomise(model)
        assert count_batchnorm(fold_batchnorm(model)) == 1
    folds = nn.Sequential(nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1), nn.BatchNorm2d(6))
    randomise(folds)
    y = torch.randn(2, 4, 5, 5)
    folded = fold_batchnorm(folds)
    assert count_batchnorm(folded) == 0
    with torch.no_grad():
        assert rel_err(folded(y), folds(y)) < 1e-5


@pytest.mark.parametrize("name", ["seg_hrnet_w18_small_v1", "tiny_ocr"])
def test_prepare_channels_last_matches_eager(models: dict[str, nn.Module], outputs, name: str) -> None:
    model = models[name]
    fast = prepare(model)
    assert isinstance(fast, InferenceModel) and fast.precision == "fp32" and fast.channels_last
    assert not fast.training and not fast.compiled
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    ref, out = outputs(name, "eager"), outputs(name, "fp32")
    assert rel_err(out, ref) < 1e-5
    assert type(out) is type(ref)
    assert all(t.is_contiguous() for t in as_list(out))


def test_prepare_leaves_original_untouched(x: torch.Tensor) -> None:
    model = randomise(create_model("pose_hrnet_w18_small")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = count_batchnorm(model)
    fast = prepare(model, channels_last=True)
    assert model.training and count_batchnorm(model) == n_bn
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert all(p.is_contiguous() and p.requires_grad for p in model.parameters())
    assert fast.preset == "pose_hrnet_w18_small"
    assert fast.model is not model


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_prepare_bf16(models: dict[str, nn.Module], x: torch.Tensor, outputs,
                      caplog: pytest.LogCaptureFixture) -> None:
    name = "seg_hrnet_w18_small_v1"
    model = models[name]
    with caplog.at_level(logging.INFO, logger="hrnet.inference"):
        fast = prepare(model, precision="bf16")
    assert fast.precision == "bf16"
    assert any(r.levelno == logging.INFO and "bf16" in r.getMessage() for r in caplog.records)
    with torch.inference_mode():
        out = fast(x)
    ref = outputs(name, "eager")
    assert out.dtype == torch.float32
    err = rel_err(out, ref)
    assert 0 < err < 5e-2  # non-zero: bf16 really ran
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agree >= 0.9


def test_prepare_bf16_fallback(models: dict[str, nn.Module], x: torch.Tensor, outputs,
                               caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "seg_hrnet_w18_small_v1"
    model = models[name]
    monkeypatch.setattr(inference, "bf16_supported", lambda device: False)
    with caplog.at_level(logging.INFO, logger="hrnet.inference"):
        fast = prepare(model, precision="bf16")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "hrnet.inference"]
    assert len(warnings) == 1 and "fp32" in warnings[0].getMessage()
    assert fast.precision == "fp32"
    with torch.inference_mode():
        out = fast(x)
    ref = outputs(name, "fp32")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.fixture(scope="module")
def pose_small(models: dict[str, nn.Module]) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The small pose model at batch 2 (the batch dimension must survive compilation) and its eager output."""
    model = models["pose_hrnet_w18_small"]
    y = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        return model, y, model(y)


def test_prepare_compile_fp32_matches_eager(pose_small) -> None:
    """A real inductor compile: frozen weights packed for oneDNN with fused post-ops, within 1e-4."""
    from torch._dynamo.utils import counters

    model, y, ref = pose_small
    counters.clear()
    fast = prepare(model, "fp32", compile=True)
    assert fast.compiled
    with torch.inference_mode():
        out = fast(y)
    assert rel_err(out, ref) < 1e-4
    # freezing really ran: convolutions were matched for ReLU and add + ReLU fusion
    assert counters["inductor"]["mkldnn_unary_fusion_matcher_count"] > 0
    assert counters["inductor"]["mkldnn_conv_binary_unary_fusion_matcher_count"] > 0
    # guards on the module are dropped, those on the input are not: a new batch size recompiles
    frames = counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        single = fast(y[:1])
    assert counters["stats"]["unique_graphs"] == frames + 1
    assert rel_err(single, ref[:1]) < 1e-4


def test_prepare_compile_keeps_instances_apart(pose_small) -> None:
    """Two compiled models of one architecture and input shape run their own (frozen) weights."""
    model, y, ref = pose_small
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.final_layer.weight.mul_(-3)
        other_ref = other(y)
    first, second = prepare(model, "fp32", compile=True), prepare(other, "fp32", compile=True)
    with torch.inference_mode():
        out, other_out = first(y), second(y)
    assert rel_err(other_ref, ref) > 1
    assert rel_err(out, ref) < 1e-4 and rel_err(other_out, other_ref) < 1e-4


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_prepare_compile_bf16_matches_eager(pose_small) -> None:
    model, y, ref = pose_small
    fast = prepare(model, "bf16", compile=True)
    with torch.inference_mode():
        out = fast(y)
    assert out.dtype == torch.float32 and out.is_contiguous()
    err = rel_err(out, ref)
    assert 0 < err < 5e-2
    # the heatmap peaks (what decoding reads) stay where fp32 puts them for nearly every joint
    peaks = out.flatten(2).argmax(-1) == ref.flatten(2).argmax(-1)
    assert peaks.float().mean().item() >= 0.9


def test_prepare_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        prepare(nn.Conv2d(3, 3, 1), precision="fp16")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def test_tune_malloc_sets_glibc() -> None:
    """After tune_malloc no freed small block goes to a fast bin (the default puts them there once
    the thread cache is full: 3,712 bytes for these 64 blocks) and a 16 MiB block comes from the
    heap, not from mmap."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    assert inference.tune_malloc() is True
    in_fast_bins = libc.mallinfo2().fsmblks  # other threads' arenas may hold some from before
    blocks = [libc.malloc(48) for _ in range(64)]
    for block in blocks:
        libc.free(block)
    assert libc.mallinfo2().fsmblks == in_fast_bins
    mapped = libc.mallinfo2().hblkhd
    big = libc.malloc(16 << 20)
    assert libc.mallinfo2().hblkhd == mapped
    libc.free(big)
