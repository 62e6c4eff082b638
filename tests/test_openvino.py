"""hrnet.openvino_backend: OpenVINO fp32 against eager PyTorch (1e-4), bf16 and its fallback, int8 with
its error check, dynamic shapes, save/load, and `hrnet predict/export` with the OpenVINO backend."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import as_list, randomise, rel_err, spiky
from torch import nn

import hrnet.openvino_backend as ovb
from hrnet import create_model
from hrnet.cli import main
from hrnet.inference import CalibrateThenInt8, prepare
from hrnet.models import HRNet, HRNetBackbone, OCRHead, get_preset

pytestmark = pytest.mark.skipif(not ovb.available(), reason="openvino is not installed")
needs_nncf = pytest.mark.skipif(not ovb.available(int8=True), reason="nncf is not installed")


def tiny_ocr() -> nn.Module:
    backbone = HRNetBackbone(get_preset("seg_hrnet_w18_small_v1").spec)
    return HRNet(backbone, OCRHead(backbone.out_channels, 19, mid_channels=32, key_channels=16, align_corners=True))


BUILDERS = {
    "pose_hrnet_w18_small": lambda: create_model("pose_hrnet_w18_small"),
    "seg_hrnet_w18_small_v1": lambda: create_model("seg_hrnet_w18_small_v1"),
    "hrnet_w18_small": lambda: create_model("hrnet_w18_small"),
    "hrnet_w18_small features": lambda: create_model("hrnet_w18_small", features_only=True),
    "tiny_ocr": tiny_ocr,
}


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[nn.Module, ovb.OpenVinoModel]]:
    """Each model (random unit-gain weights, random BN statistics) and its OpenVINO fp32 conversion."""
    result = {}
    for i, (name, build) in enumerate(BUILDERS.items()):
        model = randomise(build(), seed=i).eval()
        result[name] = model, prepare(model, "fp32", backend="openvino")
    return result


@pytest.mark.parametrize("name", list(BUILDERS))
def test_fp32_matches_pytorch_at_any_shape(converted, name: str) -> None:
    """Traced once, then run at new batch sizes and image sizes (each compiled on first use): the
    same output structure as PyTorch and values within 1e-4 of its output scale."""
    model, fast = converted[name]
    assert fast.precision == "fp32"
    g = torch.Generator().manual_seed(5)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 64)]:
        x = torch.randn(*shape, generator=g)
        with torch.inference_mode():
            ref = model(x)
        out = fast(x)
        assert type(out) is type(ref)
        assert [t.shape for t in as_list(out)] == [t.shape for t in as_list(ref)]
        assert rel_err(out, ref) < 1e-4


def test_fp32_comparison_is_sensitive(converted) -> None:
    """A one-percent change to one weight is far above the 1e-4 bar, so the check above can fail."""
    model, fast = converted["pose_hrnet_w18_small"]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        changed = randomise(create_model("pose_hrnet_w18_small"), seed=0).eval()
        changed.backbone.stage4[0].branches[0][0].conv1.weight.mul_(1.01)
        assert rel_err(fast(x), changed(x)) > 1e-3


def compiled_precision(fast: ovb.OpenVinoModel) -> str:
    """The inference precision OpenVINO compiled the most recent input shape with ("f32", "bf16")."""
    request = next(reversed(fast._requests.values()))[0]
    return request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").to_string()


def test_fp32_precision_is_really_f32(converted) -> None:
    """OpenVINO's default on AMX CPUs is bf16 even for an fp32 model: fp32 must ask for f32."""
    _, fast = converted["seg_hrnet_w18_small_v1"]
    fast(torch.randn(1, 3, 64, 64))
    assert compiled_precision(fast) == "f32"


