"""Pose inference on images and videos: person boxes (given, detected, or the whole image) ->
top-down crops -> flip-tested heatmaps -> keypoints in image pixels; JSON and drawn pictures."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...files import normalize_image
from ...keypoints.codec import HeatmapCodec
from ...keypoints.geometry import box_to_center_scale, crop_image
from ...keypoints.sets import KeypointSpec, resolve_keypoints
from ...keypoints.topdown import heatmaps_to_image_keypoints, predict_heatmaps
from ...models import get_preset
from ..base import (
    Box,
    BoxesFile,
    KeypointPeople,
    Predictor,
    Stored,
    add_top_down_arguments,
    checkpoint_settings,
    load_detector,
)


class PosePredictor(KeypointPeople, Predictor):
    """A pose model with its codec: ``predictor(image_rgb, boxes)`` -> one dict per person.

    With ``boxes`` (a :class:`BoxesFile`) the people of an image file are those of its entry there; else
    with ``detector`` those it finds; else the whole image is one person. Keypoints drawn from ``threshold``.
    """

    results_file = "keypoints.json"
    picture = "pose"
    batch_size = 16
    """Person crops per network call."""

    def __init__(self, model: nn.Module, keypoints: KeypointSpec, codec: HeatmapCodec, flip_test: bool = True,
                 device: str = "cpu", boxes: BoxesFile | None = None, detector: PersonDetector | None = None,
                 threshold: float = 0.2) -> None:
        super().__init__(model, device)
        self.keypoints = keypoints
        self.codec = codec
        self.flip_test = flip_test
        self.boxes, self.detector, self.threshold = boxes, detector, threshold

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_top_down_arguments(group)
        group.add_argument("--detector", help="person detector: an HRNetV2p preset (fasterrcnn_hrnetv2p_w32) or a "
                                              "torchvision detection model (fasterrcnn_resnet50_fpn)")
        group.add_argument("--detector-weights", help="checkpoint / state dict for --detector")

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> PosePredictor:
        if args.detector and not args.detector_weights:
            raise ValueError("--detector needs --detector-weights (no weights are downloaded)")
        predictor = cls.from_checkpoint(args.weights, model=args.model, keypoints=args.keypoints,
                                        input_size=args.input_size, decode=args.decode, flip_test=not args.no_flip,
                                        device=args.device, stored=stored)
        if args.boxes:
            predictor.boxes = BoxesFile(args.boxes, args.box_threshold or 0.0)
        if args.detector:
            threshold = 0.5 if args.box_threshold is None else args.box_threshold
            predictor.detector = PersonDetector(args.detector, args.detector_weights, threshold,
                                                     device=args.device)
        return predictor

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None,
                        keypoints: str | dict[str, Any] | None = None, input_size: Sequence[int] | None = None,
                        decode: str | None = None, flip_test: bool = True, device: str = "cpu",
                        stored: Stored | None = None) -> PosePredictor:
        """Our Lightning checkpoints carry model name, keypoint set and input size; for official
        files (plain state dicts) pass ``model`` (and ``keypoints``/``input_size`` if not COCO 256x192).
        An ``.onnx`` file (``hrnet export onnx``) runs in onnxruntime, an ``.xml`` file (``hrnet export
        openvino``) in OpenVINO. ``stored``: what :func:`checkpoint_settings` already read of ``weights``."""
        exported, hparams = stored or checkpoint_settings(weights)
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. pose_hrnet_w32)")
        spec = resolve_keypoints(keypoints or hparams.get("keypoints", "coco"))
        size = tuple(input_size or hparams.get("input_size") or get_preset(name).input_size)
        codec = HeatmapCodec.from_spec(spec, size, sigma=hparams.get("sigma", 2.0),
                                       decode=decode or hparams.get("decode", "argmax"))
        return cls(cls.network(weights, name, exported, num_joints=spec.num_joints), spec, codec, flip_test, device)

    @staticmethod
    def head_args(hparams: dict[str, Any]) -> dict[str, Any]:
        """The head arguments a checkpoint's hyper-parameters imply (its keypoint set's joint count)."""
        return {"num_joints": resolve_keypoints(hparams["keypoints"]).num_joints} if "keypoints" in hparams else {}

    def __call__(self, image: np.ndarray, boxes: Sequence[Box] | None = None) -> list[dict[str, Any]]:
        """RGB uint8 (H, W, 3) and person boxes (default: the whole image) -> ``[{keypoints (K, 3), box, score}]``."""
        return self.people([image], [boxes])[0]

    @torch.no_grad()
    def people(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[Box] | None]) -> list[list[dict[str, Any]]]:
        """The people of several images, their crops run together in batches of ``batch_size`` (flip test
        included): a few fixed batch shapes, each compiled once by the compiled backends."""
        h, w = self.codec.input_size
        crops, centers, scales, owners = [], [], [], []
        for index, (image, image_boxes) in enumerate(zip(images, boxes)):
            if image_boxes is None:
                image_boxes = [(0.0, 0.0, float(image.shape[1]), float(image.shape[0]), 1.0)]
            for x, y, bw, bh, score in image_boxes:
                center, scale = box_to_center_scale((x, y, bw, bh), w / h)
                crops.append(normalize_image(crop_image(image, center, scale, 0.0, (w, h))[0]))
                centers.append(center)
                scales.append(scale)
                owners.append((index, (x, y, bw, bh), score))
        found: list[list[dict[str, Any]]] = [[] for _ in images]
        if not crops:
            return found
        flip_index = self.keypoints.flip_index if self.flip_test else None
        batch = torch.from_numpy(np.stack(crops)).to(self.device)
        heatmaps = torch.cat([predict_heatmaps(self.model, part, flip_index) for part in batch.split(self.batch_size)])
        kpts = heatmaps_to_image_keypoints(self.codec, heatmaps, torch.from_numpy(np.stack(centers)),
                                           torch.from_numpy(np.stack(scales)))
        for k, (index, box, score) in zip(kpts, owners):
            found[index].append({"keypoints": k, "box": list(map(float, box)), "score": float(score * k[:, 2].mean())})
        return found

    def _boxes(self, image: np.ndarray, source: Path | None) -> Sequence[Box] | None:
        """The people of ``image``: its entry in the boxes file, the detector's, or ``None`` (the whole image)."""
        if self.boxes is not None and source is not None:
            return self.boxes.boxes_for(source)
        return self.detector(image) if self.detector is not None else None

    def predict(self, image: np.ndarray, source: Path | None) -> list[dict[str, Any]]:
        return self(image, self._boxes(image, source))

    def predict_many(self, images: Sequence[np.ndarray], sources: Sequence[Path | None]) -> list[list[dict[str, Any]]]:
        return self.people(images, [self._boxes(image, source) for image, source in zip(images, sources)])



