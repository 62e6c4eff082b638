"""The fault table: feed each kind of bad input to the real readers and commands and print what happened.

    python benchmarks/faults.py            # a Markdown table on stdout

Every case is built here, in a temporary folder, in the real on-disk format (COCO keypoints, a folder of
images and masks, checkpoints); nothing is downloaded. "raises" rows give the exception and its first line;
"ok" rows say what was read. The outcome is observed, not asserted: the tests pin down the behaviour.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

import hrnet
from hrnet.cli import main
from hrnet.files import read_image
from hrnet.synthetic.faces import make_synthetic_300w
from hrnet.synthetic.objects import make_synthetic_coco_instances
from hrnet.synthetic.people import make_synthetic_coco_keypoints
from hrnet.tasks.detection.data import CocoInstances
from hrnet.tasks.face.datasets import read_cofw_mat, read_landmark_csv
from hrnet.tasks.pose.coco import CocoKeypoints
from hrnet.tasks.segmentation.datasets import FolderSegmentation


def outcome(run: Callable[[], Any]) -> str:
    """``ok: ...`` with what ``run`` returned, or ``raises Type: first line``; CLI runs give their exit code
    and the last line they printed to stderr."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result = run()
    except SystemExit as stop:
        return f"exit {stop.code}: {err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ''}"
    except Exception as exc:  # noqa: BLE001 - the point is to show what each case raises
        lines = str(exc).splitlines()
        first = " ".join(line.strip() for line in lines[:2]) if lines[0].endswith(":") else lines[0]
        return f"raises {type(exc).__name__}: {first}"
    if isinstance(result, int) and not isinstance(result, bool):
        lines = err.getvalue().strip().splitlines()
        return f"exit {result}" + (f": {lines[-1]}" if lines else "")
    return f"ok: {result}"


