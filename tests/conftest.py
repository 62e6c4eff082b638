"""Shared test helpers: paths to the reference data and the golden-vector architecture reader."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hrnet.models import HRNet, HRNetBackbone, HRNetSpec, StageSpec
from hrnet.models.heads import ClassificationHead, HigherHead, PoseHead, V2Head
from hrnet.models.ocr import OCRHead

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
# cls_tiny.pt (20 MB) is not copied into the repo; it is read from the shared reference when present.
SHARED_GOLDEN = Path(os.environ.get("HRNET_SHARED_GOLDEN", Path(__file__).parents[2] / "shared/reference/golden"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted OpenVINO models go to a folder of this test session, not the user's ~/.cache/hrnet."""
    os.environ["HRNET_CACHE"] = str(tmp_path_factory.mktemp("hrnet_cache"))


def golden_path(name: str) -> Path:
    for folder in (GOLDEN, SHARED_GOLDEN):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"golden vector {name} not available (set HRNET_SHARED_GOLDEN)")


def load_manifest(name: str) -> dict[str, list[int]]:
    with gzip.open(DATA / "manifests" / f"{name}.json.gz", "rt") as f:
        return json.load(f)


def measurements() -> dict[str, dict[str, Any]]:
    return json.loads((DATA / "measurements.json").read_text())


def spec_from_arch(arch: dict[str, Any]) -> HRNetSpec:
    """The golden files' neutral architecture description -> our typed spec."""
    stages = tuple(
        StageSpec(s["num_modules"], s["block"], tuple(s["num_blocks"]), tuple(s["num_channels"]))
        for s in arch["stages"]
    )
    fusion = arch["fusion"]
    return HRNetSpec(
        stages=stages,
        stem_width=arch["stem"]["width"],
        upsample_mode=fusion["upsample_mode"],
        align_corners=fusion["align_corners"],
        multi_scale_output=arch["stages"][-1].get("multi_scale_output_last_module", True),
        bn_momentum=arch["bn"]["momentum"],
    )


def model_from_arch(arch: dict[str, Any]) -> HRNet:
    """Build backbone + head for a golden file from its ``arch`` dict (not from our presets)."""
    spec = spec_from_arch(arch)
    backbone = HRNetBackbone(spec)
    head_spec, family, ch = arch["head"], arch["family"], backbone.out_channels
    if family == "cls":
        head = ClassificationHead(ch, head_spec["classifier"]["out_features"])
    elif family == "pose":
        head = PoseHead(ch, head_spec["final_layer"]["out_channels"])
    elif family in ("seg", "face"):
        k = head_spec["layers"][-1]["out_channels"]
        head = V2Head(ch, k, align_corners=bool(spec.align_corners), bn_momentum=spec.bn_momentum)
    elif family == "seg_ocr":
        distri = head_spec["ocr_distri_head"]
        head = OCRHead(ch, head_spec["cls_head"]["out_channels"], mid_channels=head_spec["conv3x3_ocr"]["out_channels"],
                       key_channels=distri["key_channels"], align_corners=head_spec["concat"]["align_corners"],
                       bn_momentum=spec.bn_momentum)
    elif family == "higher":
        head = HigherHead(ch, head_spec["final_layers_1"]["out_channels"],
                          deconv_channels=head_spec["deconv"]["conv_transpose"]["out_channels"])
    else:
        pytest.skip(f"family {family} is not part of the model library yet")
    return HRNet(backbone, head)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Conv weights at unit gain and random BN statistics/affine, so folding mistakes show up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                if m.running_mean is None:
                    continue
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model.eval()


def as_list(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return list(out.values())
    return list(out)  # type: ignore[call-overload]


def rel_err(out: object, ref: object) -> float:
    errs = []
    for a, r in zip(as_list(out), as_list(ref), strict=True):
        assert a.shape == r.shape and a.dtype == torch.float32
        errs.append(((a - r).abs().max() / r.abs().max()).item())
    return max(errs)


def spiky(size: int = 16) -> tuple[nn.Module, list[torch.Tensor]]:
    """A network whose output reads input channel 0 (values about 1) while channel 1 carries sparse
    spikes of 1e4 that it ignores: per-tensor int8 spends its 255 steps on the spikes (the int8 tests
    of both backends)."""
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 1, 1)).eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0] = 1.0
        model[0].weight[1, 1] = 1.0
        model[0].bias.zero_()
        model[2].weight.zero_()
        model[2].weight[0, 0] = 1.0
        model[2].bias.zero_()
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        x = torch.randn(2, 2, size, size, generator=g).abs()
        x[:, 1] = 0
        x[:, 1, 3, 5] = 1e4
        batches.append(x)
    return model, batches
