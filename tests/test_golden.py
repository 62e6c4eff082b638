"""Equivalence with the official code: checkpoint + input -> the official output, within 1e-4."""

from __future__ import annotations

import pytest
import torch

from conftest import golden_path, model_from_arch
from hrnet.models import create_model, load_checkpoint

GOLDEN_FILES = ["cls_tiny", "pose_tiny", "seg_tiny", "seg_v11_tiny", "seg_ocr_tiny", "face_tiny", "higher_tiny",
                "seg_hrnet_w18_small_v1"]


def _load(name: str) -> dict:
    return torch.load(golden_path(f"{name}.pt"), map_location="cpu", weights_only=True)


def _user_checkpoint(g: dict, tmp_path) -> str:
    """Write the vector's checkpoint as a user's fp32 file, in the family's own key layout."""
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in g["state_dict"].items()}
    path = tmp_path / "ckpt.pth"
    torch.save(sd, path)
    return str(path)


def _check_outputs(model: torch.nn.Module, g: dict) -> None:
    model.eval()
    with torch.no_grad():
        out = model(g["input"].clone())
    got = list(out) if isinstance(out, (list, tuple)) else [out]
    ref = g["output"] if isinstance(g["output"], list) else [g["output"]]
    assert len(got) == len(ref)
    for o, r in zip(got, ref):
        assert o.shape == r.shape
        torch.testing.assert_close(o.float(), r, rtol=0, atol=g["atol"])


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_golden_vector(name: str, tmp_path) -> None:
    g = _load(name)
    model = model_from_arch(g["arch"])
    report = load_checkpoint(model, _user_checkpoint(g, tmp_path))
    assert report.exact
    assert sum(p.numel() for p in model.parameters()) == g["arch"]["num_params"]
    _check_outputs(model, g)


def test_golden_real_preset_seg_w18_small_v1(tmp_path) -> None:
    """The real-config vector through the public preset and create_model(weights=...)."""
    g = _load("seg_hrnet_w18_small_v1")
    model = create_model("seg_hrnet_w18_small_v1", weights=_user_checkpoint(g, tmp_path))
    _check_outputs(model, g)
