"""Detection and instance segmentation with HRNetV2p: the neck against the official HRFPN, the detectors on
torchvision's classes, COCO instances reading (bad input named or counted) and pycocotools evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrnet import create_model
from hrnet.models import V2pNeck, list_models
from hrnet.synthetic.objects import SHAPES, make_synthetic_coco_instances
from hrnet.tasks.detection.data import CocoInstances, decode_masks
from hrnet.tasks.detection.evaluation import coco_instance_eval, to_coco_results


def official_hrfpn(neck: V2pNeck, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """A re-statement of mmdetection's ``HRFPN.forward`` (AVG pooling, no norm, no activation) with the
    neck's weights. Where the branch sizes are exact halvings it upsamples by ``scale_factor=2**i`` as the
    official code does; on other sizes (where the official concat fails) to branch 0's size."""
    exact = all(x.shape[-2] * 2**i == xs[0].shape[-2] and x.shape[-1] * 2**i == xs[0].shape[-1]
                for i, x in enumerate(xs))
    ups = [xs[0]]
    for i in range(1, len(xs)):
        ups.append(F.interpolate(xs[i], scale_factor=2**i, mode="bilinear") if exact
                   else F.interpolate(xs[i], size=xs[0].shape[-2:], mode="bilinear"))
    out = F.conv2d(torch.cat(ups, 1), neck.reduction_conv.weight, neck.reduction_conv.bias)
    pooled = [out] + [F.avg_pool2d(out, kernel_size=2**i, stride=2**i) for i in range(1, 5)]
    return [F.conv2d(p, conv.weight, conv.bias, padding=1) for p, conv in zip(pooled, neck.fpn_convs)]


@pytest.mark.parametrize("size", [(256, 192), (250, 190), (200, 333)])
def test_neck_is_the_official_hrfpn(size) -> None:
    torch.manual_seed(0)
    body = create_model("hrnet_w18_small", features_only=True).eval()
    neck = V2pNeck(body.out_channels).eval()
    for p in neck.parameters():
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        xs = body(torch.randn(1, 3, *size))
        ours, theirs = list(neck(xs).values()), official_hrfpn(neck, xs)
    assert [tuple(o.shape) for o in ours] == [tuple(t.shape) for t in theirs]
    assert [o.shape[-2] for o in ours] == [xs[0].shape[-2] // 2**i for i in range(5)]  # floor mode
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t, rtol=1e-5, atol=1e-5)


def test_neck_pools_maps_smaller_than_the_kernel_into_one_cell() -> None:
    """At a 48x40 input, branch 0 is 12x10: level 4 (kernel 16) would be empty in floor mode."""
    body = create_model("hrnet_w18_small", features_only=True).eval()
    neck = V2pNeck(body.out_channels).eval()
    with torch.no_grad():
        levels = neck(body(torch.randn(1, 3, 48, 40)))
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [(12, 10), (6, 5), (3, 2), (1, 1), (1, 1)]


def test_detector_presets_follow_torchvision_and_the_official_size() -> None:
    """Every detector kind and width is a preset; Faster R-CNN W18 has 27.49 M parameters, the 26.2 M of the
    official HRNet detection README (they count in 2**20)."""
    names = list_models("detection")
    assert {f"{k}_hrnetv2p_w{w}" for k in ("fasterrcnn", "maskrcnn", "fcos", "cascade_rcnn", "cascade_maskrcnn")
            for w in ("18_small", 18, 32, 40, 48)} == set(names)
    with torch.device("meta"):
        model = create_model("fasterrcnn_hrnetv2p_w18")
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 2**20, 1) == 26.2
    assert model.backbone.out_channels == 256 and model.roi_heads.box_predictor.cls_score.out_features == 81