@pytest.mark.skipif(not ovb.available() or not ovb.bf16_native(), reason="no native bf16 on this CPU")
def test_bf16_close_to_fp32(converted) -> None:
    model, _ = converted["seg_hrnet_w18_small_v1"]
    fast = prepare(model, "bf16", backend="openvino")
    assert fast.precision == "bf16"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref = model(x)
    out = fast(x)
    assert compiled_precision(fast) == "bf16"
    assert 1e-5 < rel_err(out, ref) < 5e-2  # above the fp32 error: bf16 really ran
    assert (out.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.9


def test_bf16_fallback(converted, monkeypatch, caplog) -> None:
    """Where OpenVINO lists no native bf16, bf16 runs fp32 (same outputs as fp32) and says so."""
    model, fp32 = converted["seg_hrnet_w18_small_v1"]
    monkeypatch.setattr(ovb, "bf16_native", lambda: False)
    with caplog.at_level(logging.WARNING, logger="hrnet.inference"):
        fast = prepare(model, "bf16", backend="openvino")
    assert fast.precision == "fp32"
    assert any("no native bf16" in r.getMessage() for r in caplog.records)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(fast(x), fp32(x), rtol=0, atol=1e-6)
    assert compiled_precision(fast) == "f32"


def test_compiled_shapes_are_bounded(converted) -> None:
    _, fast = converted["pose_hrnet_w18_small"]
    for width in range(32, 32 + 8 * (ovb.MAX_SHAPES + 2), 8):
        fast(torch.randn(1, 3, 64, width))
    assert len(fast._requests) == ovb.MAX_SHAPES
    assert ((1, 3, 64, 32 + 8 * (ovb.MAX_SHAPES + 1)), 1) in fast._requests


def test_batches_split_across_streams(converted) -> None:
    """Batch 5 on 2 streams runs as chunks of 3 and 2 in parallel (two compiled shapes); the
    concatenated outputs equal one stream's, and batch 1 stays one stream."""
    model, fast = converted["tiny_ocr"]  # two outputs, both concatenated along the batch
    fast.num_threads, fast.streams = 2, None
    assert fast.chunks(5) == [3, 2] and fast.chunks(1) == [1] and fast.chunks(8) == [4, 4]
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    split = fast(x)
    assert {key for key in fast._requests if key[0][2:] == (64, 64) and key[1] == 2} == {
        ((3, 3, 64, 64), 2), ((2, 3, 64, 64), 2)}
    fast.streams = 1
    whole = fast(x)
    assert ((5, 3, 64, 64), 1) in fast._requests
    with torch.inference_mode():
        ref = model(x)
    for a, b, r in zip(split, whole, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        assert rel_err(a, r) < 1e-4
    fast.streams = None


def test_save_and_load(converted, tmp_path) -> None:
    model, fast = converted["tiny_ocr"]  # a list output ([aux, ocr]) must survive the file
    path = fast.save(tmp_path / "ocr.xml")
    assert path.with_suffix(".bin").is_file()
    loaded = ovb.OpenVinoModel.load(path)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    out, ref = loaded(x), fast(x)
    assert isinstance(out, list) and len(out) == 2
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="float model"):
        ovb.OpenVinoModel.load(path, "int8")
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        ovb.OpenVinoModel.load(tmp_path / "missing.xml")
    with pytest.raises(ValueError, match=r"\.xml"):
        fast.save(tmp_path / "ocr.onnx")


def test_prepare_rejects_wrong_arguments(converted) -> None:
    model, _ = converted["pose_hrnet_w18_small"]
    with pytest.raises(ValueError, match="backend must be one of"):
        prepare(model, "fp32", backend="tensorrt")
    with pytest.raises(ValueError, match="OpenVINO always compiles"):
        prepare(model, "fp32", compile=False, backend="openvino")
    with pytest.raises(ValueError, match="calibration"):
        prepare(model, "int8", backend="openvino")
    with pytest.raises(ValueError, match="calibration"):
        prepare(model, "bf16", calibration=[torch.randn(1, 3, 64, 64)], backend="openvino")
    with pytest.raises(ValueError, match="NCHW"):
        converted["pose_hrnet_w18_small"][1](torch.randn(3, 64, 64))


@needs_nncf
def test_int8_close_on_a_fit_model_and_flagged_on_an_unfit_one(converted, caplog) -> None:
    """NNCF int8 really runs int8 kernels, stays close on the small pose model, and ``int8_error``
    flags (with a warning) a model whose activations int8 cannot hold."""
    model, _ = converted["pose_hrnet_w18_small"]
    g = torch.Generator().manual_seed(3)
    calibration = [torch.randn(4, 3, 64, 48, generator=g) for _ in range(4)]
    fast = prepare(model, "int8", calibration=calibration, backend="openvino")
    assert fast.precision == "int8"
    assert fast.int8_error is not None and 0 < fast.int8_error < 0.1
    x = torch.randn(2, 3, 64, 48, generator=g)
    with torch.inference_mode():
        assert rel_err(fast(x), model(x)) < 0.2
    request = next(iter(fast._requests.values()))[0]
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str)
                  for op in request.get_compiled_model().get_runtime_model().get_ops()}
    assert precisions & {"i8", "u8"}, precisions

    bad_model, batches = spiky()
    with caplog.at_level(logging.WARNING, logger="hrnet.inference"):
        bad = prepare(bad_model, "int8", calibration=batches, backend="openvino")
    assert bad.int8_error > 0.5
    assert any("use bf16" in r.getMessage() for r in caplog.records)


