"""Skeletons drawn on images."""

from __future__ import annotations

import cv2
import numpy as np

from .sets import KeypointSpec


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, spec: KeypointSpec, threshold: float = 0.2,
                  radius: int = 3, thickness: int = 2) -> np.ndarray:
    """Draw one person's (K, 3) [x, y, confidence] keypoints on an RGB uint8 image (in place, returned).

    Left joints/limbs are orange, right ones blue, the rest green; joints below ``threshold`` are skipped.
    """
    names = spec.joint_names
    side = ["left" if n.startswith("left") else "right" if n.startswith("right") else "mid" for n in names]
    colour = {"left": (255, 128, 0), "right": (0, 128, 255), "mid": (0, 200, 0)}
    ok = keypoints[:, 2] >= threshold
    for a, b in spec.skeleton:
        if ok[a] and ok[b]:
            limb = side[a] if side[a] == side[b] else "mid"
            pa, pb = tuple(int(round(v)) for v in keypoints[a, :2]), tuple(int(round(v)) for v in keypoints[b, :2])
            cv2.line(image, pa, pb, colour[limb], thickness, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(image, tuple(int(round(v)) for v in keypoints[j, :2]), radius, colour[side[j]], -1, cv2.LINE_AA)
    return image


