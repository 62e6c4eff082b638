"""Crash-safe checkpoint writing (tasks/checkpoints.py)."""

from __future__ import annotations

import pytest
import torch

from hrnet.tasks.checkpoints import AtomicCheckpointIO


def test_a_crash_while_writing_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("killed while writing")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="killed while writing"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True)["step"] == 1  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file is left to resume from
    io.save_checkpoint({"step": 3, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


def test_what_a_kill_leaves_is_never_taken_for_a_checkpoint(tmp_path) -> None:
    """A process killed mid-write (no ``finally``) leaves only ``.last.ckpt.partial``, which neither ends in
    ``.ckpt`` nor is named ``last``: Lightning's ``--ckpt_path last`` lookup cannot pick it."""
    partial = tmp_path / ".last.ckpt.partial"
    partial.write_bytes(b"PK\x03\x04 cut")
    assert partial.suffix != ".ckpt" and not partial.name.startswith("last")


def test_hrnet_fit_saves_through_the_atomic_writer(tmp_path) -> None:
    """The Lightning CLI gives its Trainer the atomic writer (with no plugins named in the config)."""
    from hrnet.tasks.lightning_cli import TaskCLI
    from hrnet.tasks.registry import TASKS

    cli = TaskCLI(TASKS["pose"], args=["--model.model", "pose_hrnet_w18_small", "--trainer.logger", "false",
                                       f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