@needs_nncf
def test_accuracy_aware_int8_keeps_the_layers_that_hurt_in_float() -> None:
    """int8_max_error: NNCF's accuracy-aware quantization puts back into float what int8 cannot hold, until the
    outputs are within the bound of float's; on the spiky network plain int8 is off by more than half."""
    bad_model, batches = spiky()
    plain = prepare(bad_model, "int8", calibration=batches, backend="openvino", cache=False)
    aware = prepare(bad_model, "int8", calibration=batches, backend="openvino", cache=False, int8_max_error=0.02)
    assert plain.int8_error > 0.5 and aware.int8_error < 0.02
    with torch.inference_mode():
        assert rel_err(aware(batches[1]), bad_model(batches[1])) < 0.02
    with pytest.raises(ValueError, match="int8_max_error applies to precision='int8' with backend='openvino'"):
        prepare(bad_model, "int8", calibration=batches, int8_max_error=0.02)


@needs_nncf
def test_calibrate_then_int8_falls_back_to_openvino_bf16() -> None:
    model, batches = spiky()
    lazy = CalibrateThenInt8(model, batches=1, backend="openvino")
    with torch.inference_mode():
        lazy(batches[0])
        out = lazy(batches[1])
        ref = model(batches[1])
    assert isinstance(lazy.int8, ovb.OpenVinoModel) and lazy.int8.int8_error > 0.5
    assert isinstance(lazy.prepared, ovb.OpenVinoModel) and lazy.prepared.precision in ("bf16", "fp32")
    assert rel_err(out, ref) < 1e-2


@pytest.fixture(scope="module")
def pose_checkpoint(tmp_path_factory):
    """A small pose model with visible heatmaps (the official init gives outputs near 0), its
    state dict on disk, and a folder with one image."""
    import cv2

    folder = tmp_path_factory.mktemp("ov_predict")
    torch.manual_seed(0)
    model = create_model("pose_hrnet_w18_small").eval()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.1)
    torch.save(model.state_dict(), folder / "pose.pth")
    (folder / "img").mkdir()
    cv2.imwrite(str(folder / "img" / "a.jpg"), np.random.default_rng(0).integers(0, 255, (80, 60, 3), np.uint8))
    return folder


def _keypoints(folder) -> np.ndarray:
    data = json.loads((folder / "keypoints.json").read_text())
    return np.reshape(data["images"][0]["persons"][0]["keypoints"], (-1, 3))


