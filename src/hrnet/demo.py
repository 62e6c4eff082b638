"""The embedded demo: runs the whole pipeline on data the package generates itself."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .models import create_model
from .models.complexity import model_complexity

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_image(height: int = 512, width: int = 1024, seed: int = 0) -> Image.Image:
    """A street-like picture: sky/road gradient, boxes and discs, so the demo needs no download."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None, None]
    sky, road = np.array([120, 170, 230]), np.array([90, 90, 95])
    img = Image.fromarray((sky * (1 - rows) + road * rows).repeat(width, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.integers(0, width - 80), rng.integers(height // 4, height - 80)
        w, h = rng.integers(30, 200), rng.integers(30, 160)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.4 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (1, 3, H, W) float, ImageNet-normalised."""
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return ((x - mean) / std)[None]


def run_model_demo(out: Path, name: str = "seg_hrnet_w18_small_v1") -> dict[str, object]:
    """Run one (untrained) preset on a generated image; write the input and its label map."""
    out.mkdir(parents=True, exist_ok=True)
    img = sample_image()
    img.save(out / "sample.png")
    model = create_model(name).eval()
    x = to_tensor(img)
    with torch.inference_mode():
        start = time.perf_counter()
        logits = model(x)
        seconds = time.perf_counter() - start
    labels = logits.argmax(1)[0].numpy().astype(np.uint8)
    palette = np.random.default_rng(1).integers(0, 255, (logits.shape[1], 3), dtype=np.uint8)
    Image.fromarray(palette[labels]).resize(img.size, Image.NEAREST).save(out / "labels.png")
    c = model_complexity(name, tuple(x.shape[-2:]))
    summary = {"model": name, "input": list(x.shape), "output": list(logits.shape), "seconds": round(seconds, 3),
               "gflops": round(c.gflops, 2), "params_m": round(c.params / 1e6, 3)}
    print(f"{name} (random init) on a generated {x.shape[-2]}x{x.shape[-1]} image: "
          f"logits {tuple(logits.shape)} in {seconds * 1000:.0f} ms ({c.gflops:.1f} GFLOPs); "
          f"wrote {out / 'sample.png'} and {out / 'labels.png'}")
    return summary
