"""int8 (PT2E, torchao's x86 inductor quantizer): every conv quantized and lowered to oneDNN int8,
outputs close to torchao's reference (simulated) graph and to fp32, argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrnet import create_model
from hrnet.cpu import int8_dot_products
from hrnet.inference import prepare
from hrnet.quantization import label_partitions, quantize_int8, relative_rms_error

from conftest import randomise, rel_err, spiky

pytest.importorskip("torchao")


needs_vnni = pytest.mark.skipif(not int8_dot_products(), reason="torch int8 needs VNNI or AMX (this CPU has neither)")


def test_torch_int8_refuses_a_cpu_without_vnni(monkeypatch) -> None:
    """On an AVX2-only CPU the torch int8 path is a one-line error naming the OpenVINO backend; with VNNI it runs."""
    import hrnet.cpu

    model = create_model("pose_hrnet_w18_small").eval()
    monkeypatch.setattr(hrnet.cpu, "cpu_flags", lambda: ["avx2"])
    with pytest.raises(ValueError, match="needs a CPU with VNNI or AMX.*use --backend openvino"):
        prepare(model, "int8", calibration=[torch.randn(1, 3, 64, 48)])
    from hrnet.inference import CalibrateThenInt8

    with pytest.raises(ValueError, match="needs a CPU with VNNI"):
        CalibrateThenInt8(model)
    monkeypatch.setattr(hrnet.cpu, "cpu_flags", lambda: ["avx512_vnni", "avx2"])
    assert hrnet.cpu.int8_dot_products()


@pytest.fixture(scope="module")
def pose() -> tuple[nn.Module, list[torch.Tensor], torch.Tensor]:
    """The small pose model with unit-gain weights and random BN statistics, calibration batches and
    an input batch."""
    model = randomise(create_model("pose_hrnet_w18_small"), seed=1)
    g = torch.Generator().manual_seed(3)
    calibration = [torch.randn(4, 3, 64, 48, generator=g) for _ in range(4)]
    return model, calibration, torch.randn(2, 3, 64, 48, generator=g)


def convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def test_every_conv_is_quantized(pose) -> None:
    """With one partition per conv/add/ReLU call, the quantizer annotates every convolution: each
    one gets a per-channel int8 weight in the converted graph."""
    model, calibration, _ = pose
    quantized = quantize_int8(model, calibration)
    targets = [str(n.target) for n in quantized.graph.nodes if n.op == "call_function"]
    assert targets.count("aten.conv2d.default") == convs(model)
    assert targets.count("quantized_decomposed.dequantize_per_channel.default") == convs(model)


def test_label_partitions_splits_a_shared_relu() -> None:
    """HRNet calls one ReLU module several times; each call must become its own partition."""
    from torch.fx.passes.utils.source_matcher_utils import get_source_partitions

    model = create_model("pose_hrnet_w18_small").eval()
    graph = torch.export.export(model, (torch.randn(1, 3, 64, 48),)).module()
    relus = [n for n in graph.graph.nodes if str(n.target) in ("aten.relu.default", "aten.relu_.default")]
    assert label_partitions(graph) >= len(relus) > 0
    partitions = get_source_partitions(graph.graph, [nn.ReLU])[nn.ReLU]
    assert len(partitions) == len(relus)
    assert all(len(p.output_nodes) == 1 for p in partitions)


@needs_vnni
def test_prepare_int8_compiled(pose) -> None:
    from torch._dynamo.utils import counters

    model, calibration, x = pose
    counters.clear()
    fast = prepare(model, "int8", calibration=calibration)
    assert fast.precision == "int8" and fast.compiled and fast.preset == model.preset
    with torch.inference_mode():
        ref = model(x)
        out = fast(x)
        simulated = fast.model(x.contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.float32 and out.is_contiguous()
    # every conv became one oneDNN int8 kernel (with ReLU, or with the add (+ ReLU) fused in)
    lowered = counters["inductor"]["qconv_unary_lower_count"] + counters["inductor"]["qconv2d_binary_lower_count"]
    assert lowered == convs(model)
    # the int8 kernels compute what torchao's reference quantize/dequantize graph computes, up to a
    # rounding flip here and there (a step is 1/255 of a tensor's range)
    assert rel_err(out, simulated) < 1e-2
    assert ((out - simulated).abs().mean() / simulated.abs().max()).item() < 1e-4
    # and int8 stays close to fp32 on this unit-gain network
    assert rel_err(out, ref) < 5e-2
    assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.999


@needs_vnni
def test_prepare_int8_argument_errors(pose) -> None:
    model, calibration, _ = pose
    with pytest.raises(ValueError, match="calibration="):
        prepare(model, "int8")
    with pytest.raises(ValueError, match="compile"):
        prepare(model, "int8", compile=False, calibration=calibration)
    with pytest.raises(ValueError, match="calibration is for precision='int8'"):
        prepare(model, "bf16", calibration=calibration)
    with pytest.raises(ValueError, match="calibration is empty"):
        prepare(model, "int8", calibration=[])
    with pytest.raises(ValueError, match="NCHW"):
        prepare(model, "int8", calibration=[torch.randn(3, 64, 48)])


@needs_vnni
def test_calibrate_then_int8(pose) -> None:
    """The first calls run fp32 exactly and are recorded; later calls run the int8 model built from them."""
    from hrnet.inference import CalibrateThenInt8

    model, calibration, x = pose
    lazy = CalibrateThenInt8(model, batches=2)
    with torch.inference_mode():
        first = [lazy(batch) for batch in calibration[:2]]
        assert lazy.int8 is None and lazy.prepared is None
        assert all(torch.equal(out, model(batch)) for out, batch in zip(first, calibration))
        out = lazy(x)
        ref = model(x)
    assert lazy.int8 is not None and lazy.int8.precision == "int8" and lazy.prepared is lazy.int8
    assert rel_err(out, ref) < 5e-2
    with pytest.raises(ValueError, match="batches"):
        CalibrateThenInt8(model, batches=0)


@needs_vnni
def test_cli_predict_int8(tmp_path, caplog) -> None:
    """`hrnet predict --precision int8`: calibrates on the first inputs, then keeps keypoints near fp32."""
    import json
    import logging

    import cv2
    import numpy as np

    from hrnet.cli import main

    model = randomise(create_model("pose_hrnet_w18_small"), seed=4)
    torch.save(model.state_dict(), tmp_path / "pose.pth")
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for name in "abcd":
        cv2.imwrite(str(tmp_path / "img" / f"{name}.jpg"), rng.integers(0, 255, (80, 60, 3), np.uint8))
    common = [str(tmp_path / "img"), "--input-size", "64", "48", "--weights", str(tmp_path / "pose.pth"),
              "--model", "pose_hrnet_w18_small"]
    assert main(["predict", *common, "--out", str(tmp_path / "fp32")]) == 0
    with caplog.at_level(logging.INFO, logger="hrnet.inference"):
        assert main(["predict", *common, "--precision", "int8", "--calibration-batches", "2",
                     "--out", str(tmp_path / "int8")]) == 0
    assert any("int8: calibrating" in r.getMessage() for r in caplog.records)

    def keypoints(folder: str) -> np.ndarray:
        images = json.loads((tmp_path / folder / "keypoints.json").read_text())["images"]
        return np.array([p["keypoints"] for image in images for p in image["persons"]]).reshape(-1, 3)[:, :2]

    moved = np.linalg.norm(keypoints("int8") - keypoints("fp32"), axis=-1)
    assert (moved <= 1.0).mean() >= 0.8
    assert main(["predict", *common, "--precision", "int8", "--device", "cuda"]) == 2


def test_relative_rms_error_by_hand() -> None:
    ref = {"a": torch.ones(4), "b": [torch.zeros(2), 2 * torch.ones(1)]}  # squared norm 4 + 4 = 8
    out = {"a": torch.ones(4), "b": [torch.ones(2), 2 * torch.ones(1)]}  # squared diff 2
    assert relative_rms_error(ref, out) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="structure"):
        relative_rms_error(ref, torch.ones(4))


@needs_vnni
def test_int8_error_flags_a_model_unfit_for_int8(pose, caplog) -> None:
    import logging

    model, batches = spiky()
    with caplog.at_level(logging.WARNING, logger="hrnet.inference"):
        bad = prepare(model, "int8", calibration=batches)
    assert bad.int8_error > 0.5
    assert any("too wide a range" in r.getMessage() for r in caplog.records)
    good = prepare(pose[0], "int8", calibration=pose[1])
    assert good.int8_error < 0.05


@needs_vnni
def test_calibrate_then_int8_falls_back(caplog) -> None:
    """A model int8 breaks runs bf16 (fp32 where bf16 is not native) after calibration instead."""
    import logging

    from hrnet.inference import CalibrateThenInt8

    model, batches = spiky()
    lazy = CalibrateThenInt8(model, batches=1)
    with torch.inference_mode(), caplog.at_level(logging.WARNING, logger="hrnet.inference"):
        lazy(batches[0])
        out = lazy(batches[1])
        ref = model(batches[1])
    assert lazy.int8 is not None and lazy.int8.int8_error > 0.5
    assert lazy.prepared is not None and lazy.prepared.precision in ("bf16", "fp32")
    assert any("running bf16 instead" in r.getMessage() for r in caplog.records)
    assert rel_err(out, ref) < 1e-2
