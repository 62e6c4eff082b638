"""The ``hrnet`` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from hrnet import create_model, load_checkpoint
from hrnet.cli import main
from hrnet.models import PRESETS, to_official


def test_models_table_lists_every_preset(capsys) -> None:
    assert main(["models", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(PRESETS)
    assert rows["pose_hrnet_w32"]["params_m"] == 28.536 and rows["pose_hrnet_w32"]["gflops"] == 7.12
    assert rows["seg_hrnet_w48"]["gflops"] == 696.18 and rows["seg_hrnet_w48"]["input"] == "1024x2048"
    assert main(["models", "--format", "markdown", "--task", "pose"]) == 0
    out = capsys.readouterr().out
    assert "| pose_hrnet_w48 | pose | 63.596 | 14.61 | 256x192 |" in out and "hrnet_w18 " not in out


HEAVY = ("torch", "torchvision", "cv2", "lightning", "openvino", "onnxruntime", "pycocotools", "timm", "scipy")


def _imported_by(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys; {code}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stderr.split()


def test_import_and_short_commands_load_no_heavy_module() -> None:
    """``import hrnet``, ``hrnet models`` and ``hrnet --help`` import neither torch nor any optional library
    (they start in well under a second); ``hrnet.create_model`` loads torch on first use."""
    assert _imported_by("import hrnet") == []
    assert _imported_by("from hrnet.cli import main; main(['models', '--format', 'json'])") == []
    assert _imported_by("from hrnet.cli import build_parser; build_parser(task_flags=False).format_help()") == []
    assert _imported_by("import hrnet; hrnet.create_model") == ["torch"]


def test_convert_round_trip(tmp_path, capsys) -> None:
    model = create_model("face_hrnet_w18", num_landmarks=98)
    torch.save({"state_dict": to_official(model.state_dict(), "face")}, tmp_path / "official.pth")
    assert main(["convert", str(tmp_path / "official.pth"), str(tmp_path / "ours.pt")]) == 0
    assert "closest preset face_hrnet_w18" in capsys.readouterr().out
    assert load_checkpoint(create_model("face_hrnet_w18"), tmp_path / "ours.pt").exact
    assert main(["convert", str(tmp_path / "ours.pt"), str(tmp_path / "back.pth"), "--to", "official"]) == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert "head.0.weight" in back and "conv1.weight" in back


def test_missing_file_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x.pt")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
