"""One smoke test over the task table: every task with a pipeline fits on its synthetic data, predicts
from the checkpoint and from each export format it supports; a preset without a pipeline gets a one-line
error from every command that needs one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrnet.cli import main
from hrnet.models import PRESETS, create_model
from hrnet.tasks.registry import TASKS, task_of

TINY_DEMO = {"epochs": 1, "train_images": 8, "val_images": 4, "batch_size": 4, "val_every": 1, "num_workers": 0,
             "precision": "32-true"}


def _image(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "000001.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return folder


def _video(path: Path, frames: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("name", list(TASKS))
def test_task_fits_predicts_and_exports(name: str, tmp_path: Path, capsys) -> None:
    task = TASKS[name]
    assert task.demo is not None, f"task {name} has no demo"
    config, run = task.demo()
    metrics = run(tmp_path / "demo", config(**TINY_DEMO), resume=False)
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))
    ckpt = tmp_path / "demo" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    images = _image(tmp_path / "images")
    assert main(["predict", str(images), "--weights", str(ckpt), "--out", str(tmp_path / "pred")]) == 0
    results = json.loads((tmp_path / "pred" / task.predictor().results_file).read_text())
    assert [r["file"] for r in results["images"]] == ["000001.jpg"]
    assert list((tmp_path / "pred").glob(f"000001_{task.predictor().picture}.jpg"))
    video = _video(tmp_path / "video" / "clip.mp4", frames=3)
    assert main(["predict", str(video), "--weights", str(ckpt), "--out", str(tmp_path / "pred_video")]) == 0
    frames = json.loads((tmp_path / "pred_video" / task.predictor().results_file).read_text())["images"]
    assert [(r["file"], r["frame"]) for r in frames] == [("clip.mp4", 0), ("clip.mp4", 1), ("clip.mp4", 2)]
    assert (tmp_path / "pred_video" / f"clip_{task.predictor().picture}.mp4").stat().st_size > 0
    for fmt in task.exports:
        suffix = {"onnx": ".onnx", "openvino": ".xml"}[fmt]
        if fmt == "openvino":
            pytest.importorskip("openvino")
        out = tmp_path / f"model{suffix}"
        assert main(["export", fmt, "--weights", str(ckpt), "--out", str(out)]) == 0
        backend = {"onnx": "onnxruntime", "openvino": "openvino"}[fmt]
        assert main(["predict", str(images), "--weights", str(out), "--backend", backend,
                     "--out", str(tmp_path / f"pred_{fmt}")]) == 0
        exported = json.loads((tmp_path / f"pred_{fmt}" / task.predictor().results_file).read_text())
        assert {k: v for k, v in exported.items() if k != "images"} == \
            {k: v for k, v in results.items() if k != "images"}


def test_every_preset_task_is_a_known_identifier() -> None:
    """One vocabulary: presets name their task with identifiers, and every table entry has presets."""
    assert all(p.task.isidentifier() for p in PRESETS.values())
    assert set(TASKS) <= {p.task for p in PRESETS.values()}


def test_a_preset_without_a_pipeline_is_a_one_line_error(tmp_path: Path, capsys, monkeypatch) -> None:
    """Every preset's task has a pipeline today; one whose task has none (bottom-up's, taken out of the table
    here) gets a one-line error naming the tasks that have one from every command that needs one."""
    assert {p.task for p in PRESETS.values()} <= set(TASKS)
    preset = "higher_hrnet_w18_small"
    monkeypatch.delitem(TASKS, PRESETS[preset].task)
    with pytest.raises(ValueError, match=f"{preset} is a bottomup model.*tasks with one: pose"):
        task_of(preset, "predict")
    weights = tmp_path / "w.pt"
    torch.save(create_model(preset).state_dict(), weights)
    assert main(["predict", str(_image(tmp_path / "images")), "--weights", str(weights), "--model", preset,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("hrnet predict: error:") and "pose, segmentation" in err
    assert main(["fit", "--model.model", preset]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("hrnet fit: error:") and f"{preset} is a" in err


@pytest.mark.parametrize("argv", [
    ["fit", "--model.model", "no_such_model"],
    ["predict", "x.jpg", "--weights", "missing.pt"],
    ["export", "onnx", "pose_hrnet_w32", "--weights", "missing.pt"],
    ["models", "--task", "pose", "--format", "table"],
])
def test_user_mistakes_are_one_line(argv: list[str], capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    if argv[0] == "models":
        assert code == 0 and err == ""
    else:
        assert code == 2 and err.count("\n") == 0 and err.startswith(f"hrnet {argv[0]}: error:")


def test_console_prints_each_lightning_message_once_and_no_tips() -> None:
    """As ``hrnet fit`` and ``hrnet demo`` set the console up: Lightning's info lines once, no advertisements,
    our logger through its own handler only."""
    code = ("import logging; from hrnet.cli import configure_console; configure_console(verbose=False); "
            "import lightning as L; L.Trainer(accelerator='cpu', devices=1, enable_checkpointing=False); "
            "assert not logging.getLogger('hrnet').propagate")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("GPU available") == 1, out.stderr
    assert "Tip" not in out.stderr and "litlogger" not in out.stderr, out.stderr


def test_predict_over_a_folder_survives_bad_files_and_continues(tmp_path: Path, capsys) -> None:
    """A truncated JPEG and a non-image are reported and counted; the good files are predicted, the results
    written; ``--skip-existing`` keeps what the first run finished and predicts only the rest."""
    weights = tmp_path / "pose.pt"
    torch.save(create_model("pose_hrnet_w18_small").state_dict(), weights)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg", "cut.jpg"):
        cv2.imwrite(str(images / name), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    whole = (images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (images / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    argv = ["predict", str(images), "--weights", str(weights), "--model", "pose_hrnet_w18_small", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "2 of 4 inputs failed (first: cut.jpg:" in err and "truncated" in err
    assert [r["file"] for r in json.loads((out / "keypoints.json").read_text())["images"]] == ["a.jpg", "b.jpg"]
    first = (out / "a_pose.jpg").stat().st_mtime_ns
    (images / "cut.jpg").write_bytes(whole)
    (images / "notes.png").unlink()
    assert main([*argv, "--skip-existing"]) == 0
    assert "(1 predicted, 2 kept from an earlier run)" in capsys.readouterr().out
    assert [r["file"] for r in json.loads((out / "keypoints.json").read_text())["images"]] == ["a.jpg", "b.jpg",
                                                                                              "cut.jpg"]
    assert (out / "a_pose.jpg").stat().st_mtime_ns == first and (out / "cut_pose.jpg").is_file()
    assert not list(out.glob("*.tmp"))


WORKER_ERROR = """
import torch
from hrnet.cli import error_message

class BadFile(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise ValueError(f"image file /data/{index}.jpg is truncated (JPEG without its end-of-image marker)")

try:
    next(iter(torch.utils.data.DataLoader(BadFile(), num_workers=1)))
except ValueError as err:
    assert "Traceback" in str(err), str(err)
    print(error_message(err))
"""


def test_an_error_in_a_dataloader_worker_is_told_in_one_line() -> None:
    """PyTorch re-raises a worker's error with the worker's traceback in its message; the CLI tells the
    original message, which names the file. (In a fresh interpreter: forking a worker from a process that
    has loaded OpenVINO's threads makes that process crash at exit.)"""
    from hrnet.cli import error_message

    out = subprocess.run([sys.executable, "-c", WORKER_ERROR], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "image file /data/0.jpg is truncated (JPEG without its end-of-image marker)"
    assert error_message(ValueError("plain")) == "plain"
