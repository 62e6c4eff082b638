"""Segmentation end to end on tiny generated Cityscapes-layout data: training, resume, OCR's two
outputs, evaluation through the confusion matrix, Lightning CLI routing, shipped configs, predict."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml

from hrnet.cli import main
from hrnet.synthetic.streets import make_synthetic_cityscapes
from hrnet.tasks.segmentation.data import SegDataModule
from hrnet.tasks.segmentation.module import Segmentation

CROP = (64, 128)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    make_synthetic_cityscapes(root, split="train", num_images=6, image_size=(64, 128), seed=0)
    make_synthetic_cityscapes(root, split="val", num_images=3, image_size=(64, 128), seed=1)
    return root


def _data(root: Path, **kwargs) -> SegDataModule:
    args = dict(dataset="cityscapes", root=str(root), crop_size=CROP, base_size=128, batch_size=2,
                eval_batch_size=3, num_workers=0)
    return SegDataModule(**{**args, **kwargs})


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    args = dict(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, logger=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                default_root_dir=tmp_path)
    return L.Trainer(**{**args, **kwargs})


def test_fit_validate_resume(scenes, tmp_path) -> None:
    L.seed_everything(0)
    task = Segmentation(model="seg_hrnet_w18_small_v1", class_weights="cityscapes")
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = _trainer(tmp_path, callbacks=[ckpt])
    trainer.fit(task, datamodule=_data(scenes))
    m = task.last_metrics
    assert {"mIoU", "pixel_accuracy", "mean_accuracy"} <= set(m) and 0 <= m["mIoU"] <= 1
    assert any(k.startswith("IoU/") for k in m)
    resumed = _trainer(tmp_path, max_epochs=2)
    resumed.fit(Segmentation(model="seg_hrnet_w18_small_v1"), datamodule=_data(scenes),
                ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.global_step == 4


def test_perfect_predictions_score_one(scenes) -> None:
    """The evaluation path (confusion matrix over the val set) on ground truth used as prediction."""
    dm = _data(scenes)
    dm.setup("validate")
    task = Segmentation(model="seg_hrnet_w18_small_v1")
    for batch in dm.val_dataloader():
        task.confusion.update(batch["mask"].clamp(max=18), batch["mask"])
    metrics = task.evaluate()
    assert metrics["mIoU"] == 1.0 and metrics["pixel_accuracy"] == 1.0
    present = [k for k in metrics if k.startswith("IoU/")]
    assert 5 <= len(present) < 19  # absent classes are left out, not counted as 0


def test_ocr_model_trains_on_both_outputs(scenes, tmp_path) -> None:
    """OCR returns [aux, ocr]: the loss weighs both (0.4, 1), evaluation reads the OCR output."""
    task = Segmentation(model="seg_hrnet_w48_ocr", loss="ohem", ohem_min_kept=1000)
    assert task.is_multi_output and tuple(task.criterion.balance_weights) == (0.4, 1.0)
    dm = _data(scenes, batch_size=1)
    _trainer(tmp_path, limit_train_batches=1, limit_val_batches=1).fit(task, datamodule=dm)
    assert np.isfinite(task.last_metrics["mIoU"])
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 96)
        aux, ocr = task.eval().model(x)
        torch.testing.assert_close(task.predict_logits(x).argmax(1),
                                   torch.nn.functional.interpolate(ocr, size=(64, 96), mode="bilinear",
                                                                   align_corners=True).argmax(1))


def test_lightning_cli_routes_segmentation_configs(scenes, tmp_path) -> None:
    config = {
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 1,
                    "limit_val_batches": 1, "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path)},
        "model": {"model": "seg_hrnet_w18_small_v1", "class_weights": None},
        "data": {"dataset": "cityscapes", "root": str(scenes), "crop_size": list(CROP), "base_size": 128,
                 "batch_size": 2, "num_workers": 0},
    }
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    saved = yaml.safe_load(next(tmp_path.rglob("config.yaml")).read_text())  # what LightningCLI recorded
    assert saved["model"]["model"] == "seg_hrnet_w18_small_v1" and "crop_size" in saved["data"]


@pytest.mark.parametrize("config", sorted(Path("configs/segmentation").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_instantiate(config: Path) -> None:
    from hrnet.tasks.lightning_cli import TaskCLI
    from hrnet.tasks.registry import TASKS

    cli = TaskCLI(TASKS["segmentation"], run=False,
                  args=["--config", str(config), "--model.pretrained", "null", "--trainer.devices", "1",
                        "--trainer.sync_batchnorm", "false"])
    raw = yaml.safe_load(config.read_text())
    assert cli.model.hparams.model == raw["model"]["model"]
    assert tuple(cli.datamodule.hparams.crop_size) == (512, 1024)


def test_predict_writes_labels_and_overlays(scenes, tmp_path) -> None:
    task = Segmentation(model="seg_hrnet_w18_small_v1", num_classes=19)
    trainer = _trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "seg.ckpt")
    images = sorted((scenes / "leftImg8bit" / "val").rglob("*.png"))
    folder = tmp_path / "in"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    assert main(["predict", str(folder), "--weights", str(tmp_path / "seg.ckpt"), "--out", str(tmp_path / "out"),
                 "--mode", "slide", "--crop", "64", "64", "--stride", "32", "32"]) == 0
    index = json.loads((tmp_path / "out" / "segmentation.json").read_text())
    assert len(index["images"]) == len(images) and len(index["classes"]) == 19
    labels = cv2.imread(str(tmp_path / "out" / index["images"][0]["labels"]), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (64, 128) and labels.max() < 19
    assert (tmp_path / "out" / f"{images[0].stem}_overlay.jpg").is_file()