def test_predict_and_export_with_openvino(pose_checkpoint) -> None:
    """`hrnet predict --backend openvino` (from the checkpoint, and from `hrnet export openvino`'s file)
    gives PyTorch's keypoints."""
    folder = pose_checkpoint
    common = [str(folder / "img"), "--input-size", "64", "48", "--model", "pose_hrnet_w18_small"]
    weights = ["--weights", str(folder / "pose.pth")]
    assert main(["predict", *common, *weights, "--out", str(folder / "pt")]) == 0
    assert main(["predict", *common, *weights, "--backend", "openvino", "--out", str(folder / "ov")]) == 0
    pt = _keypoints(folder / "pt")
    assert np.allclose(_keypoints(folder / "ov"), pt, atol=0.05)

    assert main(["export", "openvino", "pose_hrnet_w18_small", *weights, "--input-size", "64", "48",
                 "--out", str(folder / "pose.xml")]) == 0
    assert (folder / "pose.xml").is_file() and (folder / "pose.bin").is_file()
    assert main(["predict", str(folder / "img"), "--input-size", "64", "48", "--weights", str(folder / "pose.xml"),
                 "--backend", "openvino", "--out", str(folder / "ov_file")]) == 0
    assert np.allclose(_keypoints(folder / "ov_file"), pt, atol=0.05)
    assert main(["predict", *common, *weights, "--backend", "openvino", "--compile"]) == 2
    assert main(["predict", *common, "--weights", str(folder / "pose.xml"), "--backend", "torch"]) == 2


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_files_predict_like_their_checkpoint(tmp_path, fmt: str) -> None:
    """A Lightning-style checkpoint whose settings differ from the defaults (MPII keypoints, DARK
    decoding, sigma 3): the exported file carries them, so prediction from it decodes the same way."""
    from hrnet.tasks.pose.predict import PosePredictor

    torch.manual_seed(0)
    model = create_model("pose_hrnet_w18_small", num_joints=16)
    hparams = {"model": "pose_hrnet_w18_small", "keypoints": "mpii", "decode": "dark", "sigma": 3.0,
               "input_size": [64, 48], "lr": 0.1}
    weights = tmp_path / "pose.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": hparams},
               weights)
    out = tmp_path / ("pose.onnx" if fmt == "onnx" else "pose.xml")
    assert main(["export", fmt, "--weights", str(weights), "--out", str(out)]) == 0
    from_ckpt, from_file = PosePredictor.from_checkpoint(weights), PosePredictor.from_checkpoint(out)
    assert from_file.model.settings == {"keypoints": "mpii", "decode": "dark", "sigma": 3.0}
    for predictor in (from_ckpt, from_file):
        assert predictor.codec.decode_method == "dark" and predictor.keypoints.num_joints == 16
    assert from_file.codec.__dict__.keys() == from_ckpt.codec.__dict__.keys()
    assert all(np.array_equal(np.asarray(v), np.asarray(from_ckpt.codec.__dict__[k]))
               for k, v in from_file.codec.__dict__.items() if not callable(v))


def _no_conversion(*args, **kwargs):
    raise AssertionError("converted again although the cache holds this model")


def test_conversion_cache_is_keyed_by_weights_and_skips_conversion(tmp_path, monkeypatch) -> None:
    """prepare(backend="openvino") stores the conversion under a digest of the model: the same weights in
    a new model object convert no more and give the same outputs; a changed weight converts anew."""
    model = randomise(create_model("pose_hrnet_w18_small"), seed=3).eval()
    x = torch.randn(1, 3, 64, 48)
    first = prepare(model, "fp32", backend="openvino", cache=tmp_path)
    entries = [p for p in (tmp_path / "openvino").iterdir() if p.name != "compiled"]
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file() and (entries[0] / "model.bin").is_file()
    twin = create_model("pose_hrnet_w18_small")
    twin.load_state_dict(model.state_dict())
    with monkeypatch.context() as patched:
        patched.setattr(ovb.OpenVinoModel, "convert", _no_conversion)
        again = prepare(twin.eval(), "fp32", backend="openvino", cache=tmp_path)
    assert torch.equal(as_list(again(x))[0], as_list(first(x))[0])
    assert any((tmp_path / "openvino" / "compiled").iterdir())  # OpenVINO's blob of the compiled shape
    with torch.no_grad():
        twin.head.final_layer.weight[0, 0] += 1.0
    prepare(twin, "fp32", backend="openvino", cache=tmp_path)
    assert len([p for p in (tmp_path / "openvino").iterdir() if p.name != "compiled"]) == 2
    prepare(model, "fp32", backend="openvino", cache=False)
    assert len(list((tmp_path / "openvino").iterdir())) == 3


