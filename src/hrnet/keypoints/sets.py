"""Keypoint sets as data: joint names, flip pairs, skeleton, OKS sigmas and loss weights.

The official pose code hard-codes these per dataset; here a dataset config names a preset
(``coco``, ``mpii``) or spells out its own set, so custom keypoints need no code change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class KeypointSpec:
    """One keypoint set. Indices are 0-based joint ids."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    joint_weights: tuple[float, ...] = ()
    upper_body_ids: tuple[int, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = self.num_joints
        for attr in ("sigmas", "joint_weights"):
            values = getattr(self, attr)
            if values and len(values) != k:
                raise ValueError(f"KeypointSpec {self.name!r}: {attr} has {len(values)} entries, expected {k}")
        for attr in ("flip_pairs", "skeleton"):
            for a, b in getattr(self, attr):
                if not (0 <= a < k and 0 <= b < k):
                    raise ValueError(f"KeypointSpec {self.name!r}: {attr} entry ({a}, {b}) outside 0..{k - 1}")
        for j in self.upper_body_ids:
            if not 0 <= j < k:
                raise ValueError(f"KeypointSpec {self.name!r}: upper_body_ids entry {j} outside 0..{k - 1}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def flip_index(self) -> list[int]:
        """``flip_index[j]`` is the joint that j becomes in a horizontally mirrored image."""
        index = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    @property
    def weights(self) -> tuple[float, ...]:
        return self.joint_weights or (1.0,) * self.num_joints

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "KeypointSpec":
        """From a config mapping: ``{preset: coco}`` or the fields spelled out."""
        if "preset" in data:
            return get_keypoint_spec(data["preset"])
        pairs = lambda key: tuple(tuple(p) for p in data.get(key, ()))  # noqa: E731
        try:
            return cls(
                name=str(data.get("name", "custom")),
                joint_names=tuple(data["joint_names"]),
                flip_pairs=pairs("flip_pairs"),
                skeleton=pairs("skeleton"),
                sigmas=tuple(float(s) for s in data.get("sigmas", ())),
                joint_weights=tuple(float(w) for w in data.get("joint_weights", ())),
                upper_body_ids=tuple(int(j) for j in data.get("upper_body_ids", ())),
            )
        except KeyError as err:
            raise ValueError(f"keypoint spec: missing field {err.args[0]!r}") from err

    @classmethod
    def from_yaml(cls, path: str | Path) -> "KeypointSpec":
        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f))


COCO_KEYPOINTS = KeypointSpec(
    name="coco",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    # COCO keypoint evaluation's per-joint falloff (pycocotools COCOeval kpt_oks_sigmas).
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    # Loss weights of the official COCO recipe (wrists/ankles 1.5, elbows/knees 1.2).
    joint_weights=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5),
    upper_body_ids=tuple(range(11)),
)

MPII_KEYPOINTS = KeypointSpec(
    name="mpii",
    joint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
        "left_elbow", "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11), (11, 12),
        (12, 7), (7, 13), (13, 14), (14, 15),
    ),
    # MPII has no official OKS sigmas; these are the values mmpose uses for OKS-NMS on MPII.
    sigmas=(0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072,
            0.179, 0.179, 0.072, 0.062),
    joint_weights=(1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.2, 1.0, 1.0, 1.2, 1.5),
    upper_body_ids=(7, 8, 9, 10, 11, 12, 13, 14, 15),
)

KEYPOINT_SPECS: dict[str, KeypointSpec] = {s.name: s for s in (COCO_KEYPOINTS, MPII_KEYPOINTS)}


def get_keypoint_spec(name: str) -> KeypointSpec:
    if name not in KEYPOINT_SPECS:
        raise ValueError(f"unknown keypoint set {name!r}; presets: {sorted(KEYPOINT_SPECS)} (or give the fields)")
    return KEYPOINT_SPECS[name]


def resolve_keypoints(keypoints: str | Mapping[str, Any] | KeypointSpec) -> KeypointSpec:
    """A keypoint set from a preset name (``coco``, ``mpii``), a config mapping, or as is."""
    if isinstance(keypoints, KeypointSpec):
        return keypoints
    if isinstance(keypoints, str):
        return get_keypoint_spec(keypoints)
    return KeypointSpec.from_dict(keypoints)
