"""Every preset: shapes, exact parameter counts, MACs, init, odd sizes, input errors, features,
gradient checkpointing, export and a tiny overfit step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import measurements
from torch import nn

from hrnet import create_model, list_models
from hrnet.models import PRESETS, HRNetBackbone, V2pNeck
from hrnet.models.complexity import count_params, model_complexity
from hrnet.zoo import count_row, stored_rows

SMALL = 64  # input side for real forward passes
BIG = 30_000_000  # presets above this many parameters are shape-checked on the meta device


def _measured() -> list[tuple[str, dict]]:
    return [(k, v) for k, v in measurements().items() if v.get("project") in PRESETS]


def _side(n: int, stride: int) -> int:
    for _ in range(int(math.log2(stride))):
        n = (n + 1) // 2  # a 3x3 stride-2 pad-1 conv gives ceil(n / 2)
    return n


def _expected_shapes(name: str, h: int, w: int) -> list[tuple[int, ...]]:
    p = PRESETS[name]
    k = p.head_defaults
    if p.family == "cls":
        return [(1, k["num_classes"])]
    if p.family == "higher":
        j = k["num_joints"]
        return [(1, 2 * j, _side(h, 4), _side(w, 4)), (1, j, 2 * _side(h, 4), 2 * _side(w, 4))]
    outputs = k.get("num_joints") or k.get("num_classes") or k.get("num_landmarks")
    if name.endswith("_ocr"):  # HRNet-OCR: [aux logits, OCR logits], both at 1/4
        return [(1, outputs, _side(h, 4), _side(w, 4))] * 2
    return [(1, outputs, _side(h, 4), _side(w, 4))]


@pytest.mark.parametrize("name", [n for n in list_models() if n not in list_models("detection")])
def test_preset_forward_shapes(name: str) -> None:
    """Every preset runs; large ones on the meta device (shapes only), small ones for real (detectors take
    lists of images: tests/test_detection.py)."""
    h, w = SMALL, SMALL + 32
    device = "meta" if stored_rows()[name]["params"] > BIG else "cpu"
    with torch.device(device):
        model = create_model(name).eval()
        x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        out = model(x)
    outs = out if isinstance(out, list) else [out]
    assert [tuple(o.shape) for o in outs] == _expected_shapes(name, h, w)
    if device == "cpu":
        assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize("key,m", _measured(), ids=[k for k, _ in _measured()])
def test_param_count_and_macs_match_official(key: str, m: dict) -> None:
    """Exact parameter count of the official model; conv+linear MACs within 1% (we get 0%)."""
    c = model_complexity(m["project"], tuple(m["input_hw"]), **m["project_kwargs"])
    assert c.params == m["params"]
    assert abs(c.macs / m["macs_conv_linear"] - 1) < 0.01


@pytest.mark.parametrize("name", list_models())
def test_stored_zoo_row_equals_a_recount(name: str) -> None:
    """``hrnet models`` prints the stored zoo table: each row equals the preset counted now (after changing a
    preset, ``python -m hrnet.zoo`` rewrites it)."""
    assert stored_rows()[name] == count_row(name)


def test_stored_zoo_lists_every_preset_in_order() -> None:
    assert list(stored_rows()) == list_models()


def test_gflops_convention_matches_readme() -> None:
    """The papers' "GFLOPs" = MACs / 2**30: pose W32 256x192 reads 7.1, cls W18 3.99."""
    assert round(model_complexity("pose_hrnet_w32").gflops, 1) == 7.1
    assert round(model_complexity("hrnet_w18").gflops, 2) == 3.99


def test_unknown_model_and_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown model 'hrnet_w99'.*hrnet_w18"):
        create_model("hrnet_w99")
    with pytest.raises(TypeError, match="num_joints"):
        create_model("pose_hrnet_w32", num_classes=3)
    assert create_model("seg_hrnet_w18_small_v1", num_classes=7).head.last_layer[-1].out_channels == 7
    assert {"pose_hrnet_w32", "pose_hrnet_w48"} <= set(list_models("pose")) and not set(list_models("pose")) & set(list_models("classification"))


