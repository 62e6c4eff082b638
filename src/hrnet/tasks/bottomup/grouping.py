"""HigherHRNet decoding and associative-embedding grouping, vectorised.

The official HigherHRNet test post-processing (HRNet/HigherHRNet-Human-Pose-Estimation: ``lib/core/inference.py``
merges the network's outputs, ``lib/core/group.py`` ``HeatmapParser`` groups, ``lib/utils/transforms.py`` /
``get_final_preds`` back-projects), with the same decisions, step by step:

1. :func:`merge_outputs`: one scale's outputs (and the mirrored image's) -> heatmaps ``(B, J, H, W)`` and tags
   ``(B, J, H, W, D)``; ``D = 2`` with flip test.
2. :func:`top_k`: 5x5 max-pool NMS, then the ``k = 30`` best peaks of every joint with their tags.
3. :func:`match_by_tag`: joint by joint in the official order, peaks join people by optimal assignment on
   the tag distance.
4. :func:`adjust`: quarter-pixel shift toward the higher neighbour; :func:`refine`: fill each person's
   missing joints from its mean tag.
5. :func:`to_image`: heatmap pixels -> image pixels.

:func:`group` runs 2-4 on one image. People are ``(N, J, 3 + D)`` float32 arrays: ``x, y, value`` in heatmap
pixels, then the tag the joint was grouped with (zero for joints that :func:`refine` filled, as official); a
missing joint is all zeros. A person's score is the mean of its ``J`` joint values before refinement.

The results are the official ones (``tests/test_bottomup_grouping.py`` compares them with a loop re-statement),
computed with whole-array operations: the official refinement scans every map once per person and joint; here
it skips, exactly, the ``8 x 8`` tiles that cannot hold the maximum (:func:`_best_pixels`). A 512x512 image
with 30 people takes milliseconds instead of a second (``benchmarks/bottomup_postprocess.py``).

One deviation: the official code keys people by their first tag component in a dict, so an unmatched peak
whose first tag value equals an existing person's exactly overwrites that person's joint and tag list; here
every unmatched peak starts its own person. Network outputs practically never repeat a float exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...keypoints.geometry import transform_preds

__all__ = [
    "COCO_JOINT_ORDER", "GroupingParams", "adjust", "group", "match_by_tag", "merge_outputs", "nms", "refine",
    "to_image", "top_k",
]

COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
"""The official ``Params.joint_order`` for COCO: face, shoulders, hips, then elbows, wrists, knees, ankles."""

_TILE = 8  # refine searches the maps in _TILE x _TILE pixel tiles
_CHUNK = 4096  # (query, tile) pairs looked at at once


@dataclass(frozen=True)
class GroupingParams:
    """The official ``Params``, with the values of its COCO HigherHRNet experiments
    (``experiments/coco/higher_hrnet/*.yaml``: detection threshold 0.1, NMS kernel 5; the rest from
    ``lib/config/default.py``). ``max_num_people`` is also the number of peaks taken per joint."""

    max_num_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    nms_kernel: int = 5
    joint_order: tuple[int, ...] = COCO_JOINT_ORDER


# --------------------------------------------------------------------------------------------- outputs
def merge_outputs(outputs: Sequence[Tensor], num_joints: int, flipped: Sequence[Tensor] | None = None,
                  flip_index: Sequence[int] | None = None,
                  size_hw: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """HigherHRNet outputs of one scale -> heatmaps ``(B, J, H, W)`` and tags ``(B, J, H, W, D)``.

    The official ``get_multi_stage_outputs`` + ``aggregate_results`` for the COCO configs
    (``TEST.WITH_HEATMAPS (True, True)``, ``WITH_AE (True, False)``, one scale): every output is resized
    bilinearly to the last (finest) one, the heatmaps of all outputs are averaged, the tags come from the
    first. ``flipped`` are the outputs for the mirrored image: mirrored back, joints swapped by
    ``flip_index``, heatmaps averaged with the plain pass, tags stacked as the second tag dimension.
    ``size_hw`` resizes both to that size (official ``TEST.PROJECT2IMAGE``). The tags are a view of
    ``(B, J, D, H, W)`` memory, so that :func:`group` reads each tag dimension's maps without a copy.
    """
    heatmaps, tags = _one_pass(outputs, num_joints)
    tag_list = [tags]
    if flipped is not None:
        if flip_index is None:
            raise ValueError("merge_outputs: flipped outputs need flip_index")
        index = torch.as_tensor(list(flip_index), device=heatmaps.device)
        flip_heatmaps, flip_tags = _one_pass(flipped, num_joints, mirror=True)
        heatmaps = (heatmaps + flip_heatmaps[:, index]) / 2.0
        tag_list.append(flip_tags[:, index] if flip_tags.shape[1] == num_joints else flip_tags)
    tags = torch.stack(tag_list, dim=2)  # (B, J, D, h, w)
    if size_hw is not None:  # official order: averaged heatmaps and every pass's tags projected
        heatmaps = F.interpolate(heatmaps, size=size_hw, mode="bilinear", align_corners=False)
        b, j, d = tags.shape[:3]
        tags = F.interpolate(tags.reshape(b, j * d, *tags.shape[3:]), size=size_hw, mode="bilinear",
                             align_corners=False).reshape(b, j, d, *size_hw)
    return heatmaps, tags.permute(0, 1, 3, 4, 2)


def _one_pass(outputs: Sequence[Tensor], num_joints: int, mirror: bool = False) -> tuple[Tensor, Tensor]:
    """One forward pass: (averaged heatmaps, first output's tags) at the finest output's size, mirrored back
    when ``mirror``."""
    size = outputs[-1].shape[2:]
    resized = [o if i == len(outputs) - 1 else F.interpolate(o, size=size, mode="bilinear", align_corners=False)
               for i, o in enumerate(outputs)]
    if mirror:
        resized = [o.flip(3) for o in resized]
    heatmaps = sum(o[:, :num_joints] for o in resized) / len(resized)
    return heatmaps, resized[0][:, num_joints:]


# ---------------------------------------------------------------------------------------------- peaks
def nms(heatmaps: np.ndarray, kernel: int = 5) -> np.ndarray:
    """Zero every pixel below the maximum of its ``kernel x kernel`` neighbourhood, ``(..., H, W)`` float32
    (official ``HeatmapParser.nms``: a stride-1 max-pool, here OpenCV's dilation, the same maximum; all pixels
    of a plateau survive)."""
    if kernel % 2 != 1:
        raise ValueError(f"nms: kernel must be odd, got {kernel}")
    maps = np.ascontiguousarray(heatmaps, dtype=np.float32).reshape(-1, *heatmaps.shape[-2:])
    footprint = np.ones((kernel, kernel), np.uint8)
    pooled = np.empty_like(maps)
    for m, out in zip(maps, pooled):
        cv2.dilate(m, footprint, dst=out)
    return np.multiply(maps, pooled == maps, out=pooled).reshape(heatmaps.shape)


def top_k(heatmaps: np.ndarray, tags: np.ndarray, k: int = 30, nms_kernel: int = 5,
          threshold: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` highest peaks of every joint after :func:`nms` (official ``HeatmapParser.top_k``).

    With a ``threshold`` only the peaks above it are looked at: :func:`group` passes the detection
    threshold, below which :func:`match_by_tag` drops peaks anyway, so the grouping is the same and the search
    short. Equal values are ranked by row-major pixel index (``torch.topk`` leaves their order open).

    Args:
        heatmaps: ``(J, H, W)`` float32.
        tags: ``(J, H, W, D)`` float32.
    Returns:
        tags ``(J, k, D)``, locations ``(J, k, 2)`` as integer ``(x, y)``, values ``(J, k)``, best first;
        slots beyond a joint's peaks above ``threshold`` hold value ``-inf`` at pixel 0.
    """
    num_joints, height, width = heatmaps.shape
    kept = nms(heatmaps, nms_kernel).reshape(num_joints, -1)
    if threshold is None:  # at least the k best of each joint: all pixels from its k-th value up
        limit = np.partition(kept, -k, axis=1)[:, -k] if k < kept.shape[1] else kept.min(axis=1)
        chosen = np.flatnonzero(kept >= limit[:, None])
    else:
        chosen = np.flatnonzero(kept > threshold)
    flat = kept.reshape(-1)
    joint, pixel = np.divmod(chosen, height * width)
    order = np.lexsort((pixel, -flat[chosen], joint))  # by joint, value (descending), pixel
    joint, pixel, value = joint[order], pixel[order], flat[chosen[order]]
    rank = np.arange(len(joint)) - np.searchsorted(joint, joint)
    keep = rank < k
    values = np.full((num_joints, k), -np.inf, np.float32)
    index = np.zeros((num_joints, k), np.int64)
    values[joint[keep], rank[keep]], index[joint[keep], rank[keep]] = value[keep], pixel[keep]
    tag_k = np.take_along_axis(tags.reshape(num_joints, height * width, -1), index[..., None], axis=1)
    return tag_k, np.stack((index % width, index // width), axis=2), values


# ------------------------------------------------------------------------------------------- grouping
def match_by_tag(tag_k: np.ndarray, loc_k: np.ndarray, val_k: np.ndarray,
                 params: GroupingParams = GroupingParams()) -> np.ndarray:
    """Group the peaks of :func:`top_k` into people (official ``match_by_tag``).

    Joints are visited in ``params.joint_order``. The peaks above ``detection_threshold`` of the first joint
    that has any each start a person; the peaks of every later joint are assigned to the first
    ``max_num_people`` people (:func:`_assign`) and join the assigned person when their tag is closer than
    ``tag_threshold`` to its mean tag (the mean of the tags it was grouped with), else start a person.
    Returns ``(N, J, 3 + D)`` float32 (``x, y, value, tag``), people in order of creation.
    """
    num_joints, k, dim = tag_k.shape
    if sorted(params.joint_order) != list(range(num_joints)):
        raise ValueError(f"joint_order {params.joint_order} is not an order of {num_joints} joints")
    peaks = np.concatenate((loc_k, val_k[..., None], tag_k), axis=2).astype(np.float64)
    people = np.zeros((num_joints * k, num_joints, 3 + dim))
    tag_sums = np.zeros((num_joints * k, dim), np.float32)  # float32, as the official np.mean of float32 tags
    counts = np.zeros(num_joints * k, np.int64)
    n = 0
    for joint in params.joint_order:
        keep = peaks[joint, :, 2] > params.detection_threshold
        if not keep.any():
            continue
        grouped = min(n, params.max_num_people)
        if n > 0 and params.ignore_too_much and grouped == params.max_num_people:
            continue
        means = (tag_sums[:grouped] / counts[:grouped, None]).astype(np.float32)
        target = _assign(peaks[joint, keep], means, params)
        new = np.flatnonzero(target < 0)
        target[new] = n + np.arange(len(new))
        n += len(new)
        people[target, joint] = peaks[joint, keep]
        tag_sums[target] += tag_k[joint, keep]
        counts[target] += 1
    return people[:n].astype(np.float32)


def _assign(peaks: np.ndarray, means: np.ndarray, params: GroupingParams) -> np.ndarray:
    """The person (row of ``means``) each peak ``(x, y, value, tag...)`` joins, -1 for a new one.

    The official cost ``round(distance) * 100 - value`` (``use_detection_val``, else the distance), padded
    with ``1e10`` columns to square when peaks outnumber people, solved by Munkres there and by
    ``scipy.optimize.linear_sum_assignment`` here (both optimal; equal-cost optima may differ). An assigned
    pair holds when its distance is below ``tag_threshold``.
    """
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as err:
        raise ImportError("bottom-up grouping needs scipy (pip install scipy)") from err
    target = np.full(len(peaks), -1, dtype=np.int64)
    if len(means) == 0:
        return target
    dist = np.linalg.norm(peaks[:, None, 3:] - means[None], ord=2, axis=2)
    cost = np.round(dist) * 100 - peaks[:, 2:3] if params.use_detection_val else dist
    if len(peaks) > len(means):
        cost = np.concatenate((cost, np.full((len(peaks), len(peaks) - len(means)), 1e10)), axis=1)
    rows, cols = linear_sum_assignment(cost)
    ok = cols < len(means)
    ok[ok] = dist[rows[ok], cols[ok]] < params.tag_threshold
    target[rows[ok]] = cols[ok]
    return target


# ----------------------------------------------------------------------------------- adjust / refine
def adjust(people: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Move every found joint (value > 0) to its pixel centre plus a quarter pixel toward the higher of its
    two neighbours in x and in y, toward the lower one on a tie (official ``HeatmapParser.adjust``;
    neighbours clamped at the border). ``heatmaps``: ``(J, H, W)``. Returns a copy."""
    out = people.copy()
    p, j = np.nonzero(people[:, :, 2] > 0)
    x, y = _quarter_offset(heatmaps, j, people[p, j, 0].astype(np.int64), people[p, j, 1].astype(np.int64))
    out[p, j, 0], out[p, j, 1] = x, y
    return out


def _quarter_offset(heatmaps: np.ndarray, j: np.ndarray, x: np.ndarray,
                    y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(x, y)`` of maps ``j`` -> ``(x + 0.5 +- 0.25, y + 0.5 +- 0.25)``, + toward the higher neighbour."""
    _, height, width = heatmaps.shape
    right = heatmaps[j, y, np.minimum(x + 1, width - 1)] > heatmaps[j, y, np.maximum(x - 1, 0)]
    down = heatmaps[j, np.minimum(y + 1, height - 1), x] > heatmaps[j, np.maximum(y - 1, 0), x]
    return x + 0.5 + np.where(right, 0.25, -0.25), y + 0.5 + np.where(down, 0.25, -0.25)


def refine(people: np.ndarray, heatmaps: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Fill every person's missing joints (value 0) from its mean tag (official ``HeatmapParser.refine``).

    The person's tag is the mean of the tag maps at its found joints (value > 0; pixel ``int(x), int(y)``).
    For a missing joint j the pixel maximising ``heatmaps[j] - round(||tags[j] - person tag||)`` (the first
    in row-major order on ties) is taken when its heatmap value is > 0, placed as :func:`adjust` places
    joints. ``heatmaps`` ``(J, H, W)``, ``tags`` ``(J, H, W, D)`` float32 (any strides). Returns a copy;
    filled joints keep a zero tag.
    """
    out = people.copy()
    found = people[:, :, 2] > 0
    p, j = np.nonzero(found)
    tag_sums = np.zeros((len(people), tags.shape[3]), np.float32)
    np.add.at(tag_sums, p, tags[j, people[p, j, 1].astype(np.int64), people[p, j, 0].astype(np.int64)])
    counts = found.sum(axis=1)
    person_tags = (tag_sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    mp, mj = np.nonzero((people[:, :, 2] == 0) & (counts > 0)[:, None])
    y, x = np.divmod(_best_pixels(heatmaps, tags, mj, person_tags[mp]), heatmaps.shape[2])
    value = heatmaps[mj, y, x]
    fill = value > 0
    qx, qy = _quarter_offset(heatmaps, mj, x, y)
    out[mp[fill], mj[fill], 0], out[mp[fill], mj[fill], 1] = qx[fill], qy[fill]
    out[mp[fill], mj[fill], 2] = value[fill]
    return out


def _best_pixels(heatmaps: np.ndarray, tags: np.ndarray, joint: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row-major index of the first maximum of ``heatmaps[j] - round(||tags[j] - q||)`` for every pair ``(j, q)``.

    Exact without scoring every pixel. Per ``_TILE x _TILE`` tile: no pixel scores above its top heatmap value
    minus the rounded distance from ``q`` to the box of the tile's tags (bit for bit: float32 rounding is
    monotone and the sums run in :func:`_score`'s order), and its top pixel attains a score. So the best score
    is at least the best top pixel's, and every pixel attaining it (ties included) lies in a tile whose bound
    reaches that: only those tiles are scored whole.
    """
    if len(joint) == 0:
        return np.zeros(0, np.int64)
    tiles = _Tiles(heatmaps, tags)
    attained = _score(tiles.top[joint], list(tiles.top_tags[joint].transpose(1, 0, 2)), query).max(axis=1)
    square = None
    for d in range(tiles.dim):
        q = query[:, d, None]
        low, high = tiles.low[joint, d], tiles.high[joint, d]
        gap = np.maximum(np.maximum(low - q, q - high), np.float32(0)) ** 2
        square = gap if square is None else square + gap
    bound = tiles.top[joint] - np.round(np.sqrt(square))
    pair, tile = np.nonzero(bound >= attained[:, None])
    values, index = _tile_best(tiles, heatmaps.shape[2], joint[pair], query[pair], tile)
    ids, _, first = _first_max(pair, values, index)
    best = np.zeros(len(joint), np.int64)  # only non-finite maps leave a pair without a tile
    best[ids] = first
    return best


def _score(det: np.ndarray, planes: Sequence[np.ndarray], query: np.ndarray) -> np.ndarray:
    """``det - round(||tag - query||)`` for tags split into per-dimension ``planes`` shaped as ``det`` ``(n, m)``
    and ``query`` ``(n, D)`` (one row per row of ``det``): the official float32 operations in the official order
    (the same bits for ``D <= 2``; numpy may add up longer tag vectors in another order)."""
    square = (planes[0] - query[:, 0, None]) ** 2
    for d in range(1, len(planes)):
        square = square + (planes[d] - query[:, d, None]) ** 2
    return det - np.round(np.sqrt(square))


def _first_max(group: np.ndarray, values: np.ndarray,
               index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run of equal ``group`` ids (sorted): the id, the largest value and, among its ties, the smallest
    index."""
    if len(group) == 0:
        return group, values, index
    new = np.r_[True, group[1:] != group[:-1]]
    starts = np.flatnonzero(new)
    best = np.maximum.reduceat(values, starts)
    ties = np.where(values == best[np.cumsum(new) - 1], index, np.iinfo(np.int64).max)
    return group[starts], best, np.minimum.reduceat(ties, starts)


class _Tiles:
    """Maps ``(J, H, W)`` and tags ``(J, H, W, D)`` cut into ``_TILE x _TILE`` tiles, ``T`` of them per map
    (padded to whole tiles: heatmaps with ``-inf``, never the maximum; tags with their border values).

    ``det`` ``(J, T, _TILE**2)`` the heatmap pixels of every tile (row-major inside it), ``tags`` ``(J, D, H', W')``
    (no copy when ``tags`` is a view of such memory, as :func:`merge_outputs` makes it); per tile ``top``
    ``(J, T)`` its top heatmap value, ``top_tags`` ``(J, D, T)`` that pixel's tags and ``low`` / ``high``
    ``(J, D, T)`` the box of the tile's tags.
    """

    def __init__(self, heatmaps: np.ndarray, tags: np.ndarray) -> None:
        num_joints, height, width = heatmaps.shape
        self.dim = tags.shape[3]
        pad = ((0, 0), (0, -height % _TILE), (0, -width % _TILE))
        planes = np.ascontiguousarray(tags.transpose(0, 3, 1, 2))
        if pad[1][1] or pad[2][1]:
            heatmaps = np.pad(heatmaps, pad, constant_values=-np.inf)
            planes = np.pad(planes, ((0, 0), (0, 0), *pad[1:]), mode="edge")
        s, (self.height, self.width) = _TILE, heatmaps.shape[1:]
        self.tiles_wide = self.width // s
        self.tags = planes
        self.det = heatmaps.reshape(num_joints, self.height // s, s, self.tiles_wide, s).transpose(
            0, 1, 3, 2, 4).reshape(num_joints, -1, s * s)
        arg = self.det.argmax(axis=2)
        self.top = self.det.reshape(-1, s * s)[np.arange(arg.size), arg.ravel()].reshape(arg.shape)
        top_pixel = self.tile_start(np.arange(arg.shape[1])) + (arg // s) * self.width + arg % s
        self.top_tags = self.tag_values(np.arange(num_joints)[:, None, None], np.arange(self.dim)[:, None],
                                        top_pixel[:, None, :])
        boxes = planes.reshape(num_joints * self.dim, self.height, self.width)
        self.low = _tile_reduce(boxes, np.minimum).reshape(num_joints, self.dim, -1)
        self.high = _tile_reduce(boxes, np.maximum).reshape(num_joints, self.dim, -1)

    def tag_values(self, joint: np.ndarray, dim: np.ndarray | int, pixel: np.ndarray) -> np.ndarray:
        """The tags of dimension ``dim`` at row-major ``pixel`` of map ``joint`` (padded maps), broadcast."""
        return self.tags.reshape(-1).take((joint * self.dim + dim) * self.height * self.width + pixel)

    def tile_start(self, tile: np.ndarray) -> np.ndarray:
        """Row-major index in the padded map of each tile's first pixel."""
        return (tile // self.tiles_wide) * _TILE * self.width + (tile % self.tiles_wide) * _TILE


def _tile_reduce(maps: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op`` (``np.maximum`` / ``np.minimum``) over every ``_TILE x _TILE`` tile of contiguous ``(N, H', W')``
    maps -> ``(N, H' / _TILE, W' / _TILE)``: over each tile's rows first, then over every ``_TILE``-th column."""
    num_maps, height, width = maps.shape
    rows = op.reduce(maps.reshape(num_maps, height // _TILE, _TILE, width), axis=2)
    out = rows[..., 0::_TILE].copy()
    for i in range(1, _TILE):
        op(out, rows[..., i::_TILE], out=out)
    return out


def _tile_best(tiles: _Tiles, width: int, joint: np.ndarray, query: np.ndarray,
               tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best ``_score`` in tile ``tile`` (row-major tile number) of map ``joint`` for ``query``, and its
    row-major index in the unpadded ``width`` map (the first on ties), per entry; ``_CHUNK`` at a time."""
    s = _TILE
    pixels = (np.arange(s)[:, None] * tiles.width + np.arange(s)).ravel()  # a tile's pixels, row-major
    values, index = np.empty(len(joint), np.float32), np.empty(len(joint), np.int64)
    for start in range(0, len(joint), _CHUNK):
        part = slice(start, start + _CHUNK)
        j, t = joint[part], tile[part]
        flat = tiles.tile_start(t)[:, None] + pixels
        planes = [tiles.tag_values(j[:, None], d, flat) for d in range(tiles.dim)]
        scores = _score(tiles.det[j, t], planes, query[part])
        arg = scores.argmax(axis=1)  # row-major inside the tile: the first maximum has the smallest index
        rows = np.arange(len(arg))
        values[part], best = scores[rows, arg], flat[rows, arg]
        index[part] = (best // tiles.width) * width + best % tiles.width
    return values, index


# ------------------------------------------------------------------------------------------ entry points
def group(heatmaps: Tensor, tags: Tensor, params: GroupingParams = GroupingParams(), adjust_joints: bool = True,
          refine_joints: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode and group one image (official ``HeatmapParser.parse``).

    Args:
        heatmaps: ``(J, H, W)``.
        tags: ``(J, H, W, D)`` or ``(J, H, W)`` (``D = 1``); one map for all joints (``(1, H, W[, D])``,
            no tag per joint) is shared by all.
    Returns:
        people ``(N, J, 3 + D)`` (``x, y, value, tag`` in heatmap pixels) and their scores ``(N,)``: the mean
        joint value after :func:`adjust`, before :func:`refine`, as official.
    """
    det = np.ascontiguousarray(heatmaps.detach().float().cpu().numpy())
    tag = tags.detach().float().cpu().numpy()
    tag = tag[..., None] if tag.ndim == 3 else tag
    tag = np.broadcast_to(tag, (det.shape[0], *tag.shape[1:]))  # a view: refine reads the maps in place
    peaks = top_k(det, tag, params.max_num_people, params.nms_kernel, params.detection_threshold)
    people = match_by_tag(*peaks, params)
    if adjust_joints:
        people = adjust(people, det)
    scores = people[:, :, 2].mean(axis=1)
    if refine_joints:
        people = refine(people, det, tag)
    return people, scores


def to_image(people: np.ndarray, center: Sequence[float], scale: Sequence[float],
             heatmap_size_wh: Sequence[int]) -> np.ndarray:
    """Heatmap-pixel people ``(N, J, C)`` -> image pixels (official ``get_final_preds`` / ``transform_preds``:
    the inverse of the resize affine with ``center``, ``scale`` (of ``pixel_std`` 200, width used) and the
    heatmap size ``(W, H)``). Other columns pass through; float64."""
    people = np.asarray(people)
    if people.size == 0:
        return people.astype(np.float64)
    return transform_preds(people, center, scale, heatmap_size_wh)
