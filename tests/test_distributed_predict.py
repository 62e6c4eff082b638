"""``hrnet predict --devices 2``: two CPU processes (DDP, Lightning's predict loop), each writing its shard of
the results, merged into one results file equal to the one a single process writes (issue 17)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hrnet import create_model
from hrnet.synthetic.people import make_synthetic_coco_keypoints
from hrnet.tasks.distributed_predict import SHARDS, merge_shards


def _hrnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrnet.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("people")
    ann = make_synthetic_coco_keypoints(root, split="val", num_images=9, image_size=(96, 128),
                                        persons_per_image=(1, 3), seed=2)
    coco = json.loads(Path(ann).read_text())
    boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
             for a in coco["annotations"] if not a["iscrowd"]]
    (root / "boxes.json").write_text(json.dumps(boxes))
    (root / "val" / "zz_broken.jpg").write_bytes(b"not an image")
    torch.manual_seed(0)
    torch.save(create_model("pose_hrnet_w18_small").state_dict(), root / "pose.pth")
    return {"images": root / "val", "boxes": root / "boxes.json", "weights": root / "pose.pth", "root": root}


def test_two_processes_merge_into_the_results_of_one(people, tmp_path) -> None:
    common = [str(people["images"]), "--weights", str(people["weights"]), "--model", "pose_hrnet_w18_small",
              "--input-size", "64", "48", "--boxes", str(people["boxes"])]
    one = _hrnet("predict", *common, "--out", str(tmp_path / "one"))
    two = _hrnet("predict", *common, "--devices", "2", "--accelerator", "cpu", "--out", str(tmp_path / "two"))
    assert one.returncode == 1 and two.returncode == 1, two.stderr[-2000:]  # the broken image is reported
    assert "zz_broken.jpg" in one.stderr and "zz_broken.jpg" in two.stderr
    assert "Starting with 2 processes" in two.stderr  # Lightning's DDP start-up message
    single = json.loads((tmp_path / "one" / "keypoints.json").read_text())
    merged = json.loads((tmp_path / "two" / "keypoints.json").read_text())
    assert merged.keys() == single.keys() and merged["keypoints"] == single["keypoints"]
    assert [r["file"] for r in merged["images"]] == [r["file"] for r in single["images"]]
    assert len(merged["images"]) == 9
    for a, b in zip(merged["images"], single["images"]):
        assert len(a["persons"]) == len(b["persons"])
        for p, q in zip(a["persons"], b["persons"]):
            assert p["box"] == q["box"]
            assert np.allclose(p["keypoints"], q["keypoints"], atol=0.011)  # batches differ: float rounding only
    pictures = sorted(p.name for p in (tmp_path / "two").glob("*_pose.jpg"))
    assert pictures == sorted(p.name for p in (tmp_path / "one").glob("*_pose.jpg")) and len(pictures) == 9
    assert not (tmp_path / "two" / SHARDS).exists()


def test_merge_names_a_missing_shard(tmp_path) -> None:
    (tmp_path / SHARDS).mkdir()
    (tmp_path / SHARDS / "rank0.json").write_text(json.dumps({"records": [], "failed": [], "header": {}}))
    with pytest.raises(FileNotFoundError, match="rank1.json not found: rank 1 did not finish"):
        merge_shards(tmp_path, "keypoints.json", 2)


def test_devices_with_a_video_or_skip_existing_is_a_clear_error(people, tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    result = _hrnet("predict", str(video), "--weights", str(people["weights"]), "--model", "pose_hrnet_w18_small",
                    "--devices", "2")
    assert result.returncode == 2 and "clip.mp4 is a video" in result.stderr and "Traceback" not in result.stderr


def test_devices_with_missing_weights_is_told_once_before_any_process_starts(people, tmp_path) -> None:
    result = _hrnet("predict", str(people["images"]), "--weights", str(tmp_path / "nope.pth"), "--devices", "2")
    assert result.returncode == 2 and result.stderr.count("nope.pth: file not found") == 1
    assert "Starting with 2 processes" not in result.stderr
