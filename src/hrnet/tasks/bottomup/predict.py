"""Bottom-up pose on a user's photos and videos: the whole image in, no person boxes; the official test
(resize, flip test, optional scales, grouping) gives every person's keypoints in image pixels."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...keypoints.sets import KeypointSpec, resolve_keypoints
from ...models import get_preset
from ..base import (
    KeypointPeople,
    Predictor,
    Stored,
    add_top_down_arguments,
    checkpoint_settings,
)
from .decode import find_people, grouping_params, ordered_scales, scaled_inputs
from .grouping import GroupingParams


class BottomUpPredictor(KeypointPeople, Predictor):
    """A HigherHRNet model with its test settings: ``predictor(image_rgb)`` -> one dict per person found,
    ``{keypoints (K, 3) x, y, heatmap value; score; box}``, best first; missing joints have value 0. The box
    is that of the joints found (value > 0). Keypoints are drawn from ``threshold``."""

    results_file = "keypoints.json"
    picture = "pose"

    def __init__(self, model: nn.Module, keypoints: KeypointSpec, input_size: int, params: GroupingParams,
                 flip_test: bool = True, scales: Sequence[float] = (1.0,), device: str = "cpu",
                 threshold: float = 0.1, project2image: bool = True) -> None:
        super().__init__(model, device)
        self.keypoints, self.input_size, self.params = keypoints, int(input_size), params
        self.flip_test, self.scales, self.threshold = flip_test, ordered_scales(scales), threshold
        self.project2image = project2image

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_top_down_arguments(group)
        if "--scales" not in group._option_string_actions:  # segmentation's group may have added it
            group.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales")
        group.add_argument("--no-project2image", action="store_true",
                           help="bottom-up: group on the network's 1/2-resolution maps instead of maps resized to "
                                "the input (official TEST.PROJECT2IMAGE off; 2.5-4x less post-processing)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> BottomUpPredictor:
        if args.boxes:
            raise ValueError("--boxes applies to top-down models; a bottom-up model finds the people itself")
        return cls.from_checkpoint(args.weights, model=args.model, keypoints=args.keypoints,
                                   input_size=args.input_size, flip_test=not args.no_flip, scales=args.scales,
                                   device=args.device, stored=stored,
                                   project2image=False if args.no_project2image else None)

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None,
                        keypoints: str | dict[str, Any] | None = None, input_size: Sequence[int] | None = None,
                        flip_test: bool = True, scales: Sequence[float] = (1.0,), device: str = "cpu",
                        stored: Stored | None = None, project2image: bool | None = None) -> BottomUpPredictor:
        """Our checkpoints (and exported files) carry the preset, keypoint set, input size, grouping
        thresholds and ``project2image``; for official files (plain state dicts) pass ``model`` (and
        ``keypoints`` if not COCO). ``input_size``: the test's short side (``S`` or ``(S, S)``);
        ``project2image`` ``None``: the checkpoint's (official default on)."""
        exported, hparams = stored or checkpoint_settings(weights)
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. higher_hrnet_w32)")
        spec = resolve_keypoints(keypoints or hparams.get("keypoints", "coco"))
        size = tuple(input_size or hparams.get("input_size") or get_preset(name).input_size)
        params = grouping_params(spec.num_joints, hparams.get("detection_threshold", 0.1),
                                 hparams.get("tag_threshold", 1.0), hparams.get("max_num_people", 30))
        network = cls.network(weights, name, exported, num_joints=spec.num_joints)
        project = hparams.get("project2image", True) if project2image is None else project2image
        return cls(network, spec, size[0], params, flip_test, scales, device, project2image=project)

    @staticmethod
    def head_args(hparams: dict[str, Any]) -> dict[str, Any]:
        """The head arguments a checkpoint's hyper-parameters imply (its keypoint set's joint count)."""
        return {"num_joints": resolve_keypoints(hparams["keypoints"]).num_joints} if "keypoints" in hparams else {}

    def __call__(self, image: np.ndarray) -> list[dict[str, Any]]:
        """RGB uint8 (H, W, 3) -> ``[{keypoints (K, 3), score, box}]``, best score first."""
        inputs = scaled_inputs(image, self.input_size, self.scales)
        flip_index = self.keypoints.flip_index if self.flip_test else None
        keypoints, scores = find_people(self.model, inputs, self.keypoints.num_joints, self.params, flip_index,
                                        self.device, self.project2image)
        return [{"keypoints": keypoints[k], "score": float(scores[k]), "box": joints_box(keypoints[k])}
                for k in np.argsort(-scores, kind="stable")]



def joints_box(keypoints: np.ndarray) -> list[float]:
    """``[x, y, w, h]`` around the joints found (value > 0) of one person's ``(K, 3)`` keypoints."""
    found = keypoints[keypoints[:, 2] > 0, :2]
    if len(found) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    (x0, y0), (x1, y1) = found.min(axis=0), found.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
