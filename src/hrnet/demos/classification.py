"""The classification demo: a synthetic ImageFolder (shapes, textures and colour patterns under clutter, noise and
scale changes), a small HRNet-C trained on it from scratch, top-1 / top-5 on a held-out split (other seed)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .runner import fit_and_evaluate


@dataclass(frozen=True)
class ClassificationDemoConfig:
    """What the classification demo trains; the defaults finish in about 5 minutes on 2 CPU cores."""

    model: str = "hrnet_w18_small"
    image_size: int = 64
    train_images: int = 2400
    val_images: int = 400
    epochs: int = 18
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 4e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    crop_scale: tuple[float, float] = (0.8, 1.0)
    val_every: int = 6
    train_seed: int = 0
    val_seed: int = 1
    num_workers: int = 1
    precision: str = "auto"


def make_classification_data(root: Path, cfg: ClassificationDemoConfig) -> list[str]:
    """Train and held-out ImageFolders (different seeds); reused when on disk. Returns the class names."""
    from ..synthetic.classes import CLASSES, make_synthetic_image_folder

    for split, n, seed in (("train", cfg.train_images, cfg.train_seed), ("val", cfg.val_images, cfg.val_seed)):
        marker = root / f".{split}-{n}-{seed}-{cfg.image_size}"
        if not marker.exists():
            make_synthetic_image_folder(root, split=split, images_per_class=max(1, n // len(CLASSES)),
                                        image_size=cfg.image_size, seed=seed)
            marker.touch()
    return list(CLASSES)


@torch.no_grad()
def save_classification_grid(task: Any, dataset: Any, path: Path, n: int = 16, cols: int = 8) -> None:
    """``n`` held-out images with the predicted class (green: right, red: wrong)."""
    from ..files import read_image

    task.eval()
    rng = np.random.default_rng(0)
    picks = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    samples = [dataset[int(i)] for i in picks]
    predictions = task(torch.stack([s["image"] for s in samples])).argmax(1).tolist()
    names = task.hparams.class_names or [str(c) for c in range(task.hparams.num_classes)]
    tiles = []
    for i, s, p in zip(picks, samples, predictions):
        tile = cv2.resize(read_image(str(dataset.samples[int(i)][0])), (128, 128), interpolation=cv2.INTER_NEAREST)
        colour = (0, 200, 0) if p == int(s["label"]) else (230, 30, 30)
        cv2.putText(tile, names[p][:14], (3, 122), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        tiles.append(tile)
    grid = np.zeros((math.ceil(len(tiles) / cols) * 128, cols * 128, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128] = tile
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def run_classification_demo(out: Path, cfg: ClassificationDemoConfig = ClassificationDemoConfig(),
                            resume: bool = True) -> dict[str, Any]:
    """Generate the folders, train, evaluate; write metrics.json, predictions.png, curves.png into ``out``."""
    import lightning as L

    from ..tasks.classification.data import ClassificationDataModule
    from ..tasks.classification.module import ImageClassification
    from .runner import plot_curves

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    names = make_classification_data(out / "data", cfg)
    print(f"data: {cfg.train_images} train / {cfg.val_images} held-out images of {len(names)} classes in "
          f"{out / 'data'} (ImageFolder layout, {time.perf_counter() - start:.0f} s)")
    L.seed_everything(cfg.train_seed, verbose=False)
    model = ImageClassification(model=cfg.model, num_classes=len(names), optimizer=cfg.optimizer, lr=cfg.lr,
                                weight_decay=cfg.weight_decay, schedule="cosine",
                                warmup_epochs=cfg.warmup_epochs, label_smoothing=cfg.label_smoothing,
                                class_names=names, channels_last=True, results_dir=str(out))
    datamodule = ClassificationDataModule(dataset="folder", train_dir=str(out / "data" / "train"),
                                          val_dir=str(out / "data" / "val"), model=cfg.model,
                                          input_size=(cfg.image_size, cfg.image_size), crop_pct=1.0,
                                          crop_scale=cfg.crop_scale,
                                          batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                          seed=cfg.train_seed)
    summary = fit_and_evaluate(out, model, datamodule, cfg, start, resume,
                               f"{cfg.model} at {cfg.image_size}x{cfg.image_size}")
    metrics, wall = model.last_metrics, summary["wall_time_s"]
    plot_curves(out / "logs" / "metrics.csv", out / "curves.png", metric="val/top1", loss_label="cross-entropy")
    save_classification_grid(model, datamodule.val_set, out / "predictions.png")
    print(f"held-out split (wall time {wall:.0f} s): top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f}")
    print(f"wrote {out / 'metrics.json'}, {out / 'predictions.png'}, {out / 'curves.png'}, "
          f"{out / 'classification_val.json'}")
    return summary
