"""The bottom-up demo: synthetic images of several people in the COCO keypoints layout, a small HigherHRNet
trained on whole images, pycocotools OKS AP on a held-out split drawn with another seed."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..keypoints.drawing import draw_skeleton
from .runner import fit_and_evaluate


@dataclass(frozen=True)
class BottomUpDemoConfig:
    """What the bottom-up demo trains: ``higher_hrnet_w18_small`` from scratch on whole 192x192 images of 2-4
    people (official augmentation, losses and test); the defaults aim at about 10 minutes on 2 CPU cores."""

    model: str = "higher_hrnet_w18_small"
    input_size: int = 192
    train_images: int = 1500
    val_images: int = 200
    image_size: tuple[int, int] = (192, 192)
    persons_per_image: tuple[int, int] = (2, 4)
    difficulty: float = 0.5
    epochs: int = 8
    batch_size: int = 16
    lr: float = 2e-3
    lr_steps: tuple[int, ...] = (6, 7)
    val_every: int = 4
    train_seed: int = 0
    val_seed: int = 1
    num_workers: int = 1
    precision: str = "auto"


def make_bottomup_data(root: Path, cfg: BottomUpDemoConfig) -> dict[str, str]:
    """Train and held-out splits in COCO layout (different seeds); reused when already on disk."""
    from ..synthetic.people import make_synthetic_coco_keypoints

    paths = {}
    low, high = cfg.persons_per_image
    for split, n, seed in (("train", cfg.train_images, cfg.train_seed), ("val", cfg.val_images, cfg.val_seed)):
        ann = root / "annotations" / f"person_keypoints_{split}.json"
        marker = root / f".{split}-{n}-{seed}-{cfg.image_size[0]}x{cfg.image_size[1]}-{low}-{high}-{cfg.difficulty}"
        if not marker.exists():
            ann = make_synthetic_coco_keypoints(root, split=split, num_images=n, image_size=cfg.image_size,
                                                persons_per_image=cfg.persons_per_image, seed=seed,
                                                difficulty=cfg.difficulty)
            marker.touch()
        paths[f"{split}_ann"], paths[f"{split}_images"] = str(ann), str(root / split)
    return paths


@torch.no_grad()
def save_people_grid(task: Any, dataset: Any, path: Path, n: int = 12, cols: int = 4,
                     min_score: float = 0.2) -> None:
    """The people a BottomUpPose ``task`` finds (score >= ``min_score``) on the first ``n`` images of a
    BottomUpCoco ``dataset``."""
    from ..files import read_image
    from ..tasks.bottomup.decode import find_people, scaled_inputs

    task.eval()
    tiles = []
    for record in dataset.records[:n]:
        image = read_image(record.image_file)
        inputs = scaled_inputs(image, dataset.input_size, dataset.test_scales)
        keypoints, scores = find_people(task, inputs, task.keypoints.num_joints, task.grouping,
                                        task.keypoints.flip_index, task.device)
        for person in keypoints[scores >= min_score]:
            draw_skeleton(image, person, task.keypoints, threshold=0.1)
        tiles.append(image)
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    grid = np.zeros((math.ceil(len(tiles) / cols) * h, cols * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h:r * h + tile.shape[0], c * w:c * w + tile.shape[1]] = tile
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def run_bottomup_demo(out: Path, cfg: BottomUpDemoConfig = BottomUpDemoConfig(), resume: bool = True) -> dict[str, Any]:
    """Generate data, train, evaluate; write metrics.json, predictions.png, curves.png into ``out``."""
    import lightning as L

    from ..tasks.bottomup.data import BottomUpDataModule
    from ..tasks.bottomup.module import BottomUpPose
    from .pose import format_metrics
    from .runner import plot_curves

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = make_bottomup_data(out / "data", cfg)
    print(f"data: {cfg.train_images} train / {cfg.val_images} held-out images of {cfg.persons_per_image[0]}-"
          f"{cfg.persons_per_image[1]} people in {out / 'data'} ({time.perf_counter() - start:.0f} s)")
    L.seed_everything(cfg.train_seed, verbose=False)
    size = (cfg.input_size, cfg.input_size)
    model = BottomUpPose(model=cfg.model, input_size=size, lr=cfg.lr, lr_steps=cfg.lr_steps, channels_last=True,
                         results_dir=str(out))
    datamodule = BottomUpDataModule(**data, input_size=size, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                    seed=cfg.train_seed)
    summary = fit_and_evaluate(out, model, datamodule, cfg, start, resume,
                               f"{cfg.model} at {cfg.input_size}x{cfg.input_size}")
    plot_curves(out / "logs" / "metrics.csv", out / "curves.png", loss_label="heatmap MSE + AE")
    save_people_grid(model, datamodule.val_set, out / "predictions.png")
    print(format_metrics(model.last_metrics, summary["wall_time_s"]))
    print(f"wrote {out / 'metrics.json'}, {out / 'predictions.png'}, {out / 'curves.png'}")
    return summary
