"""Pictures: skeletons on images, training curves."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .data.keypoints import KeypointSpec


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, spec: KeypointSpec, threshold: float = 0.2,
                  radius: int = 3, thickness: int = 2) -> np.ndarray:
    """Draw one person's (K, 3) [x, y, confidence] keypoints on an RGB uint8 image (in place, returned).

    Left joints/limbs are orange, right ones blue, the rest green; joints below ``threshold`` are skipped.
    """
    names = spec.joint_names
    side = ["left" if n.startswith("left") else "right" if n.startswith("right") else "mid" for n in names]
    colour = {"left": (255, 128, 0), "right": (0, 128, 255), "mid": (0, 200, 0)}
    ok = keypoints[:, 2] >= threshold
    for a, b in spec.skeleton:
        if ok[a] and ok[b]:
            limb = side[a] if side[a] == side[b] else "mid"
            pa, pb = tuple(int(round(v)) for v in keypoints[a, :2]), tuple(int(round(v)) for v in keypoints[b, :2])
            cv2.line(image, pa, pb, colour[limb], thickness, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(image, tuple(int(round(v)) for v in keypoints[j, :2]), radius, colour[side[j]], -1, cv2.LINE_AA)
    return image


@torch.no_grad()
def save_prediction_grid(task: Any, dataset: Any, path: Path, n: int = 12, cols: int = 4) -> None:
    """Predictions of a PoseEstimation ``task`` on the first ``n`` images of a CocoKeypoints ``dataset``."""
    from .data.coco_keypoints import read_image
    from .tasks.pose import heatmaps_to_image_keypoints, predict_heatmaps

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


def plot_curves(metrics_csv: Path, path: Path, metric: str = "val/AP", loss_label: str = "heatmap MSE") -> None:
    """Training loss per step and a validation metric per epoch from a Lightning CSVLogger file."""
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
    ax2.set(xlabel="epoch", ylabel=metric, title=f"held-out {metric}", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def save_segmentation_grid(task: Any, dataset: Any, path: Path, n: int = 6) -> None:
    """Rows of image | ground truth | prediction for the first ``n`` samples of a segmentation dataset."""
    task.eval()
    rows = []
    for i in range(min(n, len(dataset))):
        sample = dataset[i]
        labels = task.predict_logits(sample["image"][None]).argmax(1)[0].numpy()
        std = np.asarray(dataset.std, np.float32)[:, None, None]
        mean = np.asarray(dataset.mean, np.float32)[:, None, None]
        image = ((sample["image"].numpy() * std + mean).transpose(1, 2, 0) * 255).clip(0, 255).astype(np.uint8)
        rows.append(np.concatenate([image, dataset.colorize(sample["mask"]), dataset.colorize(labels)], axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
