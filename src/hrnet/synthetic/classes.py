"""Synthetic ImageNet-style classification: twelve classes told apart by shape, texture or colour arrangement.

:func:`make_synthetic_image_folder` writes ``<root>/<split>/<class_name>/NNNNN.jpg``, the layout of
torchvision's ``ImageFolder`` and of ImageNet's ``train``/``val`` folders; class folders are :data:`CLASSES`,
already sorted, so ``ImageFolder``'s ``class_to_idx`` is the index into :data:`CLASSES`.

Each image is one object on clutter (a colour gradient with texture noise, distractor lines and blobs) with
random colours, so the mean colour says nothing about the class: identity lies in structure alone. The object
spans 0.5-1.0 of the image side (textures 0.7-1.0, to hold several periods) at a random position and rotation
(the stripe classes keep their orientation to within 12 degrees, as it is what defines them); then blur, pixel
noise and a random JPEG quality. Objects are
painted from analytic signed distances in the object's frame (1-pixel anti-aliased edges), so one vectorised
code path draws every class at any size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

Painter = Callable[[np.ndarray, np.ndarray, float, float, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""``(dx, dy, radius, angle, rng) -> (cover, pattern)``: per pixel, how much the object covers it and how much of
that is the second colour, both (H, W) in [0, 1]; ``dx``, ``dy`` are pixel offsets from the object's centre."""

_STRIPE_JITTER = math.radians(12)
_TEXTURES = ("checkerboard", "dots", "stripes_diagonal", "stripes_horizontal")  # need a bigger patch: several periods


