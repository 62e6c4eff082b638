"""Face landmarks on a user's photos and videos: face boxes (given, detected, or the whole image) -> square
crops of side ``box_scale * max(w, h)`` -> flip-tested heatmaps -> landmarks in image pixels; JSON and pictures."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ...export import is_exported_file
from ...files import normalize_image
from ...keypoints.codec import HeatmapCodec
from ...keypoints.geometry import PIXEL_STD, crop_image
from ...keypoints.sets import KEYPOINT_SPECS, KeypointSpec, resolve_keypoints
from ...models import get_preset
from ..base import (
    Box,
    BoxesFile,
    Predictor,
    Stored,
    add_top_down_arguments,
    checkpoint_settings,
)
from .decode import predict_landmarks

HEAD_WEIGHT = "head.last_layer.3.weight"
"""The face head's last conv: its output channels are the landmark count."""


def keypoints_of_weights(weights: str | Path) -> str | None:
    """The face keypoint set whose landmark count a plain (official) state dict's head has, if any."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    head = next((v for k, v in state.items() if k.endswith(HEAD_WEIGHT)), None)
    if head is None:
        return None
    by_count = {s.num_joints: name for name, s in KEYPOINT_SPECS.items() if "interocular" in s.extra
                or "normalizer" in s.extra}
    return by_count.get(int(head.shape[0]))


def box_center_scale(box: Sequence[float], box_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A face box (x, y, w, h) -> the square crop's center and scale (side / 200), as the official lists:
    scale = max(w, h) / 200, times ``box_scale`` (the official loaders' 1.25)."""
    x, y, w, h = (float(v) for v in box[:4])
    side = max(w, h) * box_scale / PIXEL_STD
    return np.array([x + w / 2, y + h / 2], np.float32), np.array([side, side], np.float32)


