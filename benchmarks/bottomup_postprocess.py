"""Time HigherHRNet's whole post-processing of one 512x512 image with 30 people, from the network's outputs to
people in image pixels: the outputs merged with the flip test (:func:`merge_outputs`: heatmaps averaged, tags
stacked), projected to the input size or not (official ``TEST.PROJECT2IMAGE``, on in the COCO configs; maps
512x512 or 256x256), decoded and grouped with adjust and refine (:func:`group`) and mapped back
(:func:`to_image`); next to the plain loop re-statement of the official grouping
(``benchmarks/official_grouping.py``) on the same merged maps.

    python benchmarks/bottomup_postprocess.py [--people 30] [--repeats 20] [--threads 1]

The outputs are those of a flip-equivariant network for synthetic maps: every visible joint a Gaussian
(sigma 2, peak 0.4-1) on the 1/2-resolution (256x256) heatmaps; its person's tag (people 2 apart) over the
Gaussian's support, elsewhere the nearest person's tag plus a smooth field within +-0.5, Gaussian noise 0.1;
uniform heatmap noise below the detection threshold (0.05), smooth or per pixel; the 1/4-resolution output
(heatmaps and tags) is the 1/2 one downsampled. ``random_people`` and ``render_maps`` are shared with
``tests/test_bottomup_grouping.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hrnet.cpu import cpu_name
from hrnet.keypoints.sets import COCO_KEYPOINTS
from hrnet.tasks.bottomup.grouping import group, merge_outputs, to_image

# A standing person's COCO joints as fractions of its box (x right, y down).
TEMPLATE = np.array([
    (0.50, 0.08), (0.54, 0.06), (0.46, 0.06), (0.58, 0.08), (0.42, 0.08), (0.68, 0.22), (0.32, 0.22),
    (0.76, 0.38), (0.24, 0.38), (0.80, 0.52), (0.20, 0.52), (0.60, 0.55), (0.40, 0.55), (0.60, 0.75),
    (0.40, 0.75), (0.60, 0.95), (0.40, 0.95),
])


def random_people(rng: np.random.Generator, num_people: int, image_size: int = 512,
                  height: tuple[float, float] = (100.0, 300.0), visible: float = 0.8, min_gap: float = 0.0,
                  tries: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``num_people`` people in an ``image_size`` square image: joints ``(P, 17, 3)`` (x, y, COCO
    visibility 0/2; unlabelled joints all 0), at least 3 labelled each, and their boxes ``(P, 4)`` (x, y, w, h).
    With ``min_gap``, labelled joints of the same type in different people are at least that far apart."""
    people: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    for _ in range(tries):
        if len(people) == num_people:
            break
        h = rng.uniform(*height)
        w = 0.45 * h
        origin = rng.uniform((0, 0), (image_size - w, image_size - h))
        xy = np.clip(origin + TEMPLATE * (w, h) + rng.normal(0, 0.02 * h, (17, 2)), 0, image_size - 1)
        vis = rng.random(17) < visible
        close = [np.hypot(*(xy - other[:, :2]).T)[vis & (other[:, 2] > 0)] < min_gap for other in people]
        if vis.sum() < 3 or any(c.any() for c in close):
            continue
        people.append(np.concatenate((xy * vis[:, None], 2.0 * vis[:, None]), axis=1))
        boxes.append(np.array([*origin, w, h]))
    return np.array(people, dtype=np.float64).reshape(-1, 17, 3), np.array(boxes).reshape(-1, 4)


