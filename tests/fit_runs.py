"""Real ``hrnet fit|validate`` subprocesses on tiny generated data, for the DDP and kill tests: the configs,
the command, and readers for what a run leaves (weights, metrics)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from hrnet.synthetic.people import make_synthetic_coco_keypoints
from hrnet.synthetic.streets import make_synthetic_cityscapes

HRNET = [str(Path(sys.executable).parent / "hrnet")]


def pose_data(root: Path, train_images: int = 8, val_images: int = 5) -> dict[str, Any]:
    """A COCO-keypoints train split and a held-out split; the ``data`` section of a pose config."""
    data: dict[str, Any] = {"dataset": "coco"}
    for split, n, seed in (("train", train_images, 0), ("val", val_images, 1)):
        ann = make_synthetic_coco_keypoints(root, split=split, num_images=n, image_size=(96, 96), seed=seed)
        data[f"{split}_ann"], data[f"{split}_images"] = str(ann), str(root / split)
    return data


def seg_data(root: Path, train_images: int = 8, val_images: int = 5) -> dict[str, Any]:
    """A Cityscapes-layout train split and a held-out split; the ``data`` section of a segmentation config."""
    make_synthetic_cityscapes(root, split="train", num_images=train_images, image_size=(64, 128), seed=0)
    make_synthetic_cityscapes(root, split="val", num_images=val_images, image_size=(64, 128), seed=1)
    return {"dataset": "cityscapes", "root": str(root), "crop_size": [64, 96], "base_size": 128}


def pose_config(data: dict[str, Any], run: Path, **trainer: Any) -> dict[str, Any]:
    model = {"model": "pose_hrnet_w18_small", "input_size": [64, 48], "flip_test": False, "lr": 1e-3}
    return _config(model, {**data, "input_size": [64, 48], "eval_batch_size": 2}, run, "val/AP", **trainer)


def seg_config(data: dict[str, Any], run: Path, **trainer: Any) -> dict[str, Any]:
    model = {"model": "seg_hrnet_w18_small_v1", "lr": 0.01, "class_weights": "cityscapes"}
    return _config(model, {**data, "eval_batch_size": 1}, run, "val/mIoU", **trainer)


def _config(model: dict[str, Any], data: dict[str, Any], run: Path, monitor: str, **trainer: Any) -> dict[str, Any]:
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(run / "checkpoints"), "monitor": monitor, "mode": "max",
                                "save_last": True, "save_top_k": 1}}
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                    "default_root_dir": str(run), "callbacks": [checkpoint], **trainer},
        "model": model,
        "data": {"num_workers": 0, **data},
    }


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def hrnet_command(command: str, config: Path, *args: str) -> list[str]:
    return [*HRNET, command, "--config", str(config), *args]


def environment() -> dict[str, str]:
    """One compute thread per process (two DDP ranks share the two cores), no GPU."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}


def run_hrnet(command: str, config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(hrnet_command(command, config, *args), capture_output=True, text=True,
                          env=environment(), timeout=timeout)
    assert done.returncode == 0, f"hrnet {command} failed:\n{done.stderr[-3000:]}"
    return done


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def csv_logger(folder: Path) -> dict[str, Any]:
    """A ``trainer.logger`` writing ``folder/metrics.csv``."""
    return {"class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(folder), "name": "", "version": ""}}


def logged_metrics(folder: Path) -> dict[str, float]:
    """Every value a :func:`csv_logger` run logged (the last row that has it)."""
    with open(folder / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and k not in ("step", "epoch")}


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], floor: float = 1e-6) -> float:
    """Largest ``max|a - b| / max(max|b|, floor)`` over the floating-point tensors: each tensor on its own
    scale, except that tensors of pure rounding noise (a bias in front of a batch norm, whose gradient is 0
    in exact arithmetic: values around 1e-20 after a step) are measured against ``floor``."""
    assert a.keys() == b.keys()
    worst = 0.0
    for key, x in a.items():
        if x.is_floating_point():
            scale = max(float(b[key].abs().max()), floor)
            worst = max(worst, float((x - b[key]).abs().max()) / scale)
    return worst