@pytest.mark.parametrize("name", ["hrnet_w18_small", "seg_hrnet_w18_small_v1"])
@pytest.mark.parametrize("hw", [(65, 47), (33, 99), (100, 37)])
def test_odd_input_sizes(name: str, hw: tuple[int, int]) -> None:
    """Sizes the official nearest-upsampling code rejects work: fusion resizes to exact sizes."""
    model = create_model(name).eval()
    with torch.no_grad():
        feats = model.backbone(torch.randn(1, 3, *hw))
        out = model.head(feats)
    for b, f in enumerate(feats):
        assert f.shape[-2:] == (_side(hw[0], 4 * 2**b), _side(hw[1], 4 * 2**b))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "shape,match",
    [((1, 1, 64, 64), "expects 3 input channels, got 1"), ((3, 64, 64), r"\(B, 3, H, W\)"),
     ((1, 3, 31, 64), "too small.*>= 32")],
)
def test_bad_input_errors(shape: tuple[int, ...], match: str) -> None:
    model = create_model("hrnet_w18_small")
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_in_channels_override() -> None:
    model = create_model("seg_hrnet_w18_small_v1", in_channels=4).eval()
    assert model(torch.randn(1, 4, 64, 64)).shape == (1, 19, 16, 16)


def test_official_initialisation() -> None:
    pose = create_model("pose_hrnet_w32")
    conv = pose.backbone.stage4[0].branches[3][0].conv1.weight
    assert abs(conv.std().item() - 0.001) < 1e-4
    assert torch.all(pose.head.final_layer.bias == 0)
    bn = pose.backbone.stage3[0].fuse_layers[0][1][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    cls = create_model("hrnet_w18_small")
    w = cls.backbone.conv2.weight  # He normal, fan_out = 64 * 3 * 3
    assert abs(w.std().item() - math.sqrt(2 / (64 * 9))) < 0.01


def test_features_only() -> None:
    """Four multi-resolution maps (strides 4..32) for any backbone, pose presets included."""
    for name in ("hrnet_w18_small_v2", "pose_hrnet_w32"):
        model = create_model(name, features_only=True).eval()
        assert isinstance(model, HRNetBackbone)
        with torch.no_grad():
            feats = model(torch.randn(2, 3, 64, 96))
        assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
        for f, info in zip(feats, model.feature_info):
            r = info["reduction"]
            assert f.shape == (2, info["num_chs"], 64 // r, 96 // r)
    assert [f["num_chs"] for f in create_model("pose_hrnet_w32", features_only=True).feature_info] == [32, 64, 128, 256]


def test_v2p_neck_pyramid() -> None:
    """HRNetV2p: 5 levels, 256 channels, strides 4..64, torchvision's backbone contract."""
    backbone = create_model("hrnet_w18_small", features_only=True).eval()
    neck = V2pNeck(backbone.out_channels).eval()
    with torch.no_grad():
        levels = neck(backbone(torch.randn(1, 3, 128, 96)))
    assert list(levels) == ["0", "1", "2", "3", "4"]
    assert neck.out_channels == 256
    assert [tuple(v.shape) for v in levels.values()] == [(1, 256, 32 // 2**i, 24 // 2**i) for i in range(5)]  # floor mode


def test_gradient_checkpointing_is_exact() -> None:
    torch.manual_seed(0)
    model = create_model("seg_hrnet_w18_small_v1").train()
    x = torch.randn(2, 3, 64, 64)

    def grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    state = {k: v.clone() for k, v in model.state_dict().items()}
    ref_out, ref_grads = grads()
    model.load_state_dict(state)  # undo the BN running-stat update of the first pass
    model.set_grad_checkpointing([2, 4])
    assert model.backbone.grad_checkpointing == {2, 4}
    out, got = grads()
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(got, ref_grads):
        torch.testing.assert_close(a, b)
    model.set_grad_checkpointing(False)
    assert not model.backbone.grad_checkpointing
    with pytest.raises(ValueError, match="stages must be in 1..4"):
        model.set_grad_checkpointing([5])


def test_torch_export_matches_eager() -> None:
    """``torch.export`` is the supported export path (dynamic batch); outputs equal eager."""
    model = create_model("seg_hrnet_w18_small_v1").eval()
    x = torch.randn(2, 3, 64, 96)
    batch = torch.export.Dim("batch", min=1, max=16)
    exported = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        ref = model(x)
        got = exported.module()(x)
        got3 = exported.module()(torch.cat([x, x[:1]]))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(got3[:2], ref, atol=1e-5, rtol=1e-5)


def test_tiny_overfit_step_lowers_loss() -> None:
    torch.manual_seed(0)
    model = create_model("seg_hrnet_w18_small_v1", num_classes=3).train()
    x = torch.randn(2, 3, 64, 64)
    target = (torch.arange(16)[None, :, None] // 6).expand(2, 16, 16).clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_count_params_counts_parameters_only() -> None:
    bn = nn.BatchNorm2d(4)  # 8 parameters, 9 buffer elements
    assert count_params(bn) == 8
