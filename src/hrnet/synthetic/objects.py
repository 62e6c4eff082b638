"""Synthetic COCO instances: shapes of several classes on cluttered backgrounds, with boxes and polygon masks,
written as ``<root>/<split>/*.jpg`` and ``<root>/annotations/instances_<split>.json`` (the COCO layout)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

SHAPES = ("disc", "square", "triangle", "star", "cross")
"""The object classes, COCO category ids 1..5 in this order."""


def _outline(shape: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """(P, 2) polygon of ``shape`` centred at ``centre`` (x, y), circumradius ``radius``, rotated by ``angle``."""
    if shape == "disc":
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        r = np.full_like(t, radius)
    elif shape == "star":
        t = np.linspace(0, 2 * math.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    elif shape == "cross":
        arm = radius * 0.35
        pts = np.array([[-arm, -radius], [arm, -radius], [arm, -arm], [radius, -arm], [radius, arm], [arm, arm],
                        [arm, radius], [-arm, radius], [-arm, arm], [-radius, arm], [-radius, -arm], [-arm, -arm]])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return pts @ rot.T + centre
    else:
        n = {"square": 4, "triangle": 3}[shape]
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        r = np.full_like(t, radius)
    return np.stack([np.cos(t + angle) * r, np.sin(t + angle) * r], 1) + centre


def _contrasting(rng: np.random.Generator, behind: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least 100 grey levels away from ``behind`` in some channel (objects stay visible)."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour.astype(int) - behind.astype(int)).max() >= 100:
            return tuple(int(c) for c in colour)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour gradients, texture noise and thin distractor lines."""
    base = rng.uniform(40, 200, 3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = base + (gx / w)[..., None] * rng.uniform(-60, 60, 3) + (gy / h)[..., None] * rng.uniform(-60, 60, 3)
    image += rng.normal(0, 12, (h, w, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 6)):
        p1, p2 = rng.integers(0, [w, h], 2), rng.integers(0, [w, h], 2)
        cv2.line(image, tuple(int(v) for v in p1), tuple(int(v) for v in p2),
                 tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 3)))
    return image


def make_synthetic_coco_instances(root: str | Path, *, split: str, num_images: int,
                                  image_size: tuple[int, int] = (192, 256), seed: int = 0,
                                  objects: tuple[int, int] = (1, 4)) -> Path:
    """Write ``num_images`` images of ``image_size`` (H, W), each with ``objects`` (min, max) non-overlapping
    shapes of random class, size, rotation and colour; returns the annotation file. Deterministic in ``seed``."""
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = image_size
    images, annotations = [], []
    for index in range(num_images):
        image = _background(rng, h, w)
        placed: list[tuple[np.ndarray, float]] = []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            for _attempt in range(20):
                radius = float(rng.uniform(0.08, 0.22) * min(h, w))
                centre = rng.uniform([radius, radius], [w - radius, h - radius])
                if all(np.linalg.norm(centre - c) > radius + r + 2 for c, r in placed):
                    break
            else:
                continue
            placed.append((centre, radius))
            label = int(rng.integers(len(SHAPES)))
            polygon = _outline(SHAPES[label], centre, radius, float(rng.uniform(0, 2 * math.pi)))
            colour = _contrasting(rng, image[int(centre[1]), int(centre[0])])
            cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], colour, lineType=cv2.LINE_AA)
            x1, y1 = polygon.min(0)
            x2, y2 = polygon.max(0)
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": label + 1, "iscrowd": 0,
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": float(cv2.contourArea(polygon.astype(np.float32))),
                "segmentation": [[round(float(v), 2) for v in polygon.flatten()]],
            })
        image = np.clip(image.astype(np.float32) + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        name = f"{index:06d}.jpg"
        cv2.imwrite(str(root / split / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": index + 1, "file_name": name, "width": w, "height": h})
    ann_file = root / "annotations" / f"instances_{split}.json"
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file
