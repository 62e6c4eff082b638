"""Checkpoint formats: every official/timm manifest converts with no missing or unexpected keys;
wrappers, prefixes, safetensors, old BN buffers; clear errors; non-strict loads."""

from __future__ import annotations

import pytest
import torch
from conftest import DATA, load_manifest, measurements
from safetensors.torch import save_file

from hrnet import create_model, load_checkpoint
from hrnet.models import PRESETS, CheckpointError, read_checkpoint, to_official
from hrnet.models.convert import to_ours
from hrnet.models.presets import compare, guess_preset

MANIFESTS = sorted(p.name.removesuffix(".json.gz") for p in (DATA / "manifests").glob("*.json.gz"))


def _meta_checkpoint(manifest: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A checkpoint with exactly the manifest's keys and shapes (no memory: meta tensors)."""
    return {k: torch.empty(shape, device="meta") for k, shape in manifest.items()}


def _project(manifest_name: str) -> tuple[str | None, dict]:
    m = measurements()[manifest_name]
    project, kwargs = m.get("project"), m.get("project_kwargs") or {}
    if project is None:  # LIP / PASCAL-Context: seg_hrnet_w48 with their class count
        project, kwargs = "seg_hrnet_w48", {"num_classes": m["output_shapes"][0][1]}
    return project, kwargs


@pytest.mark.parametrize("manifest_name", MANIFESTS)
def test_manifest_converts_exactly(manifest_name: str) -> None:
    project, kwargs = _project(manifest_name)
    if project not in PRESETS:
        pytest.skip(f"{project} belongs to a later issue (OCR head)")
    manifest = load_manifest(manifest_name)
    with torch.device("meta"):
        model = create_model(project, **kwargs)
    ours = to_ours(read_checkpoint(_meta_checkpoint(manifest)))
    report = compare(ours, model.state_dict())
    assert report.exact, (report.missing[:5], report.unexpected[:5], report.mismatched[:5])
    # ... and back: our layout -> the official one gives the manifest's keys and shapes.
    back = to_official(ours, PRESETS[project].family)
    expected = {k: tuple(v) for k, v in manifest.items() if not k.startswith("loss.")}
    assert {k: tuple(v.shape) for k, v in back.items()} == expected


@pytest.mark.parametrize(
    "manifest_name,preset",
    [("official_pose_hrnet_w48_256x192", "pose_hrnet_w48"), ("timm_hrnet_w30", "hrnet_w30"),
     ("official_seg_hrnet_w18_small_v2_cityscapes", "seg_hrnet_w18_small_v2"),
     ("official_face_hrnet_w18_wflw", "face_hrnet_w18"), ("official_higher_hrnet_w32_640", "higher_hrnet_w32")],
)
def test_guess_preset(manifest_name: str, preset: str) -> None:
    sd = to_ours(read_checkpoint(_meta_checkpoint(load_manifest(manifest_name))))
    assert guess_preset(sd)[0] == preset


def _small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("seg_hrnet_w18_small_v1", num_classes=5).eval()
    for m in model.modules():  # non-trivial BN statistics so a wrong load shows in the outputs
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="official-plain"),
        pytest.param(lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, id="dataparallel"),
        pytest.param(lambda sd: {**{"model." + k: v for k, v in sd.items()}, "loss.criterion.weight": torch.ones(5)},
                     id="seg-fullmodel"),
        pytest.param(lambda sd: {"epoch": 1, "state_dict": {"model." + k: v for k, v in to_ours(sd).items()}},
                     id="lightning-ours"),
        pytest.param(lambda sd: {"_orig_mod." + k: v for k, v in sd.items()}, id="torch-compile"),
        pytest.param(lambda sd: {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
                     id="pytorch-0.4-no-counters"),
    ],
)
def test_checkpoint_layouts_load_to_same_outputs(wrap, tmp_path) -> None:
    src = _small_model()
    official = to_official(src.state_dict(), "seg")
    official = {k.removeprefix("model."): v for k, v in official.items()}
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(official), path)
    dst = create_model("seg_hrnet_w18_small_v1", num_classes=5)
    assert load_checkpoint(dst, path).exact
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(_output(dst, x), _output(src, x), rtol=0, atol=0)


def test_safetensors_and_create_model_weights(tmp_path) -> None:
    src = _small_model()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in to_official(src.state_dict(), "seg").items()}, str(path))
    dst = create_model("seg_hrnet_w18_small_v1", weights=path, num_classes=5)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(_output(dst, x), _output(src, x), rtol=0, atol=0)


def test_face_checkpoint_head_name() -> None:
    """The face repository calls the V2 head ``head``; it lands in our ``last_layer``."""
    model = create_model("face_hrnet_w18", num_landmarks=7)
    official = to_official(model.state_dict(), "face")
    assert "head.3.weight" in official and not any(k.startswith("last_layer") for k in official)
    assert load_checkpoint(create_model("face_hrnet_w18", num_landmarks=7), official).exact


def test_mismatch_error_names_keys_and_preset() -> None:
    pose16 = create_model("pose_hrnet_w32", num_joints=16)
    sd = to_official(pose16.state_dict(), "pose")
    sd["extra.weight"] = torch.zeros(1)
    del sd["stage4.2.fuse_layers.0.1.0.weight"]
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create_model("pose_hrnet_w32"), sd)
    msg = str(err.value)
    assert "missing in checkpoint (1)" in msg and "backbone.stage4.2.fuse_layers.0.1.0.weight" in msg
    assert "unexpected in checkpoint (1)" in msg and "head.extra.weight" in msg
    assert "head.final_layer.weight: (16, 32, 1, 1) vs (17, 32, 1, 1)" in msg
    assert "looks like preset 'pose_hrnet_w32'" in msg
    assert "strict=False" in msg


def test_non_strict_loads_what_fits() -> None:
    """A 16-joint (MPII) checkpoint into a 17-joint model: backbone loads, head stays new."""
    src = create_model("pose_hrnet_w32", num_joints=16)
    torch.nn.init.normal_(src.backbone.conv1.weight)
    dst = create_model("pose_hrnet_w32")
    head_before = dst.head.final_layer.weight.clone()
    report = load_checkpoint(dst, to_official(src.state_dict(), "pose"), strict=False)
    assert [k for k, _, _ in report.mismatched] == ["head.final_layer.weight", "head.final_layer.bias"]
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    assert torch.equal(dst.head.final_layer.weight, head_before)


def test_backbone_takes_backbone_part_of_a_classification_checkpoint() -> None:
    cls = create_model("hrnet_w18_small")
    torch.nn.init.normal_(cls.backbone.stage4[0].branches[3][1].conv2.weight)
    backbone = create_model("hrnet_w18_small", features_only=True)
    report = load_checkpoint(backbone, to_official(cls.state_dict(), "cls"))
    assert report.exact
    assert torch.equal(backbone.stage4[0].branches[3][1].conv2.weight, cls.backbone.stage4[0].branches[3][1].conv2.weight)


def test_unreadable_files_name_the_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found: .*nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(bad)
    empty = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, empty)
    with pytest.raises(CheckpointError, match="meta.pth: no tensors found"):
        read_checkpoint(empty)


def test_an_empty_checkpoint_file_is_named_not_a_traceback(tmp_path) -> None:
    from hrnet.models.convert import CheckpointError, read_checkpoint

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(empty)