@pytest.mark.parametrize("name", ["fasterrcnn_hrnetv2p_w18", "maskrcnn_hrnetv2p_w18", "fcos_hrnetv2p_w18"])
def test_detectors_train_and_predict(name) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, min_size=96, max_size=128, batch_norm="train")
    masks = torch.zeros(1, 96, 120, dtype=torch.uint8)
    masks[0, 20:60, 30:70] = 1
    target = {"boxes": torch.tensor([[30.0, 20, 70, 60]]), "labels": torch.tensor([2]), "masks": masks}
    losses = model.train()([torch.rand(3, 96, 120)], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    assert ("loss_mask" in losses) == name.startswith("mask")
    with torch.no_grad():
        out = model.eval()([torch.rand(3, 96, 120), torch.rand(3, 81, 101)])
    assert len(out) == 2 and {"boxes", "labels", "scores"} <= set(out[0])


def test_trainable_backbone_layers_and_batch_norm_modes() -> None:
    model = create_model("fasterrcnn_hrnetv2p_w18", trainable_backbone_layers=2, batch_norm="frozen")
    body = model.backbone.body
    assert not body.conv1.weight.requires_grad and not any(p.requires_grad for p in body.stage2.parameters())
    assert all(p.requires_grad for p in [*body.stage3.parameters(), *body.stage4.parameters()])
    assert type(body.bn1).__name__ == "FrozenBatchNorm2d"
    model = create_model("fasterrcnn_hrnetv2p_w18").train()  # "eval": the official norm_eval
    assert not model.backbone.body.bn1.training and model.backbone.body.bn1.weight.requires_grad


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_synthetic_coco_instances(root, split="val", num_images=6, image_size=(96, 128), seed=1)
    return root


def test_ground_truth_as_results_scores_ap_one(shapes) -> None:
    """The oracle: every GT box and mask written back as a result gives AP 1.0 through our results and
    pycocotools; moving the boxes by a few pixels costs box AP."""
    ds = CocoInstances(shapes / "annotations/instances_val.json", shapes / "val", train=False)
    detections = []
    for i in range(len(ds)):
        sample = ds[i]
        t = sample["target"]
        detections.append({"image_id": sample["image_id"], "boxes": t["boxes"], "labels": t["labels"],
                           "scores": torch.ones(len(t["labels"])), "masks": t["masks"][:, None].float()})
    results = to_coco_results(detections, ds.category_ids)
    assert coco_instance_eval(ds.coco, results, "bbox")["AP"] == pytest.approx(1.0)
    assert coco_instance_eval(ds.coco, results, "segm")["AP"] == pytest.approx(1.0)
    for r in results:
        r["bbox"][0] += 6
    assert coco_instance_eval(ds.coco, results, "bbox")["AP"] < 0.9


def test_labels_are_contiguous_and_map_back(tmp_path) -> None:
    ann = make_synthetic_coco_instances(tmp_path, split="val", num_images=4, image_size=(64, 80), seed=2)
    data = json.loads(ann.read_text())
    for c in data["categories"]:
        c["id"] *= 10  # ids 10, 20, ... as in COCO's gaps
    for a in data["annotations"]:
        a["category_id"] *= 10
    ann.write_text(json.dumps(data))
    ds = CocoInstances(ann, tmp_path / "val", train=False)
    assert ds.category_ids == [10, 20, 30, 40, 50] and ds.class_names == list(SHAPES)
    sample = ds[0]
    first = data["annotations"][0]
    assert int(sample["target"]["labels"][0]) == first["category_id"] // 10
    result = to_coco_results([{"image_id": sample["image_id"], **{k: sample["target"][k] for k in ("boxes", "labels")},
                               "scores": torch.ones(len(sample["target"]["labels"]))}], ds.category_ids)
    assert result[0]["category_id"] == first["category_id"]
    np.testing.assert_allclose(result[0]["bbox"], first["bbox"], atol=1e-4)


def test_masks_decode_polygons_and_rles() -> None:
    from pycocotools import mask as mask_utils

    square = [[2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0]]
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((3, 3), np.uint8), ((1, 6), (1, 6)))))
    masks = decode_masks([square, rle], 10, 10)
    assert masks.shape == (2, 10, 10) and masks[0, 5, 5] == 1 and masks[0, 0, 0] == 0
    assert masks[1].sum() == 9


