"""The shared plumbing of tasks/base.py: the COCO detection-results reader, loaders, the seeded samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrnet.seeding import SeededSamples
from hrnet.tasks.base import BoxesFile, read_detections


def _write(tmp_path: Path, content: object, name: str = "dets.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_detections_in_the_coco_results_format(tmp_path) -> None:
    path = _write(tmp_path, [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
                             {"file_name": "a.jpg", "bbox": [0.5, 0, 10, 10]}])
    first, second = read_detections(path)
    assert first.bbox == (1.0, 2.0, 30.0, 40.0) and first.score == 0.9 and first.image_id == 7
    assert second.file_name == "a.jpg" and second.score == 1.0 and second.category_id is None
    with pytest.raises(ValueError, match="entry 1 needs bbox, score and image_id"):
        read_detections(path, require=("score",))


@pytest.mark.parametrize("content, message", [
    ("{not json", "boxes file .*dets.json: not valid JSON"),
    ({"image_id": 1}, "expected a JSON list"),
    ([{"image_id": 1, "score": 1.0}], "entry 0 needs bbox and image_id"),
    ([{"bbox": [1, 2, 3, 4]}], "entry 0 needs bbox and image_id \\(or file_name\\)"),
    ([{"image_id": 1, "bbox": [1, 2, 3]}], "entry 0 has bbox \\[1, 2, 3\\]"),
    ([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": "high"}], "score 'high'; expected"),
])
def test_bad_detection_files_are_named(tmp_path, content, message) -> None:
    with pytest.raises(ValueError, match=message):
        read_detections(_write(tmp_path, content))
    with pytest.raises(FileNotFoundError, match="boxes file .*missing.json: file not found"):
        read_detections(tmp_path / "missing.json")


def test_boxes_file_keeps_one_category_above_the_threshold(tmp_path) -> None:
    path = _write(tmp_path, [{"image_id": 12, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.8},
                             {"image_id": 12, "category_id": 3, "bbox": [0, 0, 6, 6], "score": 0.9},
                             {"image_id": 12, "bbox": [1, 1, 4, 4], "score": 0.1},
                             {"file_name": "b.png", "bbox": [2, 2, 2, 2]}])
    boxes = BoxesFile(path, threshold=0.5)
    assert boxes.boxes_for(Path("photos/000012.jpg")) == [(0.0, 0.0, 5.0, 5.0, 0.8)]
    assert boxes.boxes_for(Path("b.png")) == [(2.0, 2.0, 2.0, 2.0, 1.0)]
    assert boxes.boxes_for(Path("other.jpg")) == []


def test_seeded_samples_depend_on_seed_epoch_and_index_only() -> None:
    class Samples(SeededSamples):
        seed = 3

    a, b = Samples(), Samples()
    assert a.rng_for(5).random() == b.rng_for(5).random() == np.random.default_rng((3, 0, 5)).random()
    b.set_epoch(1)
    assert a.rng_for(5).random() != b.rng_for(5).random() == np.random.default_rng((3, 1, 5)).random()
