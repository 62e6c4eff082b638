"""The pose demo: synthetic people in the COCO keypoints layout, a small HRNet trained on them, pycocotools
OKS AP on a held-out split drawn with another seed."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..keypoints.drawing import draw_skeleton
from .runner import fit_and_evaluate


@torch.no_grad()
def save_prediction_grid(task: Any, dataset: Any, path: Path, n: int = 12, cols: int = 4) -> None:
    """Predictions of a PoseEstimation ``task`` on the first ``n`` images of a CocoKeypoints ``dataset``."""
    from ..files import read_image
    from ..keypoints.topdown import heatmaps_to_image_keypoints, predict_heatmaps

    task.eval()
    by_image: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(dataset.records):
        if len(by_image) < n or rec.image_file in by_image:
            by_image[rec.image_file].append(i)
    tiles = []
    for file, indices in by_image.items():
        image = read_image(file)
        batch = [dataset[i] for i in indices]
        images = torch.stack([b["image"] for b in batch])
        heatmaps = predict_heatmaps(task.model, images, task.keypoints.flip_index)
        kpts = heatmaps_to_image_keypoints(task.codec, heatmaps, torch.stack([b["center"] for b in batch]),
                                           torch.stack([b["scale"] for b in batch]))
        for person in kpts:
            draw_skeleton(image, person, task.keypoints)
        tiles.append(image)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = math.ceil(len(tiles) / cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h:r * h + tile.shape[0], c * w:c * w + tile.shape[1]] = tile
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


@dataclass(frozen=True)
class PoseDemoConfig:
    """What the demo trains; the defaults finish in about 5 minutes on 2 CPU cores."""

    model: str = "pose_hrnet_w18_small"
    input_size: tuple[int, int] = (128, 96)
    sigma: float = 2.0
    decode: str = "dark"
    unbiased: bool = True
    train_images: int = 1600
    val_images: int = 200
    image_size: tuple[int, int] = (192, 192)
    difficulty: float = 0.7
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    lr_steps: tuple[int, ...] = (16, 19)
    val_every: int = 5
    train_seed: int = 0
    val_seed: int = 1
    num_workers: int = 1
    precision: str = "auto"


def make_pose_data(root: Path, cfg: PoseDemoConfig) -> dict[str, str]:
    """Train and held-out splits in COCO layout (different seeds); reused when already on disk."""
    from ..synthetic.people import make_synthetic_coco_keypoints

    paths = {}
    for split, n, seed in (("train", cfg.train_images, cfg.train_seed), ("val", cfg.val_images, cfg.val_seed)):
        ann = root / "annotations" / f"person_keypoints_{split}.json"
        marker = root / f".{split}-{n}-{seed}-{cfg.image_size[0]}x{cfg.image_size[1]}-{cfg.difficulty}"
        if not marker.exists():
            ann = make_synthetic_coco_keypoints(root, split=split, num_images=n, image_size=cfg.image_size, seed=seed,
                                                difficulty=cfg.difficulty)
            marker.touch()
        paths[f"{split}_ann"], paths[f"{split}_images"] = str(ann), str(root / split)
    return paths


def run_pose_demo(out: Path, cfg: PoseDemoConfig = PoseDemoConfig(), resume: bool = True) -> dict[str, Any]:
    """Generate data, train, evaluate; write metrics.json, predictions.png, curves.png into ``out``."""
    import lightning as L

    from ..tasks.pose.data import PoseDataModule
    from ..tasks.pose.module import PoseEstimation
    from .runner import plot_curves

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = make_pose_data(out / "data", cfg)
    print(f"data: {cfg.train_images} train / {cfg.val_images} held-out images in {out / 'data'} "
          f"({time.perf_counter() - start:.0f} s)")
    L.seed_everything(cfg.train_seed, verbose=False)
    model = PoseEstimation(model=cfg.model, input_size=cfg.input_size, sigma=cfg.sigma, decode=cfg.decode,
                           unbiased=cfg.unbiased, lr=cfg.lr, lr_steps=cfg.lr_steps, channels_last=True,
                           results_dir=str(out))
    datamodule = PoseDataModule(**data, input_size=cfg.input_size, sigma=cfg.sigma, unbiased=cfg.unbiased,
                                batch_size=cfg.batch_size, num_workers=cfg.num_workers, seed=cfg.train_seed)
    summary = fit_and_evaluate(out, model, datamodule, cfg, start, resume,
                               f"{cfg.model} at {cfg.input_size[0]}x{cfg.input_size[1]}")
    metrics, wall = model.last_metrics, summary["wall_time_s"]
    plot_curves(out / "logs" / "metrics.csv", out / "curves.png")
    save_prediction_grid(model, datamodule.val_set, out / "predictions.png")
    print(format_metrics(metrics, wall))
    print(f"wrote {out / 'metrics.json'}, {out / 'predictions.png'}, {out / 'curves.png'}")
    return summary


def format_metrics(metrics: dict[str, float], wall: float) -> str:
    names = ["AP", "AP50", "AP75", "APm", "APl", "AR"]
    head = " | ".join(f"{n:>6}" for n in names)
    row = " | ".join(f"{metrics.get(n, float('nan')):6.3f}" for n in names)
    return f"held-out split, pycocotools OKS keypoints (wall time {wall:.0f} s):\n{head}\n{row}"