def _variant(root: Path, change) -> Path:
    ann = root / "annotations/instances_val.json"
    data = json.loads(ann.read_text())
    change(data)
    out = root / "variant.json"
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].update(category_id=99), r"annotation id 1 has category_id 99, not one of"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), r"annotation id 1: polygon \[1, 2, 3, 4\]"),
    (lambda d: d["annotations"][0].update(bbox="1 2 3 4"), r"annotation id 1 bbox '1 2 3 4' is not"),
    (lambda d: d.pop("categories"), r"missing 'categories' list"),
    (lambda d: d["images"][0].update(id="a"), r"images\[0\] id 'a' is not an integer"),
])
def test_bad_records_are_named(shapes, change, message) -> None:
    with pytest.raises(ValueError, match=rf"variant.json: {message}"):
        CocoInstances(_variant(shapes, change), shapes / "val", train=False)


def test_degenerate_boxes_crowds_and_empty_images_are_counted_skips(shapes) -> None:
    def change(d) -> None:
        d["annotations"][0]["bbox"][2] = 0.5  # under a pixel wide
        d["annotations"][1]["bbox"][:2] = [5000.0, 5000.0]  # outside the image
        d["annotations"][2]["iscrowd"] = 1
        d["images"].append({"id": 999, "file_name": "000000.jpg", "width": 128, "height": 96})

    ds = CocoInstances(_variant(shapes, change), shapes / "val", train=True)
    assert ds.skipped["boxes under 1 pixel"] == 1 and ds.skipped["boxes outside their image"] == 1
    assert ds.skipped["crowd regions"] == 1 and ds.skipped["images without objects"] >= 1
    assert all(len(r.labels) for r in ds.records)
    assert len(CocoInstances(_variant(shapes, change), shapes / "val", train=False)) == 7  # evaluation keeps all


def test_a_missing_image_is_named(shapes) -> None:
    ds = CocoInstances(_variant(shapes, lambda d: d["images"][0].update(file_name="gone.jpg")), shapes / "val",
                       train=False)
    with pytest.raises(FileNotFoundError, match="gone.jpg not found"):
        ds[0]


def test_training_flip_moves_boxes_and_masks_together(shapes) -> None:
    ds = CocoInstances(shapes / "annotations/instances_val.json", shapes / "val", train=True, seed=3)
    flipped = next(i for i in range(len(ds)) if ds.rng_for(i).random() < 0.5)
    sample = ds[flipped]
    box = sample["target"]["boxes"][0]
    _, xs = np.nonzero(sample["target"]["masks"][0].numpy())
    assert abs(xs.min() - float(box[0])) <= 1.5 and abs(xs.max() + 1 - float(box[2])) <= 1.5


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs/detection").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_configs_instantiate(config: Path) -> None:
    """Each COCO config builds its detector through ``hrnet fit``'s CLI with the paper's recipe."""
    import yaml

    from hrnet.tasks.lightning_cli import TaskCLI
    from hrnet.tasks.registry import TASKS

    cli = TaskCLI(TASKS["detection"], run=False, args=["--config", str(config), "--model.pretrained", "null",
                                                       "--trainer.devices", "1", "--trainer.strategy", "auto"])
    raw = yaml.safe_load(config.read_text())
    assert cli.model.hparams.model == raw["model"]["model"] and cli.model.hparams.lr == 0.02
    assert cli.datamodule.hparams.masks == ("mask" in raw["model"]["model"])
    assert cli.trainer.max_epochs == {"1x": 12, "2x": 24, "20e": 20}[config.stem.split("_")[-2]]


