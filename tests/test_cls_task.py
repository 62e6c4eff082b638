"""The classification task: top-1 / top-5, per-class accuracy and the confusion matrix against hand-computed values,
fine-tuning (a new classifier, frozen parts, the backbone's learning rate), prediction with ImageNet's names from an
official-layout state dict, and a 2-process DDP evaluation equal to one process."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from fit_runs import csv_logger, logged_metrics, run_hrnet, write_config

from hrnet.cli import main
from hrnet.models import create_model
from hrnet.models.convert import to_official
from hrnet.synthetic.classes import make_synthetic_image_folder
from hrnet.tasks.classification.module import (
    ImageClassification,
    confusion_matrix,
    topk_correct,
)
from hrnet.tasks.classification.predict import imagenet_class_names


def test_topk_against_hand_computed_values() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.3, 0.2, 0.5, 0.4],    # order: 1, 5, 6, 3, 4, 0, 2
                           [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],    # order: 0, 6, 5, 4, 3, 2, 1
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])   # order: 6, 5, 4, 3, 2, 1, 0
    labels = torch.tensor([1, 3, 0])  # top-1 hit; 5th largest (0.3): top-5 only; last (7th): neither
    hits = topk_correct(logits, labels)
    assert hits[1].tolist() == [True, False, False]
    assert hits[5].tolist() == [True, True, False]


def test_evaluate_metrics_per_class_accuracy_and_confusion_matrix(tmp_path: Path) -> None:
    task = ImageClassification(model="hrnet_w18_small", num_classes=3, class_names=["a", "b", "c"],
                               results_dir=str(tmp_path))
    # (label, prediction, top5 hit, loss): a 2/3 right, b 1/1, c 0/1
    rows = [(0, 0, True, 0.2), (0, 2, True, 1.0), (0, 0, True, 0.4), (1, 1, True, 0.1), (2, 0, False, 2.3)]
    preds = [{"index": i, "label": lab, "prediction": p, "top1": lab == p, "top5": t5, "loss": loss}
             for i, (lab, p, t5, loss) in enumerate(rows)]
    metrics = task.evaluate(preds)
    assert metrics == pytest.approx({"top1": 3 / 5, "top5": 4 / 5, "loss": (0.2 + 1.0 + 0.4 + 0.1 + 2.3) / 5})
    report = json.loads((tmp_path / "classification_val.json").read_text())
    assert report["per_class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.0})
    assert report["confusion_matrix"]["rows_true_columns_predicted"] == [[2, 0, 1], [0, 1, 0], [1, 0, 0]]
    np.testing.assert_array_equal(confusion_matrix(np.array([1, 1]), np.array([0, 1]), 2), [[0, 0], [1, 1]])


def test_fine_tuning_keeps_the_backbone_replaces_the_classifier_and_freezes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    imagenet = create_model("hrnet_w18_small")
    torch.save(to_official(imagenet.state_dict(), "cls"), tmp_path / "official.pth")
    task = ImageClassification(model="hrnet_w18_small", num_classes=5, pretrained=str(tmp_path / "official.pth"),
                               freeze_parts=2, backbone_lr_mult=0.1, lr=0.05)
    ours = task.model.state_dict()
    for key, value in imagenet.state_dict().items():
        if not key.startswith("head.classifier"):
            torch.testing.assert_close(ours[key], value, rtol=0, atol=0)
    assert task.model.head.classifier.weight.shape == (5, 2048)
    body = task.model.backbone
    assert not any(p.requires_grad for p in [*body.conv1.parameters(), *body.layer1.parameters()])
    assert all(p.requires_grad for p in body.stage2.parameters())
    task._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=1)
    optimizer = task.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005, 0.05])
    frozen = {id(p) for p in body.conv1.parameters()}
    assert not frozen & {id(p) for g in optimizer.param_groups for p in g["params"]}


def test_predict_an_official_state_dict_writes_imagenet_top5(tmp_path: Path) -> None:
    torch.save(to_official(create_model("hrnet_w18_small").state_dict(), "cls"), tmp_path / "w18_small.pth")
    photo = tmp_path / "photos" / "a.jpg"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    assert main(["predict", str(photo.parent), "--model", "hrnet_w18_small", "--weights",
                 str(tmp_path / "w18_small.pth"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "classes.json").read_text())
    classes = result["images"][0]["classes"]
    names = imagenet_class_names()
    assert len(names) == 1000 and len(classes) == 5
    assert all(names[c["label"]] == c["name"] for c in classes)
    probabilities = [c["probability"] for c in classes]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-4


def test_two_process_evaluation_equals_one_process(tmp_path: Path) -> None:
    """Validation over 2 ranks (23 images: uneven shards) logs the metrics and writes the report 1 process does."""
    for split, seed in (("train", 0), ("val", 1)):
        make_synthetic_image_folder(tmp_path / "data", split=split, images_per_class=2, image_size=32, seed=seed)
    next((tmp_path / "data" / "val").glob("*/00001.jpg")).unlink()
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "limit_train_batches": 1,
                    "default_root_dir": str(tmp_path / "fit")},
        "model": {"model": "hrnet_w18_small", "num_classes": 12, "lr": 0.01},
        "data": {"dataset": "folder", "train_dir": str(tmp_path / "data" / "train"),
                 "val_dir": str(tmp_path / "data" / "train"), "input_size": [32, 32], "crop_pct": 1.0,
                 "batch_size": 4, "eval_batch_size": 2, "num_workers": 0},
    }
    run_hrnet("fit", write_config(config, tmp_path / "fit.yaml"))
    checkpoint = next((tmp_path / "fit").rglob("*.ckpt"))
    seen = {}
    for name, trainer in (("one", {}), ("two", {"devices": 2, "strategy": "ddp"})):
        run = tmp_path / f"validate_{name}"
        validate = json.loads(json.dumps(config))
        validate["trainer"] |= {"logger": csv_logger(run), "precision": "64-true", **trainer}
        validate["model"]["results_dir"] = str(run)
        validate["data"]["val_dir"] = str(tmp_path / "data" / "val")
        run_hrnet("validate", write_config(validate, tmp_path / f"validate_{name}.yaml"), "--ckpt_path", str(checkpoint))
        seen[name] = logged_metrics(run)
    assert "val/top1" in seen["one"] and seen["two"] == seen["one"]
    one = json.loads((tmp_path / "validate_one" / "classification_val.json").read_text())
    assert json.loads((tmp_path / "validate_two" / "classification_val.json").read_text()) == one
    assert sum(map(sum, one["confusion_matrix"]["rows_true_columns_predicted"])) == 23


def test_ema_follows_the_warmed_up_decay_formula() -> None:
    """First update: a copy; then ema = d ema + (1 - d) w with d = min(decay, (1 + n) / (10 + n)), n updates before
    (TensorFlow ExponentialMovingAverage.s warm-up), for weights and BN running statistics; integer buffers are copied."""
    task = ImageClassification(model="hrnet_w18_small", num_classes=3, ema_decay=0.5)
    weight, mean = task.model.head.classifier.weight, task.model.backbone.bn1.running_mean
    steps = [(torch.full_like(weight, v), torch.full_like(mean, -v)) for v in (1.0, 2.0, 4.0, 8.0)]
    expected_w, expected_m = None, None
    for n, (w, m) in enumerate(steps):
        with torch.no_grad():
            weight.copy_(w), mean.copy_(m)
        task.model.backbone.bn1.num_batches_tracked.fill_(10 + n)
        task.on_train_batch_end(None, None, n)
        d = min(0.5, (1 + n) / (10 + n))  # n updates before this one
        expected_w = w if expected_w is None else d * expected_w + (1 - d) * w
        expected_m = m if expected_m is None else d * expected_m + (1 - d) * m
    ema = task.ema.module
    torch.testing.assert_close(ema.head.classifier.weight, expected_w)
    torch.testing.assert_close(ema.backbone.bn1.running_mean, expected_m)
    assert int(ema.backbone.bn1.num_batches_tracked) == 13
    assert not any(p.requires_grad for p in task.ema.parameters())
    x = torch.randn(1, 3, 32, 32)
    task.eval()
    torch.testing.assert_close(task(x), ema(x))
    task.train()
    torch.testing.assert_close(task(x.repeat(2, 1, 1, 1)), task.model(x.repeat(2, 1, 1, 1)))


def test_ema_checkpoint_is_timm_layout_read_by_predict_and_restored_on_resume(tmp_path: Path) -> None:
    import lightning as L

    from hrnet.models.convert import read_checkpoint
    from hrnet.tasks.classification.data import ClassificationDataModule

    make_synthetic_image_folder(tmp_path / "data", split="train", images_per_class=1, image_size=32, seed=0)
    data = ClassificationDataModule(dataset="folder", train_dir=str(tmp_path / "data" / "train"),
                                    val_dir=str(tmp_path / "data" / "train"), model="hrnet_w18_small",
                                    input_size=(32, 32), crop_pct=1.0, batch_size=4, num_workers=0)
    task = ImageClassification(model="hrnet_w18_small", num_classes=12, lr=0.05, ema_decay=0.9)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=str(tmp_path / "fit"))
    trainer.fit(task, datamodule=data)
    path = next((tmp_path / "fit").rglob("*.ckpt"))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["ema_updates"] == 3
    assert not [k for k in checkpoint["state_dict"] if k.startswith("ema.")]
    ema = task.ema.module.state_dict()
    for key, value in read_checkpoint(path).items():  # what predict / export / load_checkpoint read
        torch.testing.assert_close(value, ema[key], rtol=0, atol=0)
    assert not torch.equal(ema["head.classifier.weight"], task.model.state_dict()["head.classifier.weight"])
    resumed = ImageClassification(model="hrnet_w18_small", num_classes=12, ema_decay=0.9)
    resumed.on_load_checkpoint(checkpoint)  # as Lightning does, before loading state_dict
    resumed.load_state_dict(checkpoint["state_dict"])
    assert int(resumed.ema.n_averaged) == 3
    for key, value in resumed.ema.module.state_dict().items():
        torch.testing.assert_close(value, ema[key], rtol=0, atol=0)
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, task.model.state_dict()[key], rtol=0, atol=0)