def render_maps(joints: np.ndarray, size: int, tags: np.ndarray, rng: np.random.Generator, tag_dim: int = 2,
                amplitude: np.ndarray | None = None, sigma: float = 2.0, tag_noise: float = 0.0,
                heat_noise: float = 0.0, field_noise: float = 0.5,
                smooth: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps ``(J, size, size)`` and tags ``(J, size, size, tag_dim)`` for ``joints`` ``(P, J, 3)`` in map
    pixels: the official ``HeatmapGenerator`` Gaussians (at ``int(x), int(y)``, max over people) scaled by
    ``amplitude``; each person's ``tags`` value over its Gaussians' support, elsewhere the tag of the nearest
    person (by the centre of its labelled joints) plus a smooth field within +-``field_noise``; then Gaussian
    ``tag_noise`` on every tag and uniform ``[0, heat_noise)`` noise on the heatmaps, drawn at 1/4 resolution
    and upsampled (``smooth``) or per pixel."""
    num_joints = joints.shape[1]
    amplitude = np.ones(len(joints)) if amplitude is None else amplitude
    heatmaps = np.zeros((num_joints, size, size), np.float32)
    owner = np.full((num_joints, size, size), -1)
    radius = int(3 * sigma + 1)
    for p, person in enumerate(joints):
        for j, (x, y, v) in enumerate(person):
            xi, yi = int(x), int(y)
            if v <= 0 or not (0 <= xi < size and 0 <= yi < size):
                continue
            ys = slice(max(0, yi - radius), min(size, yi + radius + 1))
            xs = slice(max(0, xi - radius), min(size, xi + radius + 1))
            gy, gx = np.ogrid[ys, xs]
            g = amplitude[p] * np.exp(-((gx - xi) ** 2 + (gy - yi) ** 2) / (2 * sigma ** 2))
            owner[j, ys, xs] = np.where(g > heatmaps[j, ys, xs], p, owner[j, ys, xs])
            heatmaps[j, ys, xs] = np.maximum(heatmaps[j, ys, xs], g)
    labelled = joints[..., 2:] > 0
    centres = (joints[..., :2] * labelled).sum(axis=1) / np.maximum(labelled.sum(axis=1), 1)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1)
    nearest = np.linalg.norm(grid[:, :, None] - centres[None, None], axis=-1).argmin(axis=2)
    coarse = torch.from_numpy(rng.uniform(-field_noise, field_noise, (num_joints, tag_dim, 8, 8)))
    field = tags[nearest] + F.interpolate(coarse.float(), size=(size, size), mode="bilinear",
                                          align_corners=False).numpy()
    own = np.where(owner >= 0, tags[np.maximum(owner, 0)], np.nan)
    tag = np.where(np.isnan(own)[:, None], field, own[:, None]).transpose(0, 2, 3, 1)
    tag = tag + tag_noise * rng.normal(size=tag.shape)
    if smooth:  # network maps are smooth at the pixel scale: noise drawn at 1/4 resolution, upsampled
        coarse = torch.from_numpy(rng.random((1, num_joints, -(-size // 4), -(-size // 4))).astype(np.float32))
        noise = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    else:
        noise = rng.random(heatmaps.shape)
    heatmaps = heatmaps + heat_noise * noise
    return torch.from_numpy(heatmaps.astype(np.float32)), torch.from_numpy(tag.astype(np.float32))


def scene(rng: np.random.Generator, num_people: int, size: int, image_size: int = 512, smooth: bool = True,
          tag_dim: int = 2):
    """Maps of ``num_people`` people with peaks 0.4-1, tags 2 apart plus noise 0.1, heatmap noise 0.05."""
    people, _ = random_people(rng, num_people, image_size, min_gap=4.0 * image_size / size)
    joints = people.copy()
    joints[..., :2] *= size / image_size
    tags = rng.permutation(len(people)) * 2.0 - len(people)
    return render_maps(joints, size, tags, rng, tag_dim=tag_dim, amplitude=rng.uniform(0.4, 1.0, len(people)),
                       tag_noise=0.1, heat_noise=0.05, smooth=smooth)


def network_outputs(heatmaps: torch.Tensor, tags: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The outputs of a flip-equivariant HigherHRNet whose 1/2-resolution heatmaps are ``heatmaps`` (J, h, w) and
    1/4-resolution output ``[heatmaps, tags]`` downsampled, and its outputs for the mirrored image."""
    num_joints = heatmaps.shape[0]
    low = F.interpolate(torch.cat((heatmaps, tags[..., 0]))[None], scale_factor=0.5, mode="bilinear",
                        align_corners=False)
    high = heatmaps[None]
    flip = list(COCO_KEYPOINTS.flip_index)
    return [low, high], [low.flip(3)[:, flip + [num_joints + i for i in flip]], high.flip(3)[:, flip]]


def time_ms(fn, repeats: int, *args) -> float:
    """Median wall time of ``fn(*args)`` in ms after one warm-up call."""
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


CENTER, SCALE = (256.0, 256.0), (2.56, 2.56)  # a 512x512 image at input size 512 (official get_multi_scale_size)


def merged(outputs, mirrored, size_hw) -> tuple[torch.Tensor, torch.Tensor]:
    heatmaps, tags = merge_outputs(outputs, 17, mirrored, COCO_KEYPOINTS.flip_index, size_hw)
    return heatmaps[0], tags[0]


def vectorised(heatmaps: torch.Tensor, tags: torch.Tensor) -> np.ndarray:
    """The package's grouping and mapping back: people in image pixels."""
    return to_image(group(heatmaps, tags)[0], CENTER, SCALE, (heatmaps.shape[2], heatmaps.shape[1]))


def loops(heatmaps: torch.Tensor, tags: torch.Tensor) -> list[np.ndarray]:
    """The re-statement's grouping and mapping back: people in image pixels."""
    from official_grouping import parse

    return [to_image(p[None], CENTER, SCALE, (heatmaps.shape[2], heatmaps.shape[1])) for p in parse(heatmaps, tags)[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_name()}; torch threads: {torch.get_num_threads()}; one 512x512 image at input size 512, "
          f"{args.people} people, flip test (D=2)")
    print("| heatmap noise | project2image (maps) | people | joints refined | merge ms | group + map back ms | "
          "total ms | loop re-statement, group ms | total speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for smooth in (True, False):
        outputs, mirrored = network_outputs(*scene(rng, args.people, 256, smooth=smooth, tag_dim=1))
        for size_hw in (None, (512, 512)):
            heatmaps, tags = merged(outputs, mirrored, size_hw)
            people, _ = group(heatmaps, tags, refine_joints=False)
            missing = int((people[:, :, 2] == 0).sum())
            merge = time_ms(merged, args.repeats, outputs, mirrored, size_hw)
            ours = time_ms(vectorised, args.repeats, heatmaps, tags)
            theirs = time_ms(loops, 2, heatmaps, tags)
            maps = f"{'on' if size_hw else 'off'} ({heatmaps.shape[1]}x{heatmaps.shape[2]})"
            print(f"| {'smooth' if smooth else 'per pixel'} | {maps} | {len(people)} | {missing} | {merge:.1f} | "
                  f"{ours:.1f} | {merge + ours:.1f} | {theirs:.0f} | {(merge + theirs) / (merge + ours):.0f}x |")


if __name__ == "__main__":
    main()
