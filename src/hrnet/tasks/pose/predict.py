"""Pose inference on images and videos: person boxes (given, detected, or the whole image) ->
top-down crops -> flip-tested heatmaps -> keypoints in image pixels; JSON and drawn pictures."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ...export import load_exported
from ...files import VIDEO_SUFFIXES, iter_inputs, normalize_image, read_image, write_atomic
from ...keypoints.codec import HeatmapCodec
from ...keypoints.drawing import draw_skeleton
from ...keypoints.geometry import box_to_center_scale, crop_image
from ...keypoints.sets import KeypointSpec, resolve_keypoints
from ...keypoints.topdown import heatmaps_to_image_keypoints, predict_heatmaps
from ...models import create_model, get_preset
from ..base import Box, BoxesFile, read_hparams

log = logging.getLogger(__name__)


class PosePredictor:
    """A pose model with its codec: ``predictor(image_rgb, boxes)`` -> one dict per person."""

    def __init__(self, model: nn.Module, keypoints: KeypointSpec, codec: HeatmapCodec, flip_test: bool = True,
                 device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.keypoints = keypoints
        self.codec = codec
        self.flip_test = flip_test
        self.device = device

    @classmethod
    def from_checkpoint(cls, weights: str | Path, model: str | None = None,
                        keypoints: str | dict[str, Any] | None = None, input_size: Sequence[int] | None = None,
                        decode: str | None = None, flip_test: bool = True, device: str = "cpu") -> "PosePredictor":
        """Our Lightning checkpoints carry model name, keypoint set and input size; for official
        files (plain state dicts) pass ``model`` (and ``keypoints``/``input_size`` if not COCO 256x192).
        An ``.onnx`` file (``hrnet export onnx``) runs in onnxruntime, an ``.xml`` file (``hrnet export
        openvino``) in OpenVINO."""
        exported = load_exported(weights)
        hparams = read_hparams(weights) if exported is None else {
            "model": exported.preset, "input_size": exported.input_size, **exported.settings}
        name = model or hparams.get("model")
        if name is None:
            raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. pose_hrnet_w32)")
        spec = resolve_keypoints(keypoints or hparams.get("keypoints", "coco"))
        size = tuple(input_size or hparams.get("input_size") or get_preset(name).input_size)
        codec = HeatmapCodec.from_spec(spec, size, sigma=hparams.get("sigma", 2.0),
                                       decode=decode or hparams.get("decode", "argmax"))
        net = exported if exported is not None else create_model(name, weights=weights, num_joints=spec.num_joints)
        return cls(net, spec, codec, flip_test, device)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes: Sequence[Box] | None = None) -> list[dict[str, Any]]:
        """RGB uint8 (H, W, 3) and person boxes -> ``[{keypoints (K, 3), box, score}]``."""
        if boxes is None:
            boxes = [(0.0, 0.0, float(image.shape[1]), float(image.shape[0]), 1.0)]
        if not boxes:
            return []
        h, w = self.codec.input_size
        crops, centers, scales = [], [], []
        for x, y, bw, bh, _ in boxes:
            center, scale = box_to_center_scale((x, y, bw, bh), w / h)
            crop, _ = crop_image(image, center, scale, 0.0, (w, h))
            crops.append(normalize_image(crop))
            centers.append(center)
            scales.append(scale)
        images = torch.from_numpy(np.stack(crops)).to(self.device)
        flip_index = self.keypoints.flip_index if self.flip_test else None
        heatmaps = predict_heatmaps(self.model, images, flip_index)
        kpts = heatmaps_to_image_keypoints(self.codec, heatmaps, torch.from_numpy(np.stack(centers)),
                                           torch.from_numpy(np.stack(scales)))
        return [{"keypoints": k, "box": list(map(float, b[:4])), "score": float(b[4] * k[:, 2].mean())}
                for k, b in zip(kpts, boxes)]


class TorchvisionDetector:
    """A torchvision detection model (e.g. ``fasterrcnn_resnet50_fpn``) with user-supplied weights."""

    def __init__(self, name: str, weights: str | Path, threshold: float = 0.5, person_label: int = 1,
                 device: str = "cpu") -> None:
        import torchvision

        builder = getattr(torchvision.models.detection, name, None)
        if builder is None:
            raise ValueError(f"unknown torchvision detection model {name!r}")
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


def _jsonable(person: dict[str, Any]) -> dict[str, Any]:
    return {"keypoints": [round(float(v), 2) for v in person["keypoints"].reshape(-1)],
            "box": [round(v, 2) for v in person["box"]], "score": round(person["score"], 4)}


def run_prediction(source: Path, out: Path, predictor: PosePredictor, boxes: BoxesFile | None = None,
                   detector: TorchvisionDetector | None = None, threshold: float = 0.2) -> Path:
    """Predict every image (or video frame) of ``source``; write ``keypoints.json`` and drawn copies."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in iter_inputs(source):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            results.extend(_predict_video(path, out, predictor, detector, threshold))
            continue
        image = read_image(str(path))
        person_boxes = boxes.boxes_for(path) if boxes else detector(image) if detector else None
        people = predictor(image, person_boxes)
        for p in people:
            draw_skeleton(image, p["keypoints"], predictor.keypoints, threshold)
        cv2.imwrite(str(out / f"{path.stem}_pose.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        results.append({"file": path.name, "persons": [_jsonable(p) for p in people]})
    target = out / "keypoints.json"
    write_atomic(target, json.dumps({"keypoints": list(predictor.keypoints.joint_names), "images": results}))
    return target


def _predict_video(path: Path, out: Path, predictor: PosePredictor, detector: TorchvisionDetector | None,
                   threshold: float) -> list[dict[str, Any]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"video {path} unreadable (OpenCV could not open it)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer, frames = None, []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        people = predictor(image, detector(image) if detector else None)
        for p in people:
            draw_skeleton(image, p["keypoints"], predictor.keypoints, threshold)
        if writer is None:
            writer = cv2.VideoWriter(str(out / f"{path.stem}_pose.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (image.shape[1], image.shape[0]))
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        frames.append({"file": path.name, "frame": index, "persons": [_jsonable(p) for p in people]})
        index += 1
    capture.release()
    if writer is not None:
        writer.release()
    return frames
