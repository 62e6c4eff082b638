"""Synthetic ImageFolder generator: the torchvision/ImageNet folder layout, determinism, and classes that mean
colour cannot tell apart while simple structure (edge orientation) can."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hrnet.synthetic.classes import CLASSES, make_synthetic_image_folder

SIZE = 64
PER_CLASS = 30


def _load(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of ``root/split`` as (N, H, W, 3) uint8 and their labels (index into the sorted folders)."""
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in (root / split).iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.jpg")):
            images.append(cv2.imread(str(path), cv2.IMREAD_COLOR))
            labels.append(label)
    return np.stack(images), np.array(labels)


def _nearest_centroid(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    """Top-1 accuracy on ``test`` of a nearest-class-mean classifier fit on ``train`` (features standardised)."""
    mean, std = train.mean(0), train.std(0) + 1e-8
    train, test = (train - mean) / std, (test - mean) / std
    centroids = np.stack([train[y_train == c].mean(0) for c in range(len(CLASSES))])
    predicted = np.linalg.norm(test[:, None] - centroids[None], axis=2).argmin(1)
    return float((predicted == y_test).mean())


def _orientation_histogram(images: np.ndarray, bins: int = 8) -> np.ndarray:
    """(N, bins) magnitude-weighted histogram of gradient orientation (mod 180 degrees), normalised per image."""
    features = []
    for image in images:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        magnitude, angle = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
        hist = np.bincount((angle / np.pi * bins).astype(int).clip(0, bins - 1).ravel(),
                           magnitude.ravel(), minlength=bins)
        features.append(hist / hist.sum())
    return np.stack(features)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("imagefolder")
    names = make_synthetic_image_folder(root, split="train", images_per_class=PER_CLASS, image_size=SIZE, seed=0)
    assert make_synthetic_image_folder(root, split="val", images_per_class=PER_CLASS, image_size=SIZE,
                                       seed=1) == names
    return root, names


def test_imagefolder_layout(folders):
    root, names = folders
    assert len(names) >= 10 and len(set(names)) == len(names)
    assert names == sorted(names) == list(CLASSES)  # ImageFolder's class_to_idx is the index into CLASSES
    for split in ("train", "val"):
        assert sorted(p.name for p in (root / split).iterdir()) == names
        for name in names:
            files = sorted((root / split / name).iterdir())
            assert [p.name for p in files] == [f"{i:05d}.jpg" for i in range(PER_CLASS)]
            for path in files[:3]:
                assert path.read_bytes()[:2] == b"\xff\xd8"  # JPEG start-of-image marker
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                assert image is not None and image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8


def test_deterministic_in_seed(tmp_path):
    def files(seed: int, per_class: int, size: int = 32) -> dict[str, bytes]:
        root = tmp_path / f"s{seed}_{per_class}"
        make_synthetic_image_folder(root, split="val", images_per_class=per_class, image_size=size, seed=seed)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}

    first, again, other, more = files(5, 2), files(5, 2), files(6, 2), files(5, 3)
    assert first == again
    assert first.keys() == other.keys() and all(first[k] != other[k] for k in first)
    assert {k: more[k] for k in first} == first  # a bigger set extends a smaller one
    assert len(more) == 3 * len(CLASSES)


def test_image_size_is_honoured(tmp_path):
    make_synthetic_image_folder(tmp_path, split="train", images_per_class=1, image_size=96, seed=0)
    for name in CLASSES:
        assert cv2.imread(str(tmp_path / "train" / name / "00000.jpg")).shape == (96, 96, 3)


def test_mean_colour_does_not_identify_the_class(folders):
    root, _ = folders
    (x_train, y_train), (x_val, y_val) = _load(root, "train"), _load(root, "val")
    accuracy = _nearest_centroid(x_train.mean((1, 2)), y_train, x_val.mean((1, 2)), y_val)
    assert accuracy < 0.2, accuracy  # chance is 1 / 12


def test_edge_orientation_separates_classes(folders):
    root, _ = folders
    (x_train, y_train), (x_val, y_val) = _load(root, "train"), _load(root, "val")
    h_train, h_val = _orientation_histogram(x_train), _orientation_histogram(x_val)
    assert _nearest_centroid(h_train, y_train, h_val, y_val) > 0.18  # about twice chance: structure carries the class
    # Horizontal stripes put their gradient energy at 90 degrees, diagonal ones at 45 / 135.
    bins = h_val.shape[1]
    vertical_energy = h_val[:, bins // 2 - 1:bins // 2 + 1].sum(1)
    horizontal = vertical_energy[y_val == CLASSES.index("stripes_horizontal")]
    diagonal = vertical_energy[y_val == CLASSES.index("stripes_diagonal")]
    assert np.mean(horizontal[:, None] > diagonal[None]) > 0.95
