"""Shared test helpers: paths to the reference data and the golden-vector architecture reader."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from hrnet.models import HRNet, HRNetBackbone, HRNetSpec, StageSpec
from hrnet.models.heads import ClassificationHead, HigherHead, PoseHead, V2Head
from hrnet.models.ocr import OCRHead

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
# cls_tiny.pt (20 MB) is not copied into the repo; it is read from the shared reference when present.
SHARED_GOLDEN = Path(os.environ.get("HRNET_SHARED_GOLDEN", Path(__file__).parents[2] / "shared/reference/golden"))

torch.set_num_threads(min(2, torch.get_num_threads()))


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
