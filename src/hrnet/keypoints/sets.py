"""Keypoint sets as data: joint names, flip pairs, skeleton, OKS sigmas and loss weights.

The official pose code hard-codes these per dataset; here a dataset config names a preset (``coco``,
``mpii``, ``crowdpose``; faces ``wflw``, ``300w``, ``cofw``, ``aflw``) or spells out its own set, so custom
keypoints need no code change.
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
    def from_dict(cls, data: Mapping[str, Any]) -> KeypointSpec:
        """From a config mapping: ``{preset: coco}`` or the fields spelled out (``extra``: e.g. a face set's
        ``{interocular: [a, b]}``, the NME normaliser)."""
        if "preset" in data:
            return get_keypoint_spec(data["preset"])
        pairs = lambda key: tuple(tuple(p) for p in data.get(key, ()))
        try:
            return cls(
                name=str(data.get("name", "custom")),
                joint_names=tuple(data["joint_names"]),
                flip_pairs=pairs("flip_pairs"),
                skeleton=pairs("skeleton"),
                sigmas=tuple(float(s) for s in data.get("sigmas", ())),
                joint_weights=tuple(float(w) for w in data.get("joint_weights", ())),
                upper_body_ids=tuple(int(j) for j in data.get("upper_body_ids", ())),
                extra=dict(data.get("extra", {})),
            )
        except KeyError as err:
            raise ValueError(f"keypoint spec: missing field {err.args[0]!r}") from err

    @classmethod
    def from_yaml(cls, path: str | Path) -> KeypointSpec:
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

# CrowdPose (Li et al., CVPR 2019): 14 joints in the order of its JSON files. The flip pairs are those of the
# official HigherHRNet ``FLIP_CONFIG['CROWDPOSE']`` (lib/dataset/transforms/build.py); the sigmas are
# crowdposetools' (COCO's body values, head top and neck 0.079).
CROWDPOSE_KEYPOINTS = KeypointSpec(
    name="crowdpose",
    joint_names=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "top_head", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
        (12, 13), (1, 13), (0, 13),
    ),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
)


# ------------------------------------------------------------------------------------------------ faces
# The four face sets of the HRNet face application (official HRNet-Facial-Landmark-Detection). Their flip
# pairs are the official ``lib/utils/transforms.py`` MATCHED_PARTS made 0-based (that file lists 300W, AFLW and
# COFW 1-based, WFLW 0-based) and agree pair for pair with mmpose's ``configs/_base_/datasets/*.py`` swaps.
# (Until Aug 2019 the official ``fliplr_joints`` tested ``dataset == 'wflw'`` while callers passed ``'WFLW'``,
# so it read WFLW's 0-based pairs as 1-based and swapped the wrong points; the pairs themselves were right.)
# Names are by facial part; ``right``/``left`` are the subject's, as in COCO (``right_*`` lie on the image's
# left in a frontal face). ``extra`` names the normaliser of the official NME (``lib/core/evaluation.py``
# ``compute_nme``): ``interocular`` = the landmark pair whose distance divides the error, ``box_size`` = the
# per-face value from the annotation (AFLW). 300W's ``pupils`` (eye-ring centres) is the inter-pupil variant
# some papers report.
def _parts(*parts: tuple[str, int]) -> tuple[str, ...]:
    """Joint names ``part_0 .. part_{n-1}`` for each ``(part, n)`` in order; a single point keeps the name."""
    return tuple(name if n == 1 else f"{name}_{i}" for name, n in parts for i in range(n))


def _chain(first: int, last: int, closed: bool = False) -> tuple[tuple[int, int], ...]:
    """Skeleton segments ``first - first+1 - ... - last`` (and back to ``first`` when ``closed``)."""
    segments = tuple((i, i + 1) for i in range(first, last))
    return segments + ((last, first),) if closed else segments


# WFLW (98): contour 0-32 (chin 16), brows 33-41 / 42-50 (closed: upper edge then lower), nose bridge 51-54,
# nose base 55-59, eyes 60-67 / 68-75 (from the image-left corner over the top), outer lip 76-87, inner lip
# 88-95, pupils 96 / 97.
WFLW_KEYPOINTS = KeypointSpec(
    name="wflw",
    joint_names=_parts(("contour", 33), ("right_brow", 9), ("left_brow", 9), ("nose_bridge", 4),
                       ("nose_base", 5), ("right_eye", 8), ("left_eye", 8), ("outer_lip", 12),
                       ("inner_lip", 8), ("right_pupil", 1), ("left_pupil", 1)),
    flip_pairs=(
        *((i, 32 - i) for i in range(16)),
        (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),
        (55, 59), (56, 58),
        (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),
        (76, 82), (77, 81), (78, 80), (83, 87), (84, 86),
        (88, 92), (89, 91), (93, 95),
        (96, 97),
    ),
    skeleton=(_chain(0, 32) + _chain(33, 41, True) + _chain(42, 50, True) + _chain(51, 54) + _chain(55, 59)
              + _chain(60, 67, True) + _chain(68, 75, True) + _chain(76, 87, True) + _chain(88, 95, True)),
    extra={"interocular": (60, 72)},  # outer eye corners
)

# 300W (68, the iBUG mark-up): contour 0-16 (chin 8), brows 17-21 / 22-26, nose bridge 27-30, nose base 31-35,
# eyes 36-41 / 42-47, outer lip 48-59, inner lip 60-67.
FACE300W_KEYPOINTS = KeypointSpec(
    name="300w",
    joint_names=_parts(("contour", 17), ("right_brow", 5), ("left_brow", 5), ("nose_bridge", 4),
                       ("nose_base", 5), ("right_eye", 6), ("left_eye", 6), ("outer_lip", 12), ("inner_lip", 8)),
    flip_pairs=(
        *((i, 16 - i) for i in range(8)),
        (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
        (31, 35), (32, 34),
        (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
        (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),
        (60, 64), (61, 63), (65, 67),
    ),
    skeleton=(_chain(0, 16) + _chain(17, 21) + _chain(22, 26) + _chain(27, 30) + _chain(31, 35)
              + _chain(36, 41, True) + _chain(42, 47, True) + _chain(48, 59, True) + _chain(60, 67, True)),
    extra={"interocular": (36, 45), "pupils": ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))},
)

# COFW (29, the LFPW-derived mark-up of Burgos-Artizzu et al.): mostly right/left pairs in turn.
COFW_KEYPOINTS = KeypointSpec(
    name="cofw",
    joint_names=(
        "right_brow_outer", "left_brow_outer", "right_brow_inner", "left_brow_inner",
        "right_brow_top", "right_brow_bottom", "left_brow_top", "left_brow_bottom",
        "right_eye_outer", "left_eye_outer", "right_eye_inner", "left_eye_inner",
        "right_eye_top", "right_eye_bottom", "left_eye_top", "left_eye_bottom",
        "right_pupil", "left_pupil", "right_nostril", "left_nostril", "nose_tip", "nose_base",
        "right_mouth_corner", "left_mouth_corner", "upper_lip_top", "upper_lip_bottom",
        "lower_lip_top", "lower_lip_bottom", "chin",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19),
                (22, 23)),
    skeleton=(
        (0, 4), (4, 2), (2, 5), (5, 0), (1, 6), (6, 3), (3, 7), (7, 1),  # brows
        (8, 12), (12, 10), (10, 13), (13, 8), (9, 14), (14, 11), (11, 15), (15, 9),  # eyes
        (18, 21), (21, 19), (20, 21),  # nose
        (22, 24), (24, 23), (23, 27), (27, 22), (22, 25), (25, 23), (23, 26), (26, 22),  # lips
    ),
    extra={"interocular": (8, 9)},  # outer eye corners
)

# AFLW (19: the 21-point mark-up without the ears): brows 0-5, eyes 6-11, nose 12-14, mouth 15-17, chin 18.
AFLW_KEYPOINTS = KeypointSpec(
    name="aflw",
    joint_names=(
        "right_brow_outer", "right_brow_center", "right_brow_inner",
        "left_brow_inner", "left_brow_center", "left_brow_outer",
        "right_eye_outer", "right_eye_center", "right_eye_inner",
        "left_eye_inner", "left_eye_center", "left_eye_outer",
        "right_nostril", "nose_tip", "left_nostril",
        "right_mouth_corner", "mouth_center", "left_mouth_corner", "chin",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)),
    skeleton=((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13), (13, 14),
              (15, 16), (16, 17)),
    extra={"normalizer": "box_size"},  # the annotation's face box size, per face
)

KEYPOINT_SPECS: dict[str, KeypointSpec] = {
    s.name: s for s in (COCO_KEYPOINTS, MPII_KEYPOINTS, CROWDPOSE_KEYPOINTS, WFLW_KEYPOINTS, FACE300W_KEYPOINTS,
                        COFW_KEYPOINTS, AFLW_KEYPOINTS)
}


def get_keypoint_spec(name: str) -> KeypointSpec:
    if name not in KEYPOINT_SPECS:
        raise ValueError(f"unknown keypoint set {name!r}; presets: {sorted(KEYPOINT_SPECS)} (or give the fields)")
    return KEYPOINT_SPECS[name]


def resolve_keypoints(keypoints: str | Mapping[str, Any] | KeypointSpec) -> KeypointSpec:
    """A keypoint set from a preset name (``coco``, ``mpii``, ``crowdpose`` ...), a config mapping, or as is."""
    if isinstance(keypoints, KeypointSpec):
        return keypoints
    if isinstance(keypoints, str):
        return get_keypoint_spec(keypoints)
    return KeypointSpec.from_dict(keypoints)
