"""``hrnet predict DIR --devices N [--num-nodes M]``: a big prediction job through Lightning's predict loop,
one process per device (DDP), as ``hrnet fit`` scales.

Rank ``r`` of ``W`` takes inputs ``r, r + W, ...`` (:class:`hrnet.seeding.EvaluationShard`: no input twice,
none left out), decodes them in DataLoader workers, predicts them in batches with the task's
:class:`~hrnet.tasks.base.Predictor` (on its own device), writes their pictures and then its shard of the
records, ``OUT/.shards/rank<r>.json``. When every rank is done, rank 0 merges the shards in input order into
the one results file (:func:`merge_shards`, which can also be run again by hand on the shard folder), as
one process would have written it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..files import read_image, write_atomic, write_image
from ..seeding import EvaluationShard
from .base import Predictor, RunReport
from .pipeline import ERRORS, GROUP, first_line

SHARDS = ".shards"


class InputImages(Dataset):
    """``(index, path, RGB image or None, why it failed)`` for each image file."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, str, np.ndarray | None, str]:
        path = self.paths[index]
        try:
            return index, str(path), read_image(str(path)), ""
        except ERRORS as err:
            return index, str(path), None, first_line(err)


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


class DistributedPrediction(L.LightningModule):
    """The predict loop of one rank: ``build(device)`` makes the rank's predictor (``hrnet predict``'s flags,
    on the rank's device), each batch is predicted, drawn and written, and the records go to the rank's shard."""

    def __init__(self, build: Callable[[str], Predictor], paths: Sequence[Path], out: Path,
                 batch_size: int = GROUP, workers: int = 2) -> None:
        super().__init__()
        self.build, self.paths, self.out = build, list(paths), out
        self.batch_size, self.workers = batch_size, workers
        self.records: list[dict[str, Any]] = []
        self.failed: list[tuple[int, str, str]] = []
        self.report: RunReport | None = None

    def setup(self, stage: str) -> None:
        self.predictor = self.build(str(self.trainer.strategy.root_device))

    def predict_dataloader(self) -> DataLoader:
        dataset = InputImages(self.paths)
        shard = EvaluationShard(dataset, self.trainer.world_size, self.trainer.global_rank)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=shard, num_workers=self.workers,
                          collate_fn=_as_list)

    def predict_step(self, batch: list[tuple[int, str, np.ndarray | None, str]]) -> None:
        good = [(index, Path(path), image) for index, path, image, _ in batch if image is not None]
        self.failed += [(index, Path(path).name, why) for index, path, image, why in batch if image is None]
        results = self.predictor.predict_many([image for _, _, image in good], [path for _, path, _ in good])
        for (index, path, image), result in zip(good, results):
            write_image(self.out / f"{path.stem}_{self.predictor.picture}.jpg", self.predictor.draw(image, result))
            self.records.append({"index": index, "file": path.name,
                                 **self.predictor.record(result, self.out, path.stem)})

    def on_predict_epoch_end(self) -> None:
        shard = {"records": self.records, "failed": self.failed, "header": self.predictor.header()}
        write_atomic(self.out / SHARDS / f"rank{self.trainer.global_rank}.json", json.dumps(shard))
        self.trainer.strategy.barrier()
        if self.trainer.global_rank == 0:
            self.report = merge_shards(self.out, self.predictor.results_file, self.trainer.world_size)


def merge_shards(out: Path, results_file: str, world_size: int) -> RunReport:
    """The one results file from the ranks' shards in ``out/.shards``, records in input order; the shards are
    removed once it is written. A missing shard is a one-line error naming it."""
    records: list[dict[str, Any]] = []
    failed: list[tuple[int, str, str]] = []
    header: dict[str, Any] = {}
    for rank in range(world_size):
        path = out / SHARDS / f"rank{rank}.json"
        if not path.is_file():
            raise FileNotFoundError(f"prediction shard {path} not found: rank {rank} did not finish")
        shard = json.loads(path.read_text())
        records += shard["records"]
        failed += [tuple(entry) for entry in shard["failed"]]
        header = shard["header"]
    records.sort(key=lambda record: record["index"])
    target = out / results_file
    write_atomic(target, json.dumps({**header, "images": [
        {key: value for key, value in record.items() if key != "index"} for record in records]}))
    for rank in range(world_size):
        (out / SHARDS / f"rank{rank}.json").unlink()
    (out / SHARDS).rmdir()
    return RunReport(target, len(records), 0, [(name, why) for _, name, why in sorted(failed)])


def predict_distributed(build: Callable[[str], Predictor], paths: Sequence[Path], out: Path, devices: int | str,
                        num_nodes: int = 1, accelerator: str = "auto") -> RunReport | None:
    """Predict ``paths`` into ``out`` on ``devices`` x ``num_nodes`` processes; rank 0 returns the report of
    the merged results file, the other ranks ``None``."""
    out.mkdir(parents=True, exist_ok=True)
    multi = num_nodes > 1 or devices not in (1, "1")
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                        strategy="ddp" if multi else "auto", logger=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    module = DistributedPrediction(build, paths, out)
    trainer.predict(module, return_predictions=False)
    return module.report