class FacePredictor(Predictor):
    """A face landmark model with its codec: ``predictor(image_rgb, boxes)`` -> one dict per face.

    Faces are the boxes of the image's entry in ``boxes`` (a :class:`BoxesFile`), else those ``detector`` finds,
    else the whole image is one face."""

    results_file = "landmarks.json"
    picture = "face"

    def __init__(self, model: nn.Module, keypoints: KeypointSpec, codec: HeatmapCodec, decode: str = "dark",
                 flip_test: bool = True, device: str = "cpu", boxes: BoxesFile | None = None,
                 detector: FaceDetector | None = None, box_scale: float = 1.25) -> None:
        super().__init__(model, device)
        self.keypoints, self.codec, self.decode, self.flip_test = keypoints, codec, decode, flip_test
        self.boxes, self.detector, self.box_scale = boxes, detector, box_scale

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_top_down_arguments(group)
        group.add_argument("--face-detector", choices=["mtcnn"],
                           help="find faces with MTCNN (pip install --no-deps facenet-pytorch; weights ship inside it)")
        group.add_argument("--box-scale", type=float, default=1.25, help="crop side / max(box w, h) (official: 1.25)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> FacePredictor:
        predictor = cls.from_checkpoint(args.weights, model=args.model, keypoints=args.keypoints,
                                        input_size=args.input_size, decode=args.decode, flip_test=not args.no_flip,
                                        device=args.device, stored=stored)
        predictor.box_scale = args.box_scale
        if args.boxes:
            predictor.boxes = BoxesFile(args.boxes, args.box_threshold or 0.0)
        if args.face_detector:
            predictor.detector = FaceDetector(0.9 if args.box_threshold is None else args.box_threshold, args.device)
        return predictor

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None, keypoints: str | None = None,
                        input_size: Sequence[int] | None = None, decode: str | None = None, flip_test: bool = True,
                        device: str = "cpu", stored: Stored | None = None) -> FacePredictor:
        """Our checkpoints carry model, landmark set, input size and decoding; an official state dict (e.g.
        ``HR18-WFLW.pth``) needs ``model`` (``face_hrnet_w18``), its landmark set is read off its head."""
        exported, hparams = stored or checkpoint_settings(weights)
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. face_hrnet_w18)")
        chosen = keypoints or hparams.get("keypoints") or (None if is_exported_file(weights) else keypoints_of_weights(weights))
        if chosen is None:
            raise ValueError(f"{weights}: the landmark set is not stored; pass --keypoints (wflw, 300w, cofw, aflw)")
        spec = resolve_keypoints(chosen)
        size = tuple(input_size or hparams.get("input_size") or get_preset(name).input_size)
        codec = HeatmapCodec.from_spec(spec, size, sigma=hparams.get("sigma", 1.5))
        net = cls.network(weights, name, exported, num_landmarks=spec.num_joints)
        return cls(net, spec, codec, decode or hparams.get("decode", "dark"), flip_test, device)

    @staticmethod
    def head_args(hparams: dict[str, Any]) -> dict[str, Any]:
        """The head arguments a checkpoint's hyper-parameters imply (its landmark count)."""
        return {"num_landmarks": resolve_keypoints(hparams["keypoints"]).num_joints} if "keypoints" in hparams else {}

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes: Sequence[Box] | None = None) -> list[dict[str, Any]]:
        """RGB uint8 (H, W, 3) and face boxes -> ``[{landmarks (K, 2), confidence (K,), box, score}]``."""
        if boxes is None:
            boxes = [(0.0, 0.0, float(image.shape[1]), float(image.shape[0]), 1.0)]
        if not boxes:
            return []
        h, w = self.codec.input_size
        crops, centers, scales = [], [], []
        for box in boxes:
            center, scale = box_center_scale(box, self.box_scale)
            crops.append(normalize_image(crop_image(image, center, scale, 0.0, (w, h))[0]))
            centers.append(center)
            scales.append(scale)
        images = torch.from_numpy(np.stack(crops)).to(self.device)
        landmarks, heatmaps = predict_landmarks(self.model, images, torch.from_numpy(np.stack(centers)),
                                                torch.from_numpy(np.stack(scales)), self.codec, self.decode,
                                                self.keypoints.flip_index if self.flip_test else None)
        confidence = heatmaps.flatten(2).amax(2).clamp(0, 1).cpu().numpy()
        return [{"landmarks": pts, "confidence": conf, "box": list(map(float, b[:4])), "score": float(b[4])}
                for pts, conf, b in zip(landmarks, confidence, boxes)]

    def predict(self, image: np.ndarray, source: Path | None) -> list[dict[str, Any]]:
        if self.boxes is not None and source is not None:
            return self(image, self.boxes.boxes_for(source))
        return self(image, self.detector(image) if self.detector is not None else None)

    def draw(self, image: np.ndarray, result: list[dict[str, Any]]) -> np.ndarray:
        drawn = image.copy()
        radius = max(1, round(min(image.shape[:2]) / 200))
        for face in result:
            pts = np.round(face["landmarks"]).astype(np.int32)
            for a, b in self.keypoints.skeleton:
                cv2.line(drawn, tuple(map(int, pts[a])), tuple(map(int, pts[b])), (0, 200, 255), 1, cv2.LINE_AA)
            for x, y in pts:
                cv2.circle(drawn, (int(x), int(y)), radius, (255, 60, 60), -1, cv2.LINE_AA)
        return drawn

    def record(self, result: list[dict[str, Any]], out: Path, stem: str) -> dict[str, Any]:
        return {"faces": [{"landmarks": [round(float(v), 2) for v in f["landmarks"].reshape(-1)],
                           "confidence": [round(float(v), 3) for v in f["confidence"]],
                           "box": [round(v, 2) for v in f["box"]], "score": round(f["score"], 4)} for f in result]}

    def header(self) -> dict[str, Any]:
        return {"keypoints": self.keypoints.name, "landmarks": list(self.keypoints.joint_names)}


class FaceDetector:
    """MTCNN (Zhang et al. 2016) from ``facenet-pytorch``, whose weights ship inside the package (nothing is
    downloaded): ``detector(image_rgb)`` -> face boxes ``(x, y, w, h, score)`` with score >= ``threshold``."""

    def __init__(self, threshold: float = 0.9, device: str = "cpu") -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ValueError("--face-detector mtcnn needs facenet-pytorch: pip install requests && "
                             "pip install --no-deps facenet-pytorch") from err
        self.model = MTCNN(keep_all=True, device=device)
        self.threshold = threshold

    def __call__(self, image: np.ndarray) -> list[Box]:
        boxes, scores = self.model.detect(np.ascontiguousarray(image))
        if boxes is None:
            return []
        return [(float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(s))
                for (x1, y1, x2, y2), s in zip(boxes.tolist(), scores.tolist()) if s >= self.threshold]