class PersonDetector:
    """The person detector in front of top-down pose: one of our HRNetV2p detection presets (e.g.
    ``fasterrcnn_hrnetv2p_w32``, with its checkpoint) or a torchvision detection model (e.g.
    ``fasterrcnn_resnet50_fpn``) with a user-supplied state dict. Persons are the class named ``person`` in an
    HRNetV2p checkpoint's classes (COCO: label 1), label ``person_label`` for torchvision's models."""

    def __init__(self, name: str, weights: str | Path, threshold: float = 0.5, person_label: int = 1,
                 device: str = "cpu") -> None:
        import torchvision

        from ...models import PRESETS

        if name in PRESETS and PRESETS[name].task == "detection":
            self.model, names = load_detector(weights, name)
            if "person" not in names:
                raise ValueError(f"--detector-weights {weights}: no 'person' class among {names[:10]}")
            person_label = names.index("person") + 1
        else:
            builder = getattr(torchvision.models.detection, name, None)
            if builder is None:
                raise ValueError(f"unknown detector {name!r}: an HRNetV2p preset (hrnet models --task detection) "
                                 "or a torchvision detection model")
            self.model = builder(weights=None, weights_backbone=None)
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        self.model.eval().to(device)
        self.threshold, self.person_label, self.device = threshold, person_label, device

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> list[Box]:
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(self.device)
        det = self.model([x])[0]
        keep = (det["labels"] == self.person_label) & (det["scores"] >= self.threshold)
        return [(float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(s))
                for (x1, y1, x2, y2), s in zip(det["boxes"][keep].tolist(), det["scores"][keep].tolist())]
