"""HigherHRNet at test time: the official resize, the network at every test scale (with flip test), the maps
merged, people grouped and mapped back to image pixels.

The steps and their arithmetic are the official ones (HRNet/HigherHRNet-Human-Pose-Estimation):
``tools/valid.py`` loops over ``TEST.SCALE_FACTOR`` (largest first), ``lib/utils/transforms.py``
(``get_multi_scale_size``, ``resize_align_multi_scale``, ``get_final_preds``) sizes and maps back,
``lib/core/inference.py`` (``get_multi_stage_outputs``, ``aggregate_results``) merges, with the COCO configs'
``PROJECT2IMAGE: True``: every scale's maps are resized to the scale-1 input size and averaged; tags come
from scale 1 only (``project2image=False`` groups at the network's 1/2 resolution instead, as the official
option off). The evaluation (:mod:`hrnet.tasks.bottomup.module`), ``hrnet predict`` and the demo all
go through :func:`find_people`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...files import normalize_image
from ...keypoints.geometry import PIXEL_STD, get_affine_transform
from .grouping import COCO_JOINT_ORDER, GroupingParams, group, merge_outputs, to_image

__all__ = ["ScaledInputs", "find_people", "grouping_params", "joint_order", "merged_maps", "multi_scale_size",
           "ordered_scales", "resize_align", "scaled_inputs"]


def multi_scale_size(height: int, width: int, input_size: int, current_scale: float,
                     min_scale: float) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """The official ``get_multi_scale_size``: the input size ``(w, h)`` of an image at ``current_scale``, its
    ``center`` (integer pixels) and ``scale`` (``(w, h) / 200`` of the image region the input covers).

    The short side goes to ``input_size * current_scale``, the long side to the multiple of 64 above its
    proportional length, both sized first at ``min_scale`` (rounded up to a multiple of 64) so that every scale's
    input is a whole multiple of the smallest's.
    """
    center = np.array([int(width / 2.0 + 0.5), int(height / 2.0 + 0.5)])
    min_input = int((min_scale * input_size + 63) // 64 * 64)
    short, long = (width, height) if width < height else (height, width)
    short_resized = int(min_input * current_scale / min_scale)
    long_resized = int(int((min_input / short * long + 63) // 64 * 64) * current_scale / min_scale)
    scale_short = short / PIXEL_STD
    scale_long = long_resized / short_resized * short / PIXEL_STD
    if width < height:
        return (short_resized, long_resized), center, np.array([scale_short, scale_long])
    return (long_resized, short_resized), center, np.array([scale_long, scale_short])


def resize_align(image: np.ndarray, input_size: int, current_scale: float,
                 min_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official ``resize_align_multi_scale``: ``image`` (H, W, 3) warped to :func:`multi_scale_size`
    (bilinear, zero border); returns it with its ``center`` and ``scale``."""
    size, center, scale = multi_scale_size(image.shape[0], image.shape[1], input_size, current_scale, min_scale)
    matrix = get_affine_transform(center, scale, 0.0, size)
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, size), center, scale


@dataclass(frozen=True)
class ScaledInputs:
    """One image prepared for the test: ``images`` float32 (3, h, w) ImageNet-normalised, one per scale of
    ``scales`` (largest first, as the official loop); ``center``, ``scale`` and ``base_size`` ``(w, h)`` of the
    scale-1 input, where the merged maps live and from where they map back to the image."""

    images: list[np.ndarray]
    scales: tuple[float, ...]
    center: np.ndarray
    scale: np.ndarray
    base_size: tuple[int, int]