def image_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "photo.jpg"), rgb)
    whole = (root / "photo.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    cv2.imwrite(str(root / "photo.png"), rgb)
    (root / "cut.png").write_bytes((root / "photo.png").read_bytes()[:-40])
    Image.fromarray(rgb[..., 0], "L").save(root / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]), "RGBA").save(root / "rgba.png")
    Image.fromarray(rgb[..., 0] % 4, "P").save(root / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(rgb).save(root / "exif_rotated.jpg", exif=exif.tobytes())
    cv2.imwrite(str(root / "deep.png"), rgb.astype(np.uint16) * 257)
    (root / "text.jpg").write_text("not an image")

    def shape(name: str) -> Callable[[], str]:
        return lambda: f"{read_image(str(root / name)).shape} uint8 RGB"

    return [(f"image: {name}", shape(name)) for name in
            ("missing.jpg", "cut.jpg", "cut.png", "text.jpg", "grey.png", "rgba.png", "palette.png", "deep.png",
             "exif_rotated.jpg")]


def coco_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    ann = make_synthetic_coco_keypoints(root, split="val", num_images=3, image_size=(96, 96), seed=0)
    good = json.loads(Path(ann).read_text())

    def variant(name: str, change: Callable[[dict], Any]) -> Callable[[], str]:
        data = json.loads(json.dumps(good))
        change(data)
        path = root / f"{name}.json"
        path.write_text(json.dumps(data) if name != "not_json" else "{oops")
        return lambda: f"{len(CocoKeypoints(ann_file=path, img_dir=root / 'val', train=False))} person samples"

    def drop(key: str) -> Callable[[dict], None]:
        return lambda d: d.pop(key)

    def first_ann(**fields: Any) -> Callable[[dict], None]:
        return lambda d: d["annotations"][0].update(fields)

    def all_crowd(d: dict) -> None:
        for a in d["annotations"]:
            a["iscrowd"] = 1

    def no_annotations(d: dict) -> None:
        d["annotations"] = []

    cases = [
        ("COCO: not JSON", variant("not_json", lambda d: None)),
        ("COCO: no `images`", variant("no_images", drop("images"))),
        ("COCO: no `annotations`", variant("no_annotations_key", drop("annotations"))),
        ("COCO: no `categories`", variant("no_categories", drop("categories"))),
        ("COCO: `bbox` a string", variant("bbox_string", first_ann(bbox="10 10 20 20"))),
        ("COCO: an image `id` a string", variant("id_string", lambda d: d["images"][0].update(id="one"))),
        ("COCO: an image `width` a string", variant("width_string", lambda d: d["images"][0].update(width="wide"))),
        ("COCO: `file_name` a number", variant("file_number", lambda d: d["images"][0].update(file_name=5))),
        ("COCO: `iscrowd` a string", variant("crowd_string", first_ann(iscrowd="no"))),
        ("COCO: 16 keypoints instead of 17", variant("short_kpts", first_ann(keypoints=[1, 1, 2] * 16))),
        ("COCO: box outside the image", variant("box_outside", first_ann(bbox=[500, 500, 20, 20]))),
        ("COCO: box of zero area", variant("box_zero", first_ann(bbox=[10, 10, 0, 0]))),
        ("COCO: crowd-only images", variant("crowd", all_crowd)),
        ("COCO: images without annotations", variant("empty", no_annotations)),
    ]
    (root / "val" / good["images"][0]["file_name"]).unlink()
    missing = lambda: CocoKeypoints(ann_file=ann, img_dir=root / "val", train=False)[0]  # noqa: E731
    return [*cases, ("COCO: an image file missing (read at sample time)", missing)]


def detection_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    """COCO instances (the detection reader): degenerate boxes are counted skips, bad records named."""
    ann = make_synthetic_coco_instances(root / "instances", split="val", num_images=3, image_size=(64, 80), seed=0)
    good = json.loads(ann.read_text())

    def variant(name: str, change: Callable[[dict], Any]) -> Callable[[], str]:
        data = json.loads(json.dumps(good))
        change(data)
        path = root / "instances" / f"{name}.json"
        path.write_text(json.dumps(data))

        def read() -> str:
            ds = CocoInstances(path, root / "instances" / "val", train=True)
            skips = ", ".join(f"{n} {why}" for why, n in ds.skipped.items()) or "none"
            return f"{len(ds)} images; skipped: {skips}"
        return read

    def first(**fields: Any) -> Callable[[dict], None]:
        return lambda d: d["annotations"][0].update(fields)

    gone = json.loads(json.dumps(good))
    gone["images"][0]["file_name"] = "gone.jpg"
    (root / "instances" / "missing_image.json").write_text(json.dumps(gone))
    missing = lambda: CocoInstances(root / "instances" / "missing_image.json", root / "instances" / "val",  # noqa: E731
                                    train=False)[0]
    return [
        ("instances: a box of zero width", variant("zero_box", first(bbox=[5.0, 5.0, 0.0, 9.0]))),
        ("instances: a box outside the image", variant("outside", first(bbox=[500.0, 500.0, 9.0, 9.0]))),
        ("instances: a polygon of 2 points", variant("short_polygon", first(segmentation=[[1, 1, 5, 5]]))),
        ("instances: an unknown category id", variant("unknown_category", first(category_id=77))),
        ("instances: an image file missing (read at sample time)", missing),
    ]


def face_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    """The official face lists (300W CSV) and COFW's .mat: missing columns, wrong counts, missing images."""
    csv = make_synthetic_300w(root / "faces", split="val", num_images=2, image_size=(64, 64), seed=0)
    header, *rows = csv.read_text().splitlines()

    def variant(name: str, lines: list[str]) -> Callable[[], str]:
        path = root / "faces" / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        return lambda: f"{len(read_landmark_csv(path, root / 'faces', '300w'))} faces"

    not_mat = root / "faces" / "COFW_test_color.mat"
    not_mat.write_bytes(b"MATLAB 5.0 MAT-file")
    return [
        ("face list (300W CSV): a row without its last landmark", variant("short", [header, rows[0].rsplit(",", 2)[0]])),
        ("face list: 98 landmarks' columns read as 300W", variant("wflw", [header, rows[0] + ",1.0" * 60])),
        ("face list: a coordinate not a number", variant("nan", [header, rows[0].replace(",", ",x", 1)])),
        ("face list: an image file missing", variant("gone", [header, rows[0].replace("000000.jpg", "gone.jpg")])),
        ("COFW: a .mat file that is not MATLAB v7.3", lambda: read_cofw_mat(not_mat, "test")),
    ]


def segmentation_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    cases = []
    for i, (name, mask) in enumerate((("mask of another size", np.zeros((16, 48), np.uint8)),
                                      ("label id outside the class set", np.full((32, 48), 7, np.uint8)))):
        images, masks = root / f"seg_images{i}", root / f"seg_masks{i}"
        images.mkdir()
        masks.mkdir()
        cv2.imwrite(str(images / "a.png"), np.zeros((32, 48, 3), np.uint8))
        Image.fromarray(mask, "L").save(masks / "a.png")
        dataset = FolderSegmentation(images, masks, ["a", "b", "c"], train=False)
        cases.append((f"segmentation: {name}", lambda d=dataset: f"mask {tuple(d[0]['mask'].shape)}"))
    return cases


def checkpoint_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    good = root / "w32.pth"
    torch.save(hrnet.create_model("pose_hrnet_w32").state_dict(), good)
    (root / "truncated.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save(hrnet.create_model("pose_hrnet_w48").state_dict(), root / "w48.pth")
    torch.save(hrnet.create_model("pose_hrnet_w32", num_joints=16).state_dict(), root / "mpii.pth")

    def load(name: str) -> Callable[[], str]:
        return lambda: f"{len(hrnet.create_model('pose_hrnet_w32', weights=root / name).state_dict())} tensors"

    return [("checkpoint: truncated", load("truncated.pth")), ("checkpoint: another preset (W48)", load("w48.pth")),
            ("checkpoint: another number of joints (16)", load("mpii.pth"))]


def cli_cases(root: Path) -> list[tuple[str, Callable[[], Any]]]:
    config = root / "fit.yaml"
    config.write_text("model:\n  model: pose_hrnet_w18_small\n  lr_stepz: [1]\n")
    torch.save(hrnet.create_model("higher_hrnet_w18_small").state_dict(), root / "higher.pth")
    (root / "boxes.json").write_text("[]")
    return [
        ("`hrnet fit`: a config key that does not exist", lambda: main(["fit", "--config", str(config)])),
        ("`hrnet predict`: `--boxes` with a bottom-up model", lambda: main([
            "predict", str(root / "predict_in"), "--weights", str(root / "higher.pth"), "--model",
            "higher_hrnet_w18_small", "--boxes", str(root / "boxes.json"), "--out", str(root / "predict_out")])),
        ("`hrnet predict`: a folder with a truncated JPEG", lambda: main([
            "predict", str(root / "predict_in"), "--weights", str(root / "w32.pth"), "--model", "pose_hrnet_w32",
            "--out", str(root / "predict_out")])),
    ]


def run() -> list[tuple[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cases = image_cases(root) + coco_cases(root) + detection_cases(root) + face_cases(root) + \
            segmentation_cases(root) + \
            checkpoint_cases(root)
        (root / "predict_in").mkdir()
        for name in ("photo.jpg", "cut.jpg"):
            (root / "predict_in" / name).write_bytes((root / name).read_bytes())
        cases += cli_cases(root)
        for name, case in cases:
            text = outcome(case).replace(f"{root}/", "")
            rows.append((name, text if len(text) <= 200 else text[:197] + "..."))
    return rows


if __name__ == "__main__":
    print("| input | what happens |\n| --- | --- |")
    for name, result in run():
        print(f"| {name} | {result.replace('|', '/')} |")
