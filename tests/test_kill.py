"""A killed run loses at most one checkpoint interval (issue 13): a real ``hrnet fit`` subprocess saving
``last.ckpt`` every step (``--checkpoint_every_n_steps 1``) is ``kill -9``-ed mid-epoch, and again while it
writes a checkpoint; ``--ckpt_path last`` resumes from the last complete checkpoint and the run ends with the
weights and validation metrics of an uninterrupted run of the same config."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fit_runs import (
    csv_logger,
    environment,
    hrnet_command,
    logged_metrics,
    pose_config,
    pose_data,
    relative_difference,
    run_hrnet,
    weights,
    write_config,
)

STEPS_PER_EPOCH = 7  # the 14 people of 12 generated images, at batch 2
EVERY_STEP = ("--checkpoint_every_n_steps", "1")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The data, and an uninterrupted 2-epoch run's final weights and metrics."""
    root = tmp_path_factory.mktemp("kill")
    data = {**pose_data(root / "data", train_images=12, val_images=4), "batch_size": 2}
    config = _config(data, root / "uninterrupted")
    run_hrnet("fit", config, *EVERY_STEP)
    final = root / "uninterrupted" / "checkpoints" / "last.ckpt"
    assert _step(final) == 2 * STEPS_PER_EPOCH
    return {"data": data, "root": root, "weights": weights(final), "metrics": logged_metrics(root / "uninterrupted")}


def _config(data: dict, run: Path) -> Path:
    config = pose_config(data, run, max_epochs=2, logger=csv_logger(run))
    return write_config(config, run.with_suffix(".yaml"))


def _step(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])


def _resume_and_compare(config: Path, run: Path, reference: dict, killed_at: int, what: str) -> None:
    run_hrnet("fit", config, *EVERY_STEP, "--ckpt_path", "last")
    final = run / "checkpoints" / "last.ckpt"
    difference = relative_difference(weights(final), reference["weights"])
    metrics = logged_metrics(run)
    print(f"killed {what} (resumed from step {killed_at}): final weights differ by {difference:.1e}, "
          f"val/AP {metrics.get('val/AP')} vs {reference['metrics'].get('val/AP')}, "
          f"val/loss {metrics.get('val/loss')} vs {reference['metrics'].get('val/loss')}")
    assert _step(final) == 2 * STEPS_PER_EPOCH
    assert difference == 0.0
    assert {k: metrics[k] for k in reference["metrics"] if k.startswith("val/")} == \
        {k: v for k, v in reference["metrics"].items() if k.startswith("val/")}


def test_killed_mid_epoch_resumes_to_the_uninterrupted_result(reference) -> None:
    run = reference["root"] / "mid_epoch"
    config = _config(reference["data"], run)
    last = run / "checkpoints" / "last.ckpt"
    target = STEPS_PER_EPOCH + 2  # inside the second epoch
    process = subprocess.Popen(hrnet_command("fit", config, *EVERY_STEP), env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if last.is_file() and _step(last) >= target:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it was killed:\n{process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _step(last)
    assert STEPS_PER_EPOCH < killed_at < 2 * STEPS_PER_EPOCH  # mid-epoch
    _resume_and_compare(config, run, reference, killed_at, "mid-epoch")


def test_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(reference) -> None:
    run = reference["root"] / "while_saving"
    config = _config(reference["data"], run)
    marker = run / "paused"
    pause_at = STEPS_PER_EPOCH + 3  # a step save of last.ckpt in the second epoch (+1: the epoch-end save)
    command = [sys.executable, str(Path(__file__).with_name("paused_save.py")), "fit", "--config", str(config), *EVERY_STEP]
    process = subprocess.Popen(command, env={**environment(), "PAUSE_AT": str(pause_at), "PAUSE_MARKER": str(marker)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.is_file(), f"the save was never reached:\n{process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    folder = run / "checkpoints"
    partial = Path(marker.read_text())
    assert partial.is_file() and partial.parent == folder  # the half-done save is left behind, under its own name
    killed_at = _step(folder / "last.ckpt")  # ... and last.ckpt is the previous, complete checkpoint
    assert STEPS_PER_EPOCH < killed_at < 2 * STEPS_PER_EPOCH
    _resume_and_compare(config, run, reference, killed_at, "while writing a checkpoint")