def ordered_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Test scales largest first (the official loop's order), checked: positive, and 1 among several (the
    official multi-scale test takes the tags from scale 1)."""
    ordered = tuple(sorted((float(s) for s in scales), reverse=True))
    if not ordered or min(ordered) <= 0:
        raise ValueError(f"test scales must be positive numbers, got {tuple(scales)}")
    if len(ordered) > 1 and 1.0 not in ordered:
        raise ValueError(f"test scales {ordered} must include 1.0: the official multi-scale test takes the tags from "
                         "scale 1")
    return ordered


def scaled_inputs(image: np.ndarray, input_size: int, scales: Sequence[float] = (1.0,)) -> ScaledInputs:
    """An RGB uint8 (H, W, 3) image resized for every test scale (official ``tools/valid.py``)."""
    scales = ordered_scales(scales)
    base_size, center, scale = multi_scale_size(image.shape[0], image.shape[1], input_size, 1.0, min(scales))
    images = [normalize_image(resize_align(image, input_size, s, min(scales))[0]) for s in scales]
    return ScaledInputs(images, scales, center, scale, base_size)


def joint_order(num_joints: int) -> tuple[int, ...]:
    """The grouping order: the official ``Params.joint_order`` cut to ``num_joints`` (the official code does so
    for CrowdPose's 14 joints, which it keeps a permutation of), else ``0 .. J-1``."""
    order = COCO_JOINT_ORDER[:num_joints]
    return order if sorted(order) == list(range(num_joints)) else tuple(range(num_joints))


def grouping_params(num_joints: int, detection_threshold: float = 0.1, tag_threshold: float = 1.0,
                    max_num_people: int = 30) -> GroupingParams:
    """The official ``Params`` of a HigherHRNet config for ``num_joints`` joints."""
    return GroupingParams(max_num_people=max_num_people, detection_threshold=detection_threshold,
                          tag_threshold=tag_threshold, joint_order=joint_order(num_joints))


@torch.no_grad()
def merged_maps(model: Callable[[Tensor], Sequence[Tensor]], inputs: ScaledInputs, num_joints: int,
                flip_index: Sequence[int] | None = None, device: str | torch.device = "cpu",
                project2image: bool = True) -> tuple[Tensor, Tensor]:
    """Heatmaps ``(J, H, W)`` and tags ``(J, H, W, D)`` (``D = 2`` with flip test), merged over the scales.

    Per scale, the network's outputs (and the mirrored image's, with ``flip_index``) are merged by
    :func:`merge_outputs`; the heatmaps are averaged over the scales, the tags are those of scale 1 (official
    ``aggregate_results``). With ``project2image`` (official ``TEST.PROJECT2IMAGE``, on in the COCO configs)
    every scale's maps are first resized to the scale-1 input size ``inputs.base_size``; without, the maps stay
    at the network's finest output (1/2) of the first (largest) scale, the other scales resized to it, and the
    grouping works on a quarter of the pixels.
    """
    size_hw = (inputs.base_size[1], inputs.base_size[0]) if project2image else None
    heatmaps, tags = None, None
    for s, image in zip(inputs.scales, inputs.images):
        x = torch.from_numpy(image)[None].to(device)
        outputs = [o.float() for o in model(x)]
        flipped = [o.float() for o in model(torch.flip(x, dims=[3]))] if flip_index is not None else None
        maps, scale_tags = merge_outputs(outputs, num_joints, flipped, flip_index, size_hw)
        if heatmaps is not None and maps.shape[2:] != heatmaps.shape[2:]:
            maps = F.interpolate(maps, size=heatmaps.shape[2:], mode="bilinear", align_corners=False)
        heatmaps = maps if heatmaps is None else heatmaps + maps
        if s == 1.0 or len(inputs.scales) == 1:
            tags = scale_tags
    if tags.shape[2:4] != heatmaps.shape[2:]:  # scale 1 was not the first: its tags to the merged size
        b, j, _, _, d = tags.shape
        planes = F.interpolate(tags.permute(0, 1, 4, 2, 3).reshape(b, j * d, *tags.shape[2:4]),
                               size=heatmaps.shape[2:], mode="bilinear", align_corners=False)
        tags = planes.reshape(b, j, d, *heatmaps.shape[2:]).permute(0, 1, 3, 4, 2)
    return heatmaps[0] / len(inputs.scales), tags[0]


def find_people(model: Callable[[Tensor], Sequence[Tensor]], inputs: ScaledInputs, num_joints: int,
                params: GroupingParams, flip_index: Sequence[int] | None = None,
                device: str | torch.device = "cpu", project2image: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The people of one image: keypoints ``(N, J, 3)`` (x, y in image pixels, heatmap value; missing joints
    value 0) and scores ``(N,)`` (the mean joint value, official), from :func:`merged_maps` and
    :func:`~hrnet.tasks.bottomup.grouping.group` (adjust and refine, as the official test)."""
    heatmaps, tags = merged_maps(model, inputs, num_joints, flip_index, device, project2image)
    people, scores = group(heatmaps, tags, params)
    keypoints = to_image(people[:, :, :3], inputs.center, inputs.scale, (heatmaps.shape[2], heatmaps.shape[1]))
    return keypoints.astype(np.float32).reshape(-1, num_joints, 3), scores.astype(np.float32)