def test_file_key_follows_the_bytes_and_the_head(tmp_path) -> None:
    """A copied checkpoint has the key of the original; another head or preset, or other bytes, another key."""
    model = create_model("pose_hrnet_w18_small")
    torch.save(model.state_dict(), tmp_path / "a.pth")
    (tmp_path / "b.pth").write_bytes((tmp_path / "a.pth").read_bytes())
    key = ovb.ConversionCache.file_key
    assert key(tmp_path / "a.pth", "pose_hrnet_w18_small", {"num_joints": 17}) == \
        key(tmp_path / "b.pth", "pose_hrnet_w18_small", {"num_joints": 17})
    assert key(tmp_path / "a.pth", "pose_hrnet_w18_small", {"num_joints": 16}) != \
        key(tmp_path / "a.pth", "pose_hrnet_w18_small", {"num_joints": 17})
    assert key(tmp_path / "a.pth", "pose_hrnet_w32", {"num_joints": 17}) != \
        key(tmp_path / "a.pth", "pose_hrnet_w18_small", {"num_joints": 17})
    (tmp_path / "b.pth").write_bytes((tmp_path / "a.pth").read_bytes() + b"\0")
    assert key(tmp_path / "b.pth", "pose_hrnet_w18_small", {"num_joints": 17}) != \
        key(tmp_path / "a.pth", "pose_hrnet_w18_small", {"num_joints": 17})


def test_repeated_predict_reads_the_cache_and_off_keeps_nothing(pose_checkpoint, tmp_path, monkeypatch) -> None:
    """`hrnet predict --backend openvino`: the first run converts the checkpoint into --cache-dir, the second
    builds no PyTorch model and converts nothing, with the same keypoints; --cache-dir off writes no cache."""
    import hrnet.tasks.base as base

    folder = pose_checkpoint
    common = [str(folder / "img"), "--input-size", "64", "48", "--model", "pose_hrnet_w18_small",
              "--weights", str(folder / "pose.pth"), "--backend", "openvino", "--cache-dir", str(tmp_path / "cache")]
    assert main(["predict", *common, "--out", str(tmp_path / "first")]) == 0
    with monkeypatch.context() as patched:
        patched.setattr(ovb.OpenVinoModel, "convert", _no_conversion)
        patched.setattr(base, "create_model", _no_conversion)
        assert main(["predict", *common, "--precision", "bf16", "--out", str(tmp_path / "second")]) == 0
        assert main(["predict", *common, "--out", str(tmp_path / "third")]) == 0
    assert np.array_equal(_keypoints(tmp_path / "third"), _keypoints(tmp_path / "first"))
    monkeypatch.setenv("HRNET_CACHE", str(tmp_path / "env"))
    assert main(["predict", *common[:-2], "--cache-dir", "off", "--out", str(tmp_path / "off")]) == 0
    assert not (tmp_path / "env").exists()
    assert main(["predict", *common[:-2], "--out", str(tmp_path / "env_out")]) == 0
    assert (tmp_path / "env" / "openvino").is_dir()


CONVERT_ONE = """
import sys, torch
from hrnet import create_model
from hrnet.inference import prepare
torch.manual_seed(0)
model = create_model("pose_hrnet_w18_small").eval()
out = prepare(model, "fp32", backend="openvino", cache=sys.argv[1])(torch.ones(1, 3, 64, 48))
print(float(out.sum()))
"""


def test_concurrent_runs_share_one_cache_safely(tmp_path) -> None:
    """Two processes converting the same model into one cache at once: both run, the same outputs, one
    entry, no partial folders left behind."""
    import subprocess
    import sys

    runs = [subprocess.Popen([sys.executable, "-c", CONVERT_ONE, str(tmp_path)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [run.communicate(timeout=300)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0] and outs[0] == outs[1]
    names = sorted(p.name for p in (tmp_path / "openvino").iterdir())
    assert len(names) == 2 and "compiled" in names and not any(name.startswith(".") for name in names)


def test_an_unwritable_cache_is_a_warning_and_the_model_still_runs(tmp_path, caplog) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    model = create_model("pose_hrnet_w18_small").eval()
    with caplog.at_level(logging.WARNING, logger="hrnet.inference"):
        fast = prepare(model, "fp32", backend="openvino", cache=blocker)
    assert any("not writable" in r.getMessage() for r in caplog.records) and fast.cache_dir is None
    x = torch.randn(1, 3, 64, 48)
    with torch.inference_mode():
        assert rel_err(fast(x), model(x)) < 1e-4