def _soft(distance: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (> 0 inside), with a 1-pixel anti-aliased edge."""
    return np.clip(distance + 0.5, 0.0, 1.0)


def _rotate(dx: np.ndarray, dy: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets in the frame of an object turned by ``angle`` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    return dx * c + dy * s, dy * c - dx * s


def _polygon(u: np.ndarray, v: np.ndarray, radius: float, sides: int) -> np.ndarray:
    """Signed distance to a regular polygon of circumradius ``radius`` (a vertex on +u)."""
    wedge = 2 * math.pi / sides
    theta = np.mod(np.arctan2(v, u), wedge) - wedge / 2
    return radius * math.cos(wedge / 2) - np.hypot(u, v) * np.cos(theta)


def _star(u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance to the edges of a five-pointed star (inner radius 0.45), folded into one half-wedge."""
    half = math.pi / 5
    theta = np.abs(np.mod(np.arctan2(v, u) + half, 2 * half) - half)
    rho = np.hypot(u, v)
    tip, inner = np.array([radius, 0.0]), 0.45 * radius * np.array([math.cos(half), math.sin(half)])
    edge = inner - tip
    normal = np.array([edge[1], -edge[0]]) / np.linalg.norm(edge)  # points away from the centre
    return -((rho * np.cos(theta) - tip[0]) * normal[0] + rho * np.sin(theta) * normal[1])


def _patch(dx: np.ndarray, dy: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Cover of a texture patch: a disc or a square, turned independently of the texture."""
    if rng.random() < 0.5:
        return _soft(0.9 * radius - np.hypot(dx, dy))
    return _soft(_polygon(*_rotate(dx, dy, rng.uniform(0, 2 * math.pi)), radius, 4))


def _solid(distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A one-colour shape from its signed distance."""
    return _soft(distance), np.zeros_like(distance)


def _cross(u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance (inside) of a plus sign: two bars of half-width 0.3 radius."""
    arm = 0.3 * radius
    bar_u = np.minimum(radius - np.abs(u), arm - np.abs(v))
    bar_v = np.minimum(radius - np.abs(v), arm - np.abs(u))
    return np.maximum(bar_u, bar_v)


def _stripes(dx: np.ndarray, dy: np.ndarray, radius: float, angle: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stripes along the frame's u axis, period 0.35-0.55 radius (at least 6 px)."""
    period = max(6.0, radius * rng.uniform(0.35, 0.55))
    wave = np.sin(2 * math.pi * _rotate(dx, dy, angle)[1] / period)
    return _patch(dx, dy, radius, rng), np.clip(0.5 + wave * period / (2 * math.pi), 0.0, 1.0)


def _checkerboard(dx: np.ndarray, dy: np.ndarray, radius: float, angle: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Squares of side 0.35-0.5 radius (at least 7 px) in two colours."""
    cell = max(7.0, radius * rng.uniform(0.35, 0.5))
    u, v = _rotate(dx, dy, angle)
    wave = np.sin(math.pi * u / cell) * np.sin(math.pi * v / cell)
    return _patch(dx, dy, radius, rng), np.clip(0.5 + wave * cell / math.pi, 0.0, 1.0)


def _dots(dx: np.ndarray, dy: np.ndarray, radius: float, angle: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A square grid of dots, spacing 0.45-0.6 radius (at least 10 px), dot radius 0.25 spacing: small round
    islands of the second colour, where a checkerboard splits the area half and half."""
    step = max(10.0, radius * rng.uniform(0.45, 0.6))
    u, v = _rotate(dx, dy, angle)
    u, v = u - step * np.round(u / step), v - step * np.round(v / step)
    return _patch(dx, dy, radius, rng), _soft(0.25 * step - np.hypot(u, v))


def _bullseye(dx: np.ndarray, dy: np.ndarray, radius: float, angle: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Concentric bands of width radius / 3-4, alternating colours from a centre dot."""
    width = radius / rng.uniform(3.0, 4.0)
    rho = np.hypot(dx, dy)
    wave = np.sin(math.pi * rho / width)
    return _soft(radius - rho), np.clip(0.5 + wave * width / math.pi, 0.0, 1.0)


def _split_disc(dx: np.ndarray, dy: np.ndarray, radius: float, angle: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A disc in two halves of different colour."""
    return _soft(radius - np.hypot(dx, dy)), _soft(_rotate(dx, dy, angle)[0])


_PAINTERS: dict[str, Painter] = {
    "bullseye": _bullseye,
    "checkerboard": _checkerboard,
    "cross": lambda dx, dy, r, a, rng: _solid(_cross(*_rotate(dx, dy, a), r)),
    "disc": lambda dx, dy, r, a, rng: _solid(r - np.hypot(dx, dy)),
    "dots": _dots,
    "ring": lambda dx, dy, r, a, rng: _solid(np.minimum(r - np.hypot(dx, dy), np.hypot(dx, dy) - 0.55 * r)),
    "split_disc": _split_disc,
    "square": lambda dx, dy, r, a, rng: _solid(_polygon(*_rotate(dx, dy, a), r, 4)),
    "star": lambda dx, dy, r, a, rng: _solid(_star(*_rotate(dx, dy, a), r)),
    "stripes_diagonal": _stripes,
    "stripes_horizontal": _stripes,
    "triangle": lambda dx, dy, r, a, rng: _solid(_polygon(*_rotate(dx, dy, a), r, 3)),
}

CLASSES: tuple[str, ...] = tuple(sorted(_PAINTERS))
"""The class names, sorted (``ImageFolder`` order)."""


def _angle(name: str, rng: np.random.Generator) -> float:
    """Object rotation: free, except that stripes stay horizontal or diagonal (either diagonal) to 12 degrees."""
    jitter = rng.uniform(-_STRIPE_JITTER, _STRIPE_JITTER)
    if name == "stripes_horizontal":
        return jitter
    if name == "stripes_diagonal":
        return math.pi / 4 * rng.choice([1, 3]) + jitter
    return rng.uniform(0, 2 * math.pi)


def _colour(rng: np.random.Generator, *avoid: np.ndarray) -> np.ndarray:
    """A random colour at least 100 grey levels from each of ``avoid`` in some channel."""
    while True:
        colour = rng.uniform(0, 255, 3)
        if all(np.abs(colour - other).max() >= 100 for other in avoid):
            return colour


def _lines(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draw ``count`` thin distractor lines of random colour across ``image`` in place."""
    size = image.shape[0]
    for _ in range(count):
        ends = rng.integers(0, size, 4)
        cv2.line(image, (int(ends[0]), int(ends[1])), (int(ends[2]), int(ends[3])),
                 rng.uniform(0, 255, 3).tolist(), 1, cv2.LINE_AA)


def _clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 background: a colour gradient, texture noise, thin lines and small blobs."""
    grid = np.arange(size, dtype=np.float32) / size
    image = (rng.uniform(40, 200, 3) + grid[None, :, None] * rng.uniform(-60, 60, 3)
             + grid[:, None, None] * rng.uniform(-60, 60, 3)).astype(np.float32)
    image += rng.normal(0, rng.uniform(4, 12), image.shape).astype(np.float32)
    _lines(image, rng, int(rng.integers(1, 4)))
    for _ in range(rng.integers(0, 4)):
        axes = np.maximum(1, rng.uniform(0.02, 0.06, 2) * size).astype(int)
        centre = rng.integers(0, size, 2)
        cv2.ellipse(image, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])),
                    float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1, cv2.LINE_AA)
    return image


def render_image(name: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One (size, size, 3) uint8 image of class ``name`` (before JPEG): clutter, the object, blur and noise."""
    image = _clutter(rng, size)
    radius = 0.5 * size * rng.uniform(0.7 if name in _TEXTURES else 0.5, 1.0)
    centre = rng.uniform(radius, size - radius, 2)
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx, dy = np.meshgrid(grid - centre[0], grid - centre[1])
    cover, pattern = _PAINTERS[name](dx, dy, radius, _angle(name, rng), rng)
    behind = image.mean((0, 1))
    first = _colour(rng, behind)
    second = _colour(rng, behind, first)
    fill = first + pattern[..., None] * (second - first)
    image += cover[..., None] * (fill - image)
    _lines(image, rng, int(rng.random() < 0.5))  # now and then one crosses the object
    if rng.random() < 0.6:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.0) * size / 64)
    image += rng.normal(0, rng.uniform(2, 8), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic_image_folder(root: str | Path, *, split: str, images_per_class: int, image_size: int = 64,
                                seed: int = 0) -> list[str]:
    """Write ``images_per_class`` JPEGs (quality 60-95) of each of :data:`CLASSES` to
    ``<root>/<split>/<class>/NNNNN.jpg``; returns the class names. Image ``i`` of class ``c`` depends only on
    (``seed``, ``c``, ``i``), so a bigger set extends a smaller one; give ``val`` another seed."""
    for label, name in enumerate(CLASSES):
        folder = Path(root) / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(images_per_class):
            rng = np.random.default_rng((seed, label, index))
            image = render_image(name, rng, image_size)
            quality = int(rng.integers(60, 96))
            cv2.imwrite(str(folder / f"{index:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return list(CLASSES)
