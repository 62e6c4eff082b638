"""What every demo shares: train on CPU with Lightning (resuming), evaluate the final weights, write
``metrics.json``, plot the training curves. Each demo generates a synthetic dataset in a real on-disk
format and evaluates on a held-out split drawn with another seed."""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def fit_and_evaluate(out: Path, model: Any, datamodule: Any, cfg: Any, start: float, resume: bool,
                     what: str) -> dict[str, Any]:
    """Train on CPU (bf16 where native), resuming from ``out/checkpoints/last.ckpt``; make sure the
    final weights were evaluated; write ``metrics.json`` atomically and return its content."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from ..files import write_atomic
    from ..inference import bf16_supported
    from ..tasks.checkpoints import AtomicCheckpointIO

    native_bf16 = bf16_supported(torch.device("cpu"))
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if native_bf16 else "32-true")
    trainer = L.Trainer(max_epochs=cfg.epochs, accelerator="cpu", devices=1, precision=precision,
                        logger=CSVLogger(out, name="logs", version=""),
                        callbacks=[ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)],
                        check_val_every_n_epoch=cfg.val_every, num_sanity_val_steps=0, log_every_n_steps=10,
                        enable_model_summary=False, plugins=[AtomicCheckpointIO()])
    last = out / "checkpoints" / "last.ckpt"
    print(f"training {what} for {cfg.epochs} epochs ({precision}); resume: {resume and last.exists()}")
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if resume and last.exists() else None)
    if trainer.current_epoch % cfg.val_every != 0 or not model.last_metrics:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    summary = {**model.last_metrics, "wall_time_s": round(time.perf_counter() - start, 1), "precision": precision,
               "config": asdict(cfg)}
    write_atomic(out / "metrics.json", json.dumps(summary, indent=1))
    return summary


def plot_curves(metrics_csv: Path, path: Path, metric: str = "val/AP", loss_label: str = "heatmap MSE",
                ylim: tuple[float, float] | None = (0, 1)) -> None:
    """Training loss per step and a validation metric per epoch (on ``ylim``; ``None``: fitted) from a
    Lightning CSVLogger file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss_steps, losses, ap_epochs, aps = [], [], [], []
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                loss_steps.append(int(row["step"]))
                losses.append(float(row["train/loss"]))
            if row.get(metric):
                ap_epochs.append(int(row["epoch"]) + 1)
                aps.append(float(row[metric]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(loss_steps, losses)
    ax1.set(xlabel="step", ylabel=loss_label, title="training loss", yscale="log")
    ax2.plot(ap_epochs, aps, marker="o")
    ax2.set(xlabel="epoch", ylabel=metric, title=f"held-out {metric}", ylim=ylim)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
