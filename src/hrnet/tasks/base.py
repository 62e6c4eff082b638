"""Pieces every task shares: batching, checkpoint metadata, person boxes from detection-results files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep everything else (file names, sizes) as lists."""
    batch: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(value, Tensor) else values
    return batch


def read_hparams(path: str | Path) -> dict[str, Any]:
    """The ``hyper_parameters`` a Lightning checkpoint stores (model name, input size ...); ``{}``
    for plain state-dict files or anything unreadable (the weights loader reports real problems)."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - see docstring
        return {}
    return dict(ckpt.get("hyper_parameters", {})) if isinstance(ckpt, dict) else {}


class EvaluationHooks:
    """Lightning hooks shared by the task modules: validation and test batches go to
    ``_evaluate_batch(batch)``, epoch ends to ``_finish_evaluation(stage)``, and the training set
    learns the epoch so its seeded augmentation differs per epoch and resumes exactly."""

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.datamodule, "train_set", None)
        if dataset is not None:
            dataset.set_epoch(self.current_epoch)


def build_task_model(name: str, pretrained: str | None, grad_checkpointing: bool, channels_last: bool,
                     **head_args: Any) -> tuple[nn.Module, torch.memory_format]:
    """A preset for a task: optional ImageNet backbone (loaded ``strict=False``: the head is new),
    gradient checkpointing, memory format. Returns the model and the format inputs must follow."""
    from ..models import create_model, load_checkpoint

    model = create_model(name, **head_args)
    if pretrained:
        report = load_checkpoint(model, pretrained, strict=False)
        log.info("backbone from %s: %d tensors loaded, %d new", pretrained, len(report.loaded), len(report.missing))
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=memory_format), memory_format


Box = tuple[float, float, float, float, float]  # x, y, w, h, score


class BoxesFile:
    """Person boxes from a COCO detection-results JSON, looked up by image id or file name."""

    def __init__(self, path: str | Path, threshold: float = 0.0, category_id: int = 1) -> None:
        with open(path) as f:
            entries = json.load(f)
        if not isinstance(entries, list):
            raise ValueError(f"boxes file {path}: expected a list of {{image_id, bbox, score}} (COCO results format)")
        self.by_key: dict[Any, list[Box]] = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "bbox" not in e or ("image_id" not in e and "file_name" not in e):
                raise ValueError(f"boxes file {path}: entry {i} needs bbox and image_id (or file_name): {e!r}")
            if e.get("category_id", category_id) != category_id or e.get("score", 1.0) < threshold:
                continue
            key = e.get("file_name", e.get("image_id"))
            self.by_key.setdefault(key, []).append((*map(float, e["bbox"]), float(e.get("score", 1.0))))

    def boxes_for(self, path: Path) -> list[Box]:
        if path.name in self.by_key:
            return self.by_key[path.name]
        return self.by_key.get(int(path.stem), []) if path.stem.isdigit() else []
