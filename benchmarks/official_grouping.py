"""The official HigherHRNet grouping restated plainly, to check and time :mod:`hrnet.tasks.bottomup.grouping`.

Written from the associative embedding papers (Newell et al. 2017; Cheng et al., CVPR 2020) and what the
official ``lib/core/group.py`` ``HeatmapParser.parse`` does, in the same shape: joint by joint, person by
person, every map scanned whole. It keeps the official bookkeeping as well: people live in a dict keyed by
the first tag value of the peak that started them. Not part of the package; ``tests/test_bottomup_grouping.py``
and ``benchmarks/bottomup_postprocess.py`` import it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

ORDER = [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16]


def peaks(heatmaps: torch.Tensor, tags: torch.Tensor, k: int, kernel: int):
    """Non-maximum suppression by a stride-1 max-pool, then the k best pixels of each joint map."""
    num_joints, height, width = heatmaps.shape
    pooled = F.max_pool2d(heatmaps[None], kernel, 1, (kernel - 1) // 2)[0]
    kept = heatmaps * (pooled == heatmaps).float()
    values, index = kept.reshape(num_joints, -1).topk(k, dim=1)
    flat_tags = tags.reshape(num_joints, height * width, -1)
    found = []
    for j in range(num_joints):
        row = []
        for v, i in zip(values[j].tolist(), index[j].tolist()):
            row.append((i % width, i // width, v, flat_tags[j, i].numpy()))
        found.append(row)
    return found


def match(found, num_joints: int, dim: int, order=ORDER, max_people: int = 30, det_thr: float = 0.1,
          tag_thr: float = 1.0, use_val: bool = True, ignore_too_much: bool = False) -> list[np.ndarray]:
    """Visit joints in ``order``; every peak above ``det_thr`` either joins the person the optimal assignment
    gives it (cost: rounded tag distance * 100 minus the peak value; extra peaks against 1e10 dummy people)
    if its tag is within ``tag_thr`` of that person's mean tag, or starts a person."""
    people: dict[float, np.ndarray] = {}
    person_tags: dict[float, list[np.ndarray]] = {}

    def start(peak, joint):
        key = float(peak[3][0])
        people.setdefault(key, np.zeros((num_joints, 3 + dim)))[joint] = np.r_[peak[0], peak[1], peak[2], peak[3]]
        person_tags[key] = [peak[3]]

    for joint in order:
        cands = [p for p in found[joint] if p[2] > det_thr]
        if not cands:
            continue
        if not people:
            for peak in cands:
                start(peak, joint)
            continue
        keys = list(people)[:max_people]
        if ignore_too_much and len(keys) == max_people:
            continue
        means = [np.mean(person_tags[key], axis=0) for key in keys]
        size = max(len(cands), len(keys))
        cost = np.full((len(cands), size), 1e10)
        dist = np.zeros((len(cands), len(keys)))
        for r, peak in enumerate(cands):
            for c, mean in enumerate(means):
                dist[r, c] = np.sqrt(((peak[3].astype(np.float64) - mean) ** 2).sum())
                cost[r, c] = np.round(dist[r, c]) * 100 - peak[2] if use_val else dist[r, c]
        for r, c in zip(*linear_sum_assignment(cost)):
            if c < len(keys) and dist[r, c] < tag_thr:
                people[keys[c]][joint] = np.r_[cands[r][0], cands[r][1], cands[r][2], cands[r][3]]
                person_tags[keys[c]].append(cands[r][3])
            else:
                start(cands[r], joint)
    return [people[key].astype(np.float32) for key in people]


def shift(heatmap: np.ndarray, x: int, y: int) -> tuple[float, float]:
    """Pixel centre plus a quarter pixel toward the higher neighbour along each axis (lower one on a tie)."""
    height, width = heatmap.shape
    fx = x + 0.5 + (0.25 if heatmap[y, min(x + 1, width - 1)] > heatmap[y, max(x - 1, 0)] else -0.25)
    fy = y + 0.5 + (0.25 if heatmap[min(y + 1, height - 1), x] > heatmap[max(y - 1, 0), x] else -0.25)
    return fx, fy


def fill_missing(person: np.ndarray, heatmaps: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """For every joint, the pixel maximising heatmap - rounded distance to the person's mean tag (as the
    official code, for found joints too); a joint with value 0 takes it when the heatmap is positive there."""
    own = [tags[j, int(person[j, 1]), int(person[j, 0])] for j in range(len(person)) if person[j, 2] > 0]
    mean = np.mean(own, axis=0)
    best = []
    for j in range(len(person)):
        distance = ((tags[j] - mean[None, None, :]) ** 2).sum(axis=2) ** 0.5
        y, x = np.unravel_index(np.argmax(heatmaps[j] - np.round(distance)), heatmaps[j].shape)
        best.append((*shift(heatmaps[j], int(x), int(y)), heatmaps[j, y, x]))
    person = person.copy()
    for j, (x, y, value) in enumerate(best):
        if value > 0 and person[j, 2] == 0:
            person[j, :3] = x, y, value
    return person


def parse(heatmaps: torch.Tensor, tags: torch.Tensor, order=ORDER, max_people: int = 30, det_thr: float = 0.1,
          kernel: int = 5, adjust: bool = True, refine: bool = True, **options) -> tuple[list[np.ndarray], list[float]]:
    """One image: ``heatmaps (J, H, W)``, ``tags (J, H, W, D)`` -> people ``(J, 3 + D)`` and scores;
    ``options``: the rest of :func:`match`'s."""
    num_joints, dim = heatmaps.shape[0], tags.shape[3]
    people = match(peaks(heatmaps, tags, max_people, kernel), num_joints, dim, order, max_people, det_thr, **options)
    det, tag = heatmaps.numpy(), tags.numpy()
    if adjust:
        for person in people:
            for j in range(num_joints):
                if person[j, 2] > 0:
                    person[j, 0], person[j, 1] = shift(det[j], int(person[j, 0]), int(person[j, 1]))
    scores = [float(person[:, 2].mean()) for person in people]
    if refine:
        people = [fill_missing(person, det, tag) for person in people]
    return people, scores
