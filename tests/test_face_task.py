"""The face task end to end: ground truth through our encode/decode/back-projection per dataset format (the oracle),
the evaluation's NME against hand-computed offsets, per-subset scoring, checkpoints of each landmark count in
prediction, exported files carrying the landmark set and decoding, the face detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_face_datasets import TEMPLATES, face_json, write_list, write_mat73

from hrnet.cli import main
from hrnet.keypoints.sets import KEYPOINT_SPECS
from hrnet.models import create_model
from hrnet.tasks.face.data import FaceDataModule
from hrnet.tasks.face.decode import predict_landmarks
from hrnet.tasks.face.metrics import nme, normalizers
from hrnet.tasks.face.module import FaceLandmarkDetection
from hrnet.tasks.face.predict import FacePredictor

SIZE = 160  # image side
FACES = [(80.0, 84.0, 42.0), (70.0, 90.0, 34.0)]  # (centre x, centre y, template unit in pixels) per image


def face_points(name: str, cx: float, cy: float, unit: float) -> np.ndarray:
    return np.asarray(TEMPLATES[name], np.float64) * unit + [cx, cy]


def write_images(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    rng = np.random.default_rng(5)
    for i in range(len(FACES)):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(40 * i, 200 + 20 * i, (SIZE, SIZE, 3), dtype=np.uint8))
        names.append(f"images/{i}.png")
    return names


def write_format(tmp_path: Path, name: str) -> dict[str, str]:
    """One list of the two faces of ``FACES`` in the official format of keypoint set ``name``."""
    k = KEYPOINT_SPECS[name].num_joints
    if name == "cofw":
        images = [np.full((SIZE, SIZE, 3), 90 + 40 * i, np.uint8) for i in range(len(FACES))]
        phis = np.stack([np.concatenate([p[:, 0], p[:, 1], np.zeros(k)])
                         for p in (face_points(name, *f) for f in FACES)])
        write_mat73(tmp_path / "COFW_test_color.mat", {"IsT": images}, {"phisT": phis})
        return {"dataset": "cofw", "val_list": str(tmp_path / "COFW_test_color.mat")}
    files = write_images(tmp_path / "images")
    if name == "coco":
        anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                 "keypoints": [c for x, y in face_points("300w", *f) for c in (x, y, 2)],
                 "bbox": [f[0] - 1.2 * f[2], f[1] - 1.2 * f[2], 2.4 * f[2], 2.4 * f[2]]} for i, f in enumerate(FACES)]
        data = {"images": [{"id": i + 1, "file_name": n, "width": SIZE, "height": SIZE} for i, n in enumerate(files)],
                "annotations": anns, "categories": [{"id": 1, "name": "face"}]}
        (tmp_path / "faces.json").write_text(json.dumps(data))
        return {"dataset": "coco", "val_list": str(tmp_path / "faces.json"), "image_root": str(tmp_path)}
    rows = []
    for file, f in zip(files, FACES):
        pts = face_points(name, *f)
        box = (pts.max(0) - pts.min(0)).max()
        lead = [file, box / 200, *((pts.max(0) + pts.min(0)) / 2)]
        if name == "aflw":
            lead.insert(2, 1.1 * box)  # box_size, before the centre
        rows.append([*lead, *pts.reshape(-1)])
    heads = ("image_name", "scale", "box_size", "center_w", "center_h") if name == "aflw" else \
        ("image_name", "scale", "center_w", "center_h")
    write_list(tmp_path / f"face_landmarks_{name}_test.csv", rows, heads, k)
    return {"dataset": "csv", "val_list": str(tmp_path / f"face_landmarks_{name}_test.csv"), "image_root": str(tmp_path)}


@pytest.mark.parametrize("fmt", ["wflw", "300w", "aflw", "cofw", "coco"])
def test_ground_truth_through_encode_decode_and_back_projection_has_nme_under_half_a_percent(
        tmp_path: Path, fmt: str) -> None:
    keypoints = "300w" if fmt == "coco" else fmt
    dm = FaceDataModule(**write_format(tmp_path, fmt), keypoints=keypoints, sigma=1.5, num_workers=0)
    dm.setup("validate")
    task = FaceLandmarkDetection(model="face_hrnet_w18_small", keypoints=keypoints)
    samples = [dm.val_set[i] for i in range(len(dm.val_set))]
    assert len(samples) == len(FACES)
    targets = torch.stack([s["target"] for s in samples])
    flip_index = task.keypoints.flip_index

    side = dm.hparams.input_size[1]
    mirrored = torch.from_numpy(np.stack([dm.encode.codec.encode(
        np.stack([side - 1 - s["joints"][flip_index, 0], s["joints"][flip_index, 1]], 1), s["joints_vis"][flip_index])[0]
        for s in samples]))

    for flip in (None, flip_index):
        answers = iter([targets, mirrored])  # the ground truth of the crops, then of the mirrored crops
        pred, _ = predict_landmarks(lambda crops, answers=answers: next(answers), torch.stack([s["image"] for s in samples]),
                                    torch.stack([s["center"] for s in samples]),
                                    torch.stack([s["scale"] for s in samples]), task.codec, "dark", flip)
        gt = np.stack([r.joints for r in dm.val_set.records]).astype(np.float64)
        box = np.array([r.box_size for r in dm.val_set.records])
        errors = nme(pred, gt, normalizers(gt, task.keypoints.extra, box))
        assert errors.max() < 0.005, (flip, errors)


def test_evaluation_nme_equals_hand_computed_offsets_and_scores_subsets(tmp_path: Path) -> None:
    """Every landmark moved by (3, 4) px: NME = 5 / (distance of points 36 and 45) per face; a subset of one
    image scores that image alone."""
    dm = FaceDataModule(**write_format(tmp_path, "300w"), keypoints="300w", num_workers=0)
    dm.setup("validate")
    task = FaceLandmarkDetection(model="face_hrnet_w18_small", keypoints="300w")
    records = dm.val_set.records
    preds = [{"index": i, "landmarks": r.joints + np.float32([3, 4]), "loss": 0.5} for i, r in enumerate(records)]
    expected = [5 / np.linalg.norm(r.joints[36] - r.joints[45]) for r in records]
    metrics = task.evaluate(preds, dm.val_set, {"first": {records[0].image_file}})
    assert metrics["nme"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert metrics["first/nme"] == pytest.approx(expected[0], rel=1e-6)
    assert metrics["fr_0.10"] == float(np.mean(np.array(expected) > 0.10))
    assert metrics["auc_0.10"] == pytest.approx(np.mean(np.maximum(0, 0.10 - np.array(expected))) / 0.10, rel=1e-6)
    pupils = FaceLandmarkDetection(model="face_hrnet_w18_small", keypoints="300w", normalizer="interpupil")
    eyes = [np.linalg.norm(r.joints[36:42].mean(0) - r.joints[42:48].mean(0)) for r in records]
    assert pupils.evaluate(preds, dm.val_set)["nme"] == pytest.approx(np.mean([5 / e for e in eyes]), rel=1e-5)


@pytest.mark.parametrize(("count", "name"), [(98, "wflw"), (68, "300w"), (29, "cofw"), (19, "aflw")])
def test_official_state_dicts_of_each_landmark_count_predict_with_their_set(tmp_path: Path, count: int,
                                                                            name: str) -> None:
    model = create_model("face_hrnet_w18", num_landmarks=count)
    torch.save(model.state_dict(), tmp_path / "HR18.pth")
    predictor = FacePredictor.from_checkpoint(tmp_path / "HR18.pth", model="face_hrnet_w18")
    assert predictor.keypoints.name == name
    image = np.random.default_rng(0).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    (face,) = predictor(image, [(10.0, 20.0, 60.0, 70.0, 0.9)])
    assert face["landmarks"].shape == (count, 2) and face["confidence"].shape == (count,)
    box_side = 70 * 1.25  # the crop: max(w, h) x 1.25 round the box centre (40, 55)
    assert np.all(np.abs(face["landmarks"] - [40, 55]) <= box_side / 2 + 1)


def test_predict_cli_writes_landmarks_json_and_an_exported_file_keeps_the_set_and_decoding(tmp_path: Path) -> None:
    from hrnet.demos.face import FaceDemoConfig, run_face_demo
    from hrnet.export import OnnxModel

    cfg = FaceDemoConfig(epochs=1, train_images=4, val_images=2, batch_size=2, val_every=1, num_workers=0,
                         precision="32-true")
    run_face_demo(tmp_path / "demo", cfg, resume=False)
    ckpt = tmp_path / "demo" / "checkpoints" / "last.ckpt"
    photo = tmp_path / "photos" / "a.jpg"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), np.full((90, 80, 3), 120, np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"file_name": "a.jpg", "bbox": [10, 10, 50, 60], "score": 0.9},
                                 {"file_name": "a.jpg", "bbox": [0, 0, 30, 30], "score": 0.8}]))
    assert main(["predict", str(photo.parent), "--weights", str(ckpt), "--boxes", str(boxes),
                 "--out", str(tmp_path / "pred")]) == 0
    result = json.loads((tmp_path / "pred" / "landmarks.json").read_text())
    assert result["keypoints"] == "300w" and len(result["landmarks"]) == 68
    faces = result["images"][0]["faces"]
    assert [f["box"] for f in faces] == [[10, 10, 50, 60], [0, 0, 30, 30]]
    assert all(len(f["landmarks"]) == 136 for f in faces)
    assert main(["export", "onnx", "--weights", str(ckpt), "--out", str(tmp_path / "face.onnx")]) == 0
    settings = OnnxModel(tmp_path / "face.onnx").settings
    assert settings["keypoints"] == "300w" and settings["decode"] == "dark"
    assert settings["input_size"] == [128, 128] and settings["sigma"] == 1.0


def test_face_detector_finds_a_synthetic_face(tmp_path: Path) -> None:
    pytest.importorskip("facenet_pytorch")
    from hrnet.files import read_image
    from hrnet.synthetic.faces import make_synthetic_300w
    from hrnet.tasks.face.predict import FaceDetector

    csv = make_synthetic_300w(tmp_path, split="val", num_images=3, image_size=(256, 256), seed=3)
    detector = FaceDetector()
    found = 0
    for line in csv.read_text().splitlines()[1:]:
        cells = line.split(",")
        pts = np.asarray(cells[4:], np.float64).reshape(-1, 2)
        boxes = detector(read_image(str(tmp_path / cells[0])))
        centre = (pts.min(0) + pts.max(0)) / 2
        found += any(abs(x + w / 2 - centre[0]) < 0.25 * w and abs(y + h / 2 - centre[1]) < 0.35 * h
                     for x, y, w, h, _ in boxes)
    assert found >= 2


def test_a_plain_state_dict_of_an_unknown_landmark_count_needs_keypoints(tmp_path: Path, capsys) -> None:
    torch.save(create_model("face_hrnet_w18", num_landmarks=7).state_dict(), tmp_path / "seven.pth")
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    assert main(["predict", str(image), "--model", "face_hrnet_w18", "--weights", str(tmp_path / "seven.pth"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--keypoints" in err[0]


def test_face_json_of_mmpose_reads_through_the_datamodule(tmp_path: Path) -> None:
    face_json(tmp_path / "f.json", [{"id": 1, "image_id": 7, "bbox": [10, 10, 30, 30],
                                     "keypoints": [v for _ in range(19) for v in (20.0, 20.0, 2)]}])
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((48, 64, 3), np.uint8))
    dm = FaceDataModule(dataset="coco", keypoints="aflw", val_list=str(tmp_path / "f.json"), image_root=str(tmp_path),
                        num_workers=0)
    dm.setup("validate")
    assert dm.val_set[0]["target"].shape == (19, 64, 64)


def test_official_options_score_as_the_official_pipeline(tmp_path: Path) -> None:
    """``decode: official``, ``flip_test: false``, ``data.crop: official``: the logged NME is that of the official
    pipeline run by hand: the official crop of each record, the network, ``decode_preds``, ``compute_nme``."""
    import lightning as L

    from hrnet.files import normalize_image
    from hrnet.tasks.face.datasets import read_face_image
    from hrnet.tasks.face.official import official_crop, official_decode

    torch.manual_seed(0)
    dm = FaceDataModule(**write_format(tmp_path, "300w"), keypoints="300w", sigma=1.0, crop="official", num_workers=0)
    task = FaceLandmarkDetection(model="face_hrnet_w18_small", keypoints="300w", sigma=1.0, decode="official",
                                 flip_test=False)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).validate(task, datamodule=dm, verbose=False)
    errors = []
    task.eval()
    with torch.no_grad():
        for rec in dm.val_set.records:
            crop = official_crop(read_face_image(rec.image_file), rec.center, float(rec.scale[0]), (256, 256))
            heatmaps = task.model(torch.from_numpy(normalize_image(crop))[None])
            pts = official_decode(heatmaps.numpy(), rec.center[None], np.array([rec.scale[0]]), (64, 64))[0]
            interocular = np.linalg.norm(rec.joints[36] - rec.joints[45])
            errors.append(np.linalg.norm(pts - rec.joints, axis=1).mean() / interocular)
    assert task.last_metrics["nme"] == pytest.approx(np.mean(errors), rel=1e-5)
