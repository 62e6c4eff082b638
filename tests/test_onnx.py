"""ONNX export (dynamo exporter) and the onnxruntime wrapper, on small presets and inputs."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from hrnet import export as export_mod  # noqa: E402
from hrnet.cli import main  # noqa: E402
from hrnet.export import OnnxModel, export_onnx, max_abs_diff
from hrnet.models import create_model  # noqa: E402
from hrnet.models.presets import init_weights  # noqa: E402

RTOL = 1e-4  # max abs difference relative to the largest output magnitude


def _randomized(name: str) -> nn.Module:
    """A preset with weights and BN statistics that give outputs of order 1 (the official
    N(0, 0.001) init gives ~1e-12 outputs, which would make any comparison vacuous)."""
    torch.manual_seed(0)
    model = create_model(name)
    init_weights(model, "kaiming")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def _check(model: nn.Module, onnx_model: OnnxModel, shape: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    diff, scale = max_abs_diff(model, onnx_model, torch.randn(*shape))
    assert scale > 1e-3, "outputs too small for a meaningful comparison"
    assert diff <= RTOL * scale, f"{shape}: max abs diff {diff:.3g} vs output scale {scale:.3g}"


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    model = _randomized("pose_hrnet_w18_small")
    path = export_onnx(model, tmp_path_factory.mktemp("pose") / "pose.onnx", input_size=(64, 48))
    return model, OnnxModel(path)


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    model = _randomized("seg_hrnet_w18_small_v1")
    path = export_onnx(model, tmp_path_factory.mktemp("seg") / "seg.onnx", input_size=(64, 96))
    return model, OnnxModel(path)


def test_pose_matches_pytorch_and_dynamic_batch(pose):
    model, onnx_model = pose
    assert onnx_model.output_names == ["output"] and onnx_model.preset == "pose_hrnet_w18_small"
    out = onnx_model(torch.randn(1, 3, 64, 48))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 17, 16, 12) and out.dtype == torch.float32
    _check(model, onnx_model, (1, 3, 64, 48))
    _check(model, onnx_model, (3, 3, 64, 48))  # exported at batch 1


def test_pose_dynamic_hw(pose):
    model, onnx_model = pose
    assert onnx_model.metadata["dynamic_hw"] == "true"
    _check(model, onnx_model, (2, 3, 96, 72))


def test_seg_matches_pytorch_dynamic_batch_and_odd_size(seg):
    model, onnx_model = seg
    _check(model, onnx_model, (1, 3, 64, 96))
    _check(model, onnx_model, (3, 3, 70, 54))  # odd size, other batch: exact-size upsampling in the graph
    assert onnx_model(torch.randn(2, 3, 70, 54)).shape == (2, 19, 18, 14)
    assert not (tmp := onnx_model.path.with_name(onnx_model.path.name + ".tmp")).exists(), tmp


class TwoOutputs(nn.Module):
    """A small stand-in for HRNet-OCR's ``[aux, ocr]`` output list."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.cls = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        aux = F.interpolate(self.cls(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return [aux, self.cls(torch.relu(y))]


def test_list_outputs_and_static_hw(tmp_path):
    torch.manual_seed(0)
    model = TwoOutputs().eval()
    path = export_onnx(model, tmp_path / "two.onnx", input_size=(40, 36), dynamic_hw=False)
    onnx_model = OnnxModel(path)
    assert onnx_model.output_names == ["output0", "output1"]  # no preset: numbered, not guessed
    outs = onnx_model(torch.randn(3, 3, 40, 36))  # batch stays dynamic
    assert isinstance(outs, list) and [tuple(o.shape) for o in outs] == [(3, 2, 40, 36), (3, 2, 10, 9)]
    _check(model, onnx_model, (2, 3, 40, 36))
    assert onnx_model.session.get_inputs()[0].shape[2:] == [40, 36]
    with pytest.raises(Exception):  # static H/W: another size is rejected by onnxruntime
        onnx_model(torch.randn(1, 3, 48, 36))


@pytest.mark.parametrize("preset, names", [("seg_hrnet_w48_ocr", ["aux", "logits"]),
                                           ("higher_hrnet_w32", ["heatmaps_and_tags", "heatmaps_2x"]),
                                           ("pose_hrnet_w32", ["output"])])
def test_output_names_come_from_the_preset(preset, names):
    """Exported outputs are named by ``Preset.outputs`` (HigherHRNet's two outputs are not OCR's aux/logits)."""
    model = torch.nn.Identity()
    model.preset = preset
    outputs = torch.zeros(1) if len(names) == 1 else [torch.zeros(1)] * len(names)
    assert export_mod._output_names(model, outputs) == (names, len(names) > 1)


