"""Top-down pose end to end on tiny generated COCO-format data: evaluation path, training,
checkpoint resume, Lightning CLI, prediction CLI (images, boxes, video), custom keypoint sets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml

from hrnet.cli import main
from hrnet.files import read_image
from hrnet.keypoints.codec import HeatmapCodec
from hrnet.keypoints.sets import COCO_KEYPOINTS, KeypointSpec
from hrnet.keypoints.topdown import heatmaps_to_image_keypoints
from hrnet.synthetic.people import make_synthetic_coco_keypoints
from hrnet.tasks.base import BoxesFile
from hrnet.tasks.pose.data import PoseDataModule
from hrnet.tasks.pose.module import PoseEstimation

INPUT = (64, 48)


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("coco")
    out = {}
    for split, seed in (("train", 0), ("val", 1)):
        ann = make_synthetic_coco_keypoints(root, split=split, num_images=10, image_size=(96, 96), seed=seed)
        out[f"{split}_ann"], out[f"{split}_images"] = str(ann), str(root / split)
    return out


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    args = dict(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                default_root_dir=tmp_path)
    return L.Trainer(**{**args, **kwargs})


def test_perfect_heatmaps_give_full_ap(tiny_coco) -> None:
    """Encode GT -> decode -> back-project -> OKS-NMS -> pycocotools: the path loses nothing."""
    dm = PoseDataModule(**tiny_coco, input_size=(128, 96), unbiased=True, batch_size=8, num_workers=0)
    dm.setup("validate")
    task = PoseEstimation(model="pose_hrnet_w18_small", input_size=(128, 96), unbiased=True)
    codec = HeatmapCodec((128, 96), sigma=2.0)
    preds = []
    for batch in dm.val_dataloader():
        kpts = heatmaps_to_image_keypoints(codec, batch["target"], batch["center"], batch["scale"])
        preds += [{"keypoints": k, "image_id": int(i), "score": 1.0, "area": float(a)}
                  for k, i, a in zip(kpts, batch["image_id"], batch["area"])]
    task.trainer = _trainer(Path("/tmp"))
    task.trainer.datamodule = dm
    metrics = task.evaluate(preds, "val")
    assert metrics["AP"] > 0.99 and metrics["AR"] > 0.99
    # Moving every prediction by a few pixels must cost AP (the check can fail).
    for p in preds:
        p["keypoints"] = p["keypoints"] + np.array([4.0, 0.0, 0.0], np.float32)
    assert task.evaluate(preds, "val")["AP"] < 0.9


def test_fit_validate_and_resume(tiny_coco, tmp_path) -> None:
    L.seed_everything(0)
    dm = PoseDataModule(**tiny_coco, input_size=INPUT, batch_size=4, num_workers=0)
    task = PoseEstimation(model="pose_hrnet_w18_small", input_size=INPUT, lr_steps=(5,))
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = _trainer(tmp_path, callbacks=[ckpt])
    trainer.fit(task, datamodule=dm)
    assert set(task.last_metrics) >= {"AP", "AP50", "AP75", "APm", "APl", "AR"}
    assert all(np.isfinite(v) for v in task.last_metrics.values())
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file() and trainer.global_step == 2
    resumed = _trainer(tmp_path, max_epochs=2)
    task2 = PoseEstimation(model="pose_hrnet_w18_small", input_size=INPUT, lr_steps=(5,))
    resumed.fit(task2, datamodule=PoseDataModule(**tiny_coco, input_size=INPUT, batch_size=4, num_workers=0),
                ckpt_path=str(last))
    assert resumed.global_step == 4 and resumed.current_epoch == 2


def test_custom_keypoint_set_without_code_change(tmp_path) -> None:
    spec = {"name": "face5", "joint_names": ["nose", "left_eye", "right_eye", "left_ear", "right_ear"],
            "flip_pairs": [[1, 2], [3, 4]], "skeleton": [[0, 1], [0, 2], [1, 3], [2, 4]],
            "sigmas": [0.026, 0.025, 0.025, 0.035, 0.035]}
    k = KeypointSpec.from_dict(spec)
    paths = {}
    for split, seed in (("train", 0), ("val", 1)):
        ann = make_synthetic_coco_keypoints(tmp_path, split=split, num_images=6, image_size=(96, 96), seed=seed,
                                            keypoints=k)
        paths[f"{split}_ann"], paths[f"{split}_images"] = str(ann), str(tmp_path / split)
    task = PoseEstimation(model="pose_hrnet_w18_small", keypoints=spec, input_size=INPUT)
    assert task.model.head.final_layer.out_channels == 5
    dm = PoseDataModule(**paths, keypoints=spec, input_size=INPUT, batch_size=2, num_workers=0)
    _trainer(tmp_path).fit(task, datamodule=dm)
    assert "AP" in task.last_metrics


def _write_config(tmp_path: Path, data: dict[str, str]) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 1,
                    "limit_val_batches": 1, "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path)},
        "model": {"model": "pose_hrnet_w18_small", "input_size": list(INPUT), "sigma": 1.5},
        "data": {**data, "batch_size": 2, "num_workers": 0},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_lightning_cli_links_model_and_data(tiny_coco, tmp_path) -> None:
    """One value configures both the model's codec and the data's target encoder."""
    from hrnet.tasks.lightning_cli import TaskCLI
    from hrnet.tasks.registry import TASKS

    config = _write_config(tmp_path, tiny_coco)
    cli = TaskCLI(TASKS["pose"], args=["--config", str(config)], run=False)
    assert tuple(cli.datamodule.hparams.input_size) == INPUT and cli.datamodule.hparams.sigma == 1.5
    assert cli.datamodule.encode.codec.sigma == cli.model.codec.sigma == 1.5
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    assert main(["fit", "--config", str(config)]) == 0
    assert list(tmp_path.rglob("*.ckpt"))


def _checkpoint(tmp_path: Path) -> Path:
    task = PoseEstimation(model="pose_hrnet_w18_small", input_size=INPUT)
    trainer = _trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(task)
    path = tmp_path / "pose.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_predict_cli_images_boxes_and_video(tiny_coco, tmp_path) -> None:
    ckpt = _checkpoint(tmp_path)
    images = Path(tiny_coco["val_images"])
    coco = json.loads(Path(tiny_coco["val_ann"]).read_text())
    first = coco["images"][0]
    boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
             for a in coco["annotations"] if a["image_id"] == first["id"] and not a["iscrowd"]]
    (tmp_path / "dets.json").write_text(json.dumps(boxes))
    assert main(["predict", str(images), "--weights", str(ckpt), "--boxes", str(tmp_path / "dets.json"),
                 "--out", str(tmp_path / "pred")]) == 0
    result = json.loads((tmp_path / "pred" / "keypoints.json").read_text())
    assert len(result["images"]) == len(coco["images"]) and result["keypoints"] == list(COCO_KEYPOINTS.joint_names)
    by_file = {r["file"]: r for r in result["images"]}
    assert len(by_file[first["file_name"]]["persons"]) == len(boxes)
    assert all(len(p["keypoints"]) == 17 * 3 for p in by_file[first["file_name"]]["persons"])
    assert (tmp_path / "pred" / f"{Path(first['file_name']).stem}_pose.jpg").is_file()

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 96))
    for f in sorted(images.iterdir())[:3]:
        writer.write(cv2.imread(str(f)))
    writer.release()
    assert main(["-v", "predict", str(video), "--weights", str(ckpt), "--out", str(tmp_path / "vid")]) == 0
    frames = json.loads((tmp_path / "vid" / "keypoints.json").read_text())["images"]
    assert [f["frame"] for f in frames] == [0, 1, 2] and all(len(f["persons"]) == 1 for f in frames)
    assert (tmp_path / "vid" / "clip_pose.mp4").stat().st_size > 0


def test_predict_batches_crops_across_images_and_keeps_order(tiny_coco, tmp_path) -> None:
    """The predict loop runs the person crops of a group of images as one network batch; records come in input
    order, equal to predicting each image alone, and an unreadable file among them is reported and skipped."""
    from hrnet.tasks.pipeline import GROUP
    from hrnet.tasks.pose.predict import PosePredictor

    images = Path(tiny_coco["val_images"])
    coco = json.loads(Path(tiny_coco["val_ann"]).read_text())
    boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
             for a in coco["annotations"] if not a["iscrowd"]]
    (tmp_path / "dets.json").write_text(json.dumps(boxes))
    folder = tmp_path / "images"
    folder.mkdir()
    for f in sorted(images.iterdir()):
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    predictor = PosePredictor.from_checkpoint(_checkpoint(tmp_path))
    predictor.boxes = BoxesFile(tmp_path / "dets.json")
    batches: list[int] = []
    network = predictor.model
    predictor.model = lambda x: batches.append(x.shape[0]) or network(x)
    report = predictor.run(folder, tmp_path / "pred")
    assert report.failed[0][0] == "broken.jpg" and report.predicted == len(coco["images"])
    per_image = {img["file_name"]: sum(b["image_id"] == img["id"] for b in boxes) for img in coco["images"]}
    names = sorted(per_image)
    groups = [names[i:i + GROUP] for i in range(0, len(names), GROUP)]
    assert batches == [n for g in groups for n in [sum(per_image[f] for f in g)] * 2 if n]  # image + flipped
    records = json.loads((tmp_path / "pred" / "keypoints.json").read_text())["images"]
    assert [r["file"] for r in records] == names
    predictor.model = network
    for record in records:
        alone = predictor(read_image(str(folder / record["file"])), predictor.boxes.boxes_for(folder / record["file"]))
        assert np.allclose(np.reshape([p["keypoints"] for p in record["persons"]], (-1, 17, 3)),
                           np.reshape([p["keypoints"] for p in alone], (-1, 17, 3)), atol=0.01)


def test_predict_errors_name_the_problem(tmp_path, capsys) -> None:
    plain = tmp_path / "plain.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, plain)
    assert main(["predict", str(tmp_path), "--weights", str(plain)]) == 2
    assert "no model name stored in the checkpoint; pass --model" in capsys.readouterr().err
    ckpt = _checkpoint(tmp_path)
    assert main(["predict", str(tmp_path / "missing.jpg"), "--weights", str(ckpt)]) == 2
    assert "missing.jpg not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_mpii(tmp_path_factory) -> dict[str, str]:
    """Official MPII JSON layout (1-based joints) over noise images, plus head boxes."""
    root = tmp_path_factory.mktemp("mpii")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    entries, heads = [], []
    for i in range(6):
        name = f"{i:09d}.jpg"
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
        joints = rng.uniform(40, 88, (16, 2))
        vis = (rng.random(16) > 0.2).astype(int)
        entries.append({"image": name, "center": [65.0, 59.0], "scale": 0.4,
                        "joints": (joints + 1).tolist(), "joints_vis": vis.tolist()})
        heads.append([[50.0, 40.0], [70.0, 60.0]])
    (root / "valid.json").write_text(json.dumps(entries))
    np.save(root / "heads.npy", np.array(heads))
    return {"val_ann": str(root / "valid.json"), "val_images": str(root / "images"),
            "val_headboxes": str(root / "heads.npy")}


def test_mpii_pckh_evaluation(tiny_mpii) -> None:
    """MPII format + PCKh: perfect heatmaps score 100, predictions off by 10 px (> 0.5 x 17 px) score 0."""
    dm = PoseDataModule(dataset="mpii", **tiny_mpii, keypoints="mpii", input_size=(64, 64), unbiased=True,
                        batch_size=4, num_workers=0)
    dm.setup("validate")
    task = PoseEstimation(model="pose_hrnet_w18_small", keypoints="mpii", input_size=(64, 64), unbiased=True)
    task.trainer = _trainer(Path("/tmp"))
    task.trainer.datamodule = dm
    codec = HeatmapCodec((64, 64), sigma=2.0, unbiased=True)
    preds = []
    for batch in dm.val_dataloader():
        kpts = heatmaps_to_image_keypoints(codec, batch["target"], batch["center"], batch["scale"])
        preds += [{"keypoints": k, "index": int(i), "image_id": 0, "score": 1.0, "area": 1.0}
                  for k, i in zip(kpts, batch["index"])]
    assert task.evaluate(preds, "val")["PCKh"] == 100.0
    for p in preds:
        p["keypoints"] = p["keypoints"] + np.array([10.0, 0.0, 0.0], np.float32)
    assert task.evaluate(preds, "val")["PCKh"] == 0.0


@pytest.mark.parametrize("config", sorted(Path("configs/pose").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_instantiate(config: Path) -> None:
    from hrnet.tasks.lightning_cli import TaskCLI
    from hrnet.tasks.registry import TASKS

    cli = TaskCLI(TASKS["pose"], args=["--config", str(config), "--model.pretrained", "null"], run=False)
    raw = yaml.safe_load(config.read_text())
    assert cli.model.hparams.model == raw["model"]["model"]
    assert tuple(cli.datamodule.hparams.input_size) == tuple(raw["model"]["input_size"])
    assert cli.model.keypoints.num_joints == {"coco": 17, "mpii": 16}[raw["model"]["keypoints"]]
    # checkpoint_every_n_steps: one more ModelCheckpoint, saving last.ckpt into the config's checkpoint folder
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint)]
    steps = [c for c in checkpoints if c._every_n_train_steps]
    assert [c._every_n_train_steps for c in steps] == [raw["checkpoint_every_n_steps"]] == [1000]
    assert steps[0].save_last and steps[0].dirpath == checkpoints[0].dirpath


def test_pretrained_backbone_from_classification_checkpoint(tmp_path) -> None:
    """The official recipe starts from an ImageNet checkpoint: backbone loads, head stays new."""
    from hrnet import create_model
    from hrnet.models import to_official

    cls = create_model("hrnet_w18_small")
    torch.nn.init.normal_(cls.backbone.stage3[0].branches[2][0].conv1.weight)
    torch.save(to_official(cls.state_dict(), "cls"), tmp_path / "imagenet.pth")
    task = PoseEstimation(model="pose_hrnet_w18_small", input_size=INPUT, pretrained=str(tmp_path / "imagenet.pth"))
    assert torch.equal(task.model.backbone.stage3[0].branches[2][0].conv1.weight,
                       cls.backbone.stage3[0].branches[2][0].conv1.weight)


def test_predict_with_a_torchvision_detector(tiny_coco, tmp_path) -> None:
    """Person boxes from a torchvision detector with user-supplied weights (here random ones)."""
    import torchvision

    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    torch.save(detector.state_dict(), tmp_path / "det.pth")
    image = sorted(Path(tiny_coco["val_images"]).iterdir())[0]
    assert main(["predict", str(image), "--weights", str(_checkpoint(tmp_path)), "--detector",
                 "fasterrcnn_mobilenet_v3_large_320_fpn", "--detector-weights", str(tmp_path / "det.pth"),
                 "--box-threshold", "0.0", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert result["images"][0]["file"] == image.name
    assert all(len(p["keypoints"]) == 51 for p in result["images"][0]["persons"])


@pytest.mark.parametrize("fault, message", [
    ("missing boxes file", "boxes file .*missing_dets.json: file not found"),
    ("annotations without images", "ann_file .*: .*images"),
    ("config key that does not exist", "lr_stepz"),
])
def test_fit_with_bad_input_is_one_line(tiny_coco, tmp_path, capsys, fault: str, message: str) -> None:
    """Mistakes in what ``hrnet fit`` is given end in one line and exit code 2, not a traceback."""
    data = dict(tiny_coco)
    argv = []
    if fault == "missing boxes file":
        data["val_boxes"] = str(tmp_path / "missing_dets.json")
    elif fault == "annotations without images":
        bad = tmp_path / "no_images.json"
        bad.write_text(json.dumps({"annotations": [], "categories": [{"id": 1, "name": "person"}]}))
        data["val_ann"] = str(bad)
    else:
        argv = ["--model.lr_stepz", "[1]"]
    config = _write_config(tmp_path, data)
    if argv:  # jsonargparse rejects an unknown key itself: usage, the error, exit status 2
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(config), *argv])
        assert exit_info.value.code == 2
    else:
        assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    if not argv:
        assert err.strip().count("\n") == 0


class _NanLoss(torch.nn.Module):
    def forward(self, heatmaps, *args) -> torch.Tensor:
        return heatmaps.sum() * float("nan")


def test_a_nan_loss_stops_with_the_step_or_skips_the_batch(tiny_coco, tmp_path) -> None:
    dm = PoseDataModule(**tiny_coco, input_size=INPUT, batch_size=2, num_workers=0)
    task = PoseEstimation(model="pose_hrnet_w18_small", input_size=INPUT)
    task.criterion = _NanLoss()
    with pytest.raises(ValueError, match=r"training loss is nan at step 0 \(epoch 0, batch 0\); stopped "
                                         r"\(last checkpoint: none yet\)"):
        _trainer(tmp_path, limit_val_batches=0).fit(task, datamodule=dm)
    task = PoseEstimation(model="pose_hrnet_w18_small", input_size=INPUT, nonfinite="skip")
    task.criterion = _NanLoss()
    before = {k: v.clone() for k, v in task.named_parameters()}
    _trainer(tmp_path, limit_val_batches=0).fit(task, datamodule=dm)
    assert all(torch.equal(before[k], v) for k, v in task.named_parameters())  # no optimizer step was taken
    with pytest.raises(ValueError, match="model.nonfinite must be 'stop' or 'skip'"):
        PoseEstimation(model="pose_hrnet_w18_small", nonfinite="ignore")