def test_our_detector_finds_the_people_for_top_down_pose(tmp_path) -> None:
    """``hrnet predict --model pose_... --detector fasterrcnn_hrnetv2p_... --detector-weights CKPT``: the person
    boxes come from our detector's checkpoint (rigged here to always see one person), then pose runs on them."""
    import lightning as L

    from hrnet.cli import main
    from hrnet.tasks.detection.module import Detection

    torch.manual_seed(0)
    task = Detection(model="fasterrcnn_hrnetv2p_w18_small", num_classes=81, min_size=96, max_size=128)
    predictor = task.model.roi_heads.box_predictor
    with torch.no_grad():  # every RoI: "person" (label 1) with certainty, no box regression
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.fill_(-20.0)
        predictor.cls_score.bias[1] = 20.0
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
    trainer = L.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "det.ckpt")
    torch.save(create_model("pose_hrnet_w18_small").state_dict(), tmp_path / "pose.pth")
    images = tmp_path / "images"
    images.mkdir()
    import cv2

    cv2.imwrite(str(images / "a.jpg"), np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    assert main(["predict", str(images), "--model", "pose_hrnet_w18_small", "--weights", str(tmp_path / "pose.pth"),
                 "--detector", "fasterrcnn_hrnetv2p_w18_small", "--detector-weights", str(tmp_path / "det.ckpt"),
                 "--out", str(tmp_path / "out")]) == 0
    persons = json.loads((tmp_path / "out" / "keypoints.json").read_text())["images"][0]["persons"]
    assert len(persons) > 1  # the detector's boxes (without a detector the whole image is the one person)
    assert all(len(p["keypoints"]) == 17 * 3 for p in persons)


def test_an_mmdetection_file_loads_through_create_model_and_hrnet_convert(tmp_path) -> None:
    """A file in mmdetection's published layout (``meta`` + ``state_dict`` with mmdet keys) loads strictly by
    ``create_model(..., weights=)``; ``hrnet convert --to mmdet`` writes the same keys back."""
    from hrnet.cli import main
    from hrnet.models.mmdet import to_mmdet

    torch.manual_seed(0)
    source = create_model("maskrcnn_hrnetv2p_w18_small")
    with torch.no_grad():  # what mmdetection has no place for: background box deltas and mask logits
        for tensor in (source.roi_heads.box_predictor.bbox_pred.weight, source.roi_heads.box_predictor.bbox_pred.bias):
            tensor[:4] = 0
        for tensor in (source.roi_heads.mask_predictor.mask_fcn_logits.weight,
                       source.roi_heads.mask_predictor.mask_fcn_logits.bias):
            tensor[:1] = 0
    mmdet = to_mmdet(source.state_dict())
    assert "roi_head.bbox_head.fc_cls.weight" in mmdet and "neck.reduction_conv.conv.weight" in mmdet
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": mmdet}, tmp_path / "mmdet.pth")
    loaded = create_model("maskrcnn_hrnetv2p_w18_small", weights=tmp_path / "mmdet.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert main(["convert", str(tmp_path / "mmdet.pth"), str(tmp_path / "ours.pt")]) == 0
    assert main(["convert", str(tmp_path / "ours.pt"), str(tmp_path / "back.pth"), "--to", "mmdet"]) == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back.keys() == mmdet.keys() and all(torch.equal(back[k], mmdet[k]) for k in mmdet)


def test_export_of_a_detector_is_a_one_line_refusal(tmp_path, capsys) -> None:
    from hrnet.cli import main

    (tmp_path / "det.pth").write_bytes(b"")  # refused before the weights are read
    assert main(["export", "onnx", "fasterrcnn_hrnetv2p_w18_small", "--weights", str(tmp_path / "det.pth"),
                 "--out", str(tmp_path / "never.onnx")]) == 2
    err = capsys.readouterr().err
    assert "does not apply to detection models (no export format does)" in err and "Traceback" not in err


def test_torchvision_style_builders_take_weights_and_an_imagenet_backbone(tmp_path) -> None:
    """``fasterrcnn_hrnetv2p_w18_small(weights_backbone=...)`` puts an official ImageNet checkpoint's weights into
    the body (the classifier head is left out); ``weights=`` loads a whole detector strictly."""
    from hrnet.models import to_official
    from hrnet.models.detection import fasterrcnn_hrnetv2p_w18_small

    imagenet = create_model("hrnet_w18_small")
    torch.nn.init.normal_(imagenet.backbone.stage4[0].branches[3][0].conv1.weight)
    torch.save(to_official(imagenet.state_dict(), "cls"), tmp_path / "imagenet.pth")
    model = fasterrcnn_hrnetv2p_w18_small(weights_backbone=tmp_path / "imagenet.pth", num_classes=3)
    assert torch.equal(model.backbone.body.stage4[0].branches[3][0].conv1.weight,
                       imagenet.backbone.stage4[0].branches[3][0].conv1.weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    torch.save(model.state_dict(), tmp_path / "det.pth")
    again = fasterrcnn_hrnetv2p_w18_small(weights=tmp_path / "det.pth", num_classes=3)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    with pytest.raises(AttributeError):
        from hrnet.models import detection

        detection.no_such_detector  # noqa: B018