def test_falls_back_to_static_hw(tmp_path, monkeypatch, caplog):
    real = export_mod._export_program

    def no_dynamic_hw(model, example, names, dynamic_shapes, opset):
        if dynamic_shapes and 2 in dynamic_shapes[0]:
            raise RuntimeError("simulated exporter failure")
        return real(model, example, names, dynamic_shapes, opset)

    monkeypatch.setattr(export_mod, "_export_program", no_dynamic_hw)
    with caplog.at_level(logging.WARNING, logger="hrnet.export"):
        path = export_onnx(TwoOutputs(), tmp_path / "fallback.onnx", input_size=(40, 36))
    assert "static 40x36" in caplog.text
    onnx_model = OnnxModel(path)
    assert onnx_model.metadata["dynamic_hw"] == "false"
    assert onnx_model.session.get_inputs()[0].shape[2:] == [40, 36]


def test_cli_export_writes_file_and_reports_diff(tmp_path, capsys):
    """A Lightning-style checkpoint: preset, keypoint set and input size come from its hyper-parameters."""
    torch.manual_seed(0)
    model = create_model("pose_hrnet_w18_small", num_joints=16)
    init_weights(model, "kaiming")
    weights = tmp_path / "pose.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": "pose_hrnet_w18_small", "keypoints": "mpii",
                                     "input_size": [64, 48]}}, weights)
    out = tmp_path / "out" / "pose.onnx"
    code = main(["export", "onnx", "--weights", str(weights), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert str(out) in printed and "input 64x48" in printed and "max abs diff" in printed
    diff = float(printed.split("max abs diff onnxruntime vs PyTorch: ")[1].split()[0])
    scale = float(printed.split("max abs output ")[1].rstrip(")\n"))
    assert scale > 1e-3 and diff <= RTOL * scale
    onnx_model = OnnxModel(out)
    assert onnx_model.input_size == (64, 48)
    assert onnx_model(torch.randn(2, 3, 64, 48)).shape == (2, 16, 16, 12)


def test_cli_export_errors(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    torch.save({"x": torch.zeros(1)}, weights)
    assert main(["export", "onnx", "no_such_model", "--weights", str(weights)]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert main(["export", "onnx", "pose_hrnet_w18_small", "--weights", str(tmp_path / "missing.pth")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["export", "onnx", "--weights", str(weights)]) == 2  # plain state dict: no model name
    assert "no model name" in capsys.readouterr().err
    assert main(["export", "onnx", "pose_hrnet_w18_small", "--weights", str(weights), "--num-classes", "3"]) == 2
    assert "does not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --weights is required
        main(["export", "onnx", "pose_hrnet_w18_small"])
    with pytest.raises(FileNotFoundError):
        OnnxModel(tmp_path / "missing.onnx")


def test_predict_with_onnxruntime_backend(tmp_path) -> None:
    """`hrnet predict --backend onnxruntime` gives the keypoints the PyTorch model gives."""
    import json

    import cv2
    import numpy as np

    torch.manual_seed(0)
    model = create_model("pose_hrnet_w18_small").eval()
    for m in model.modules():  # visible heatmaps: the official init gives outputs near 0
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
    torch.save(model.state_dict(), tmp_path / "pose.pth")
    export_onnx(model, tmp_path / "pose.onnx", input_size=(64, 48))
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.jpg"), np.random.default_rng(0).integers(0, 255, (80, 60, 3), np.uint8))
    common = [str(tmp_path / "img"), "--input-size", "64", "48"]
    assert main(["predict", *common, "--weights", str(tmp_path / "pose.onnx"), "--backend", "onnxruntime",
                 "--out", str(tmp_path / "ort")]) == 0
    assert main(["predict", *common, "--weights", str(tmp_path / "pose.pth"), "--model", "pose_hrnet_w18_small",
                 "--out", str(tmp_path / "pt")]) == 0
    ort = json.loads((tmp_path / "ort" / "keypoints.json").read_text())["images"][0]["persons"][0]["keypoints"]
    pt = json.loads((tmp_path / "pt" / "keypoints.json").read_text())["images"][0]["persons"][0]["keypoints"]
    assert np.allclose(ort, pt, atol=0.05)
    assert main(["predict", *common, "--weights", str(tmp_path / "pose.pth"), "--backend", "onnxruntime"]) == 2
    assert main(["predict", *common, "--weights", str(tmp_path / "pose.onnx"), "--backend", "onnxruntime",
                 "--precision", "bf16"]) == 2
    assert main(["predict", *common, "--weights", str(tmp_path / "pose.pth"), "--model", "pose_hrnet_w18_small",
                 "--precision", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    fast = json.loads((tmp_path / "bf16" / "keypoints.json").read_text())["images"][0]["persons"][0]["keypoints"]
    moved = np.abs(np.reshape(fast, (-1, 3))[:, :2] - np.reshape(pt, (-1, 3))[:, :2])
    assert (moved <= 1.0).mean() >= 0.8  # bf16 (or its fp32 fallback) keeps nearly every keypoint in place
