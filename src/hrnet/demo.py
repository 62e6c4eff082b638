"""The embedded demos: generate a synthetic dataset in a real on-disk format (COCO keypoints, or
Cityscapes for segmentation), train a small HRNet on it with Lightning, evaluate on a held-out split
drawn with another seed (pycocotools OKS AP, or mIoU)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


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
    from .data.synthetic import make_synthetic_coco_keypoints

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


def fit_and_evaluate(out: Path, model: Any, datamodule: Any, cfg: Any, start: float, resume: bool,
                     what: str) -> dict[str, Any]:
    """Train on CPU (bf16 where native), resuming from ``out/checkpoints/last.ckpt``; make sure the
    final weights were evaluated; write ``metrics.json`` atomically and return its content."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from .tasks.common import write_atomic

    from .inference import bf16_supported

    native_bf16 = bf16_supported(torch.device("cpu"))
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if native_bf16 else "32-true")
    trainer = L.Trainer(max_epochs=cfg.epochs, accelerator="cpu", devices=1, precision=precision,
                        logger=CSVLogger(out, name="logs", version=""),
                        callbacks=[ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)],
                        check_val_every_n_epoch=cfg.val_every, num_sanity_val_steps=0, log_every_n_steps=10,
                        enable_model_summary=False)
    last = out / "checkpoints" / "last.ckpt"
    print(f"training {what} for {cfg.epochs} epochs ({precision}); resume: {resume and last.exists()}")
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if resume and last.exists() else None)
    if trainer.current_epoch % cfg.val_every != 0 or not model.last_metrics:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    summary = {**model.last_metrics, "wall_time_s": round(time.perf_counter() - start, 1), "precision": precision,
               "config": asdict(cfg)}
    write_atomic(out / "metrics.json", json.dumps(summary, indent=1))
    return summary


def run_pose_demo(out: Path, cfg: PoseDemoConfig = PoseDemoConfig(), resume: bool = True) -> dict[str, Any]:
    """Generate data, train, evaluate; write metrics.json, predictions.png, curves.png into ``out``."""
    import lightning as L

    from .tasks.pose import PoseDataModule, PoseEstimation
    from .visualize import plot_curves, save_prediction_grid

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


@dataclass(frozen=True)
class SegDemoConfig:
    """What the segmentation demo trains; the defaults finish in about 5 minutes on 2 CPU cores."""

    model: str = "seg_hrnet_w18_small_v1"
    image_size: tuple[int, int] = (128, 256)
    crop_size: tuple[int, int] = (96, 192)
    scale_range: tuple[float, float] = (0.75, 1.5)
    train_images: int = 400
    val_images: int = 60
    difficulty: float = 1.0
    epochs: int = 30
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    loss: str = "ohem"
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 30000
    val_every: int = 10
    train_seed: int = 0
    val_seed: int = 1
    num_workers: int = 1
    precision: str = "auto"


def make_seg_data(root: Path, cfg: SegDemoConfig) -> None:
    """Train and held-out splits in the Cityscapes layout (different seeds); reused when on disk."""
    from .data.synthetic_scenes import make_synthetic_cityscapes

    for split, n, seed in (("train", cfg.train_images, cfg.train_seed), ("val", cfg.val_images, cfg.val_seed)):
        marker = root / f".{split}-{n}-{seed}-{cfg.image_size[0]}x{cfg.image_size[1]}-{cfg.difficulty}"
        if not marker.exists():
            make_synthetic_cityscapes(root, split=split, num_images=n, image_size=cfg.image_size, seed=seed,
                                      difficulty=cfg.difficulty)
            marker.touch()


def run_seg_demo(out: Path, cfg: SegDemoConfig = SegDemoConfig(), resume: bool = True) -> dict[str, Any]:
    """Generate street scenes, train, evaluate; write metrics.json, predictions.png, curves.png."""
    import lightning as L

    from .tasks.segmentation import SegDataModule, Segmentation
    from .visualize import plot_curves, save_segmentation_grid

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    make_seg_data(out / "data", cfg)
    print(f"data: {cfg.train_images} train / {cfg.val_images} held-out street scenes in {out / 'data'} "
          f"(Cityscapes layout, {time.perf_counter() - start:.0f} s)")
    L.seed_everything(cfg.train_seed, verbose=False)
    model = Segmentation(model=cfg.model, optimizer=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         loss=cfg.loss, ohem_thresh=cfg.ohem_thresh, ohem_min_kept=cfg.ohem_min_kept,
                         class_weights=None, channels_last=True)
    datamodule = SegDataModule(dataset="cityscapes", root=str(out / "data"), crop_size=cfg.crop_size,
                               base_size=max(cfg.image_size), scale_range=cfg.scale_range,
                               batch_size=cfg.batch_size, eval_batch_size=cfg.batch_size,
                               num_workers=cfg.num_workers, seed=cfg.train_seed)
    summary = fit_and_evaluate(out, model, datamodule, cfg, start, resume,
                               f"{cfg.model} on {cfg.crop_size[0]}x{cfg.crop_size[1]} crops")
    metrics, wall = model.last_metrics, summary["wall_time_s"]
    plot_curves(out / "logs" / "metrics.csv", out / "curves.png", metric="val/mIoU", loss_label="cross-entropy")
    save_segmentation_grid(model, datamodule.val_set, out / "predictions.png")
    present = {k.removeprefix("IoU/"): v for k, v in metrics.items() if k.startswith("IoU/")}
    print(f"held-out split (wall time {wall:.0f} s): mIoU {metrics['mIoU']:.3f}, pixel accuracy "
          f"{metrics['pixel_accuracy']:.3f}\n" + "  ".join(f"{k} {v:.2f}" for k, v in present.items()))
    print(f"wrote {out / 'metrics.json'}, {out / 'predictions.png'}, {out / 'curves.png'}")
    return summary
