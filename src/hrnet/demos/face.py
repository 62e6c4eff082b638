"""The face demo: synthetic faces with the 68 landmarks of 300W in the official CSV layout, a small HRNetV2 face
model trained on them from scratch, NME (inter-ocular), failure rate and AUC on a held-out split (other seed)."""

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
class FaceDemoConfig:
    """What the face demo trains; the defaults finish in about 5 minutes on 2 CPU cores."""

    model: str = "face_hrnet_w18_small"
    input_size: tuple[int, int] = (128, 128)
    sigma: float = 1.0
    decode: str = "dark"
    train_images: int = 1200
    val_images: int = 200
    image_size: tuple[int, int] = (192, 192)
    epochs: int = 16
    batch_size: int = 32
    lr: float = 2e-3
    lr_steps: tuple[int, ...] = (12, 15)
    val_every: int = 4
    train_seed: int = 0
    val_seed: int = 1
    num_workers: int = 1
    precision: str = "auto"


def make_face_data(root: Path, cfg: FaceDemoConfig) -> dict[str, str]:
    """Train and held-out lists in the official 300W CSV layout (different seeds); reused when on disk."""
    from ..synthetic.faces import make_synthetic_300w

    paths = {}
    for split, n, seed in (("train", cfg.train_images, cfg.train_seed), ("val", cfg.val_images, cfg.val_seed)):
        marker = root / f".{split}-{n}-{seed}-{cfg.image_size[0]}x{cfg.image_size[1]}"
        csv = root / f"face_landmarks_300w_{split}.csv"
        if not marker.exists():
            csv = make_synthetic_300w(root, split=split, num_images=n, image_size=cfg.image_size, seed=seed)
            marker.touch()
        paths[f"{split}_list"] = str(csv)
    return paths


@torch.no_grad()
def save_face_grid(task: Any, dataset: Any, path: Path, n: int = 12, cols: int = 4) -> None:
    """Predicted (red) and true (green) landmarks of the first ``n`` held-out faces, on their images."""
    from ..tasks.face.decode import predict_landmarks

    task.eval()
    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    flip_index = task.keypoints.flip_index if task.hparams.flip_test else None
    landmarks, _ = predict_landmarks(task.model, torch.stack([s["image"] for s in samples]),
                                     torch.stack([s["center"] for s in samples]),
                                     torch.stack([s["scale"] for s in samples]), task.codec, task.hparams.decode,
                                     flip_index)
    tiles = []
    for s, pred in zip(samples, landmarks):
        record = dataset.records[int(s["index"])]
        image = dataset.read_image(record).copy()
        for points, colour in ((record.joints, (0, 220, 0)), (pred, (255, 40, 40))):
            for x, y in points:
                cv2.circle(image, (round(float(x)), round(float(y))), 1, colour, -1, cv2.LINE_AA)
        tiles.append(image)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    grid = np.zeros((math.ceil(len(tiles) / cols) * h, cols * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h:r * h + tile.shape[0], c * w:c * w + tile.shape[1]] = tile
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def run_face_demo(out: Path, cfg: FaceDemoConfig = FaceDemoConfig(), resume: bool = True) -> dict[str, Any]:
    """Generate faces, train, evaluate; write metrics.json, predictions.png, curves.png into ``out``."""
    import lightning as L

    from ..tasks.face.data import FaceDataModule
    from ..tasks.face.module import FaceLandmarkDetection
    from .runner import plot_curves

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = make_face_data(out / "data", cfg)
    print(f"data: {cfg.train_images} train / {cfg.val_images} held-out faces in {out / 'data'} "
          f"(official 300W CSV layout, {time.perf_counter() - start:.0f} s)")
    L.seed_everything(cfg.train_seed, verbose=False)
    model = FaceLandmarkDetection(model=cfg.model, keypoints="300w", input_size=cfg.input_size, sigma=cfg.sigma,
                                  decode=cfg.decode, lr=cfg.lr, lr_steps=cfg.lr_steps, channels_last=True,
                                  results_dir=str(out))
    datamodule = FaceDataModule(dataset="csv", keypoints="300w", val_list=data["val_list"],
                                train_list=data["train_list"], image_root=str(out / "data"),
                                input_size=cfg.input_size, sigma=cfg.sigma, batch_size=cfg.batch_size,
                                num_workers=cfg.num_workers, seed=cfg.train_seed)
    summary = fit_and_evaluate(out, model, datamodule, cfg, start, resume,
                               f"{cfg.model} at {cfg.input_size[0]}x{cfg.input_size[1]}")
    metrics, wall = model.last_metrics, summary["wall_time_s"]
    plot_curves(out / "logs" / "metrics.csv", out / "curves.png", metric="val/nme", loss_label="heatmap MSE",
                ylim=None)
    save_face_grid(model, datamodule.val_set, out / "predictions.png")
    print(f"held-out split (wall time {wall:.0f} s): NME {100 * metrics['nme']:.2f}% (inter-ocular), "
          f"FR@0.10 {100 * metrics['fr_0.10']:.1f}%, AUC@0.10 {metrics['auc_0.10']:.3f}")
    print(f"wrote {out / 'metrics.json'}, {out / 'predictions.png'}, {out / 'curves.png'}")
    return summary
