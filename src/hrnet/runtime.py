"""The vocabulary the fast paths share (``inference``, ``export``, ``openvino_backend``, ``quantization``):
precisions, backends, the image channels a model takes, and the task settings exported files carry."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
BACKENDS = ("torch", "openvino")


def task_settings(hparams: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The ``keys`` present (and not ``None``) in a checkpoint's hyper-parameters: the settings prediction
    needs besides the weights (a task's ``Task.settings`` in :mod:`hrnet.tasks.registry`: keypoint set, heatmap
    sigma and decoding for pose; classes for segmentation). Exported files carry them, so ``hrnet predict`` on
    an ``.onnx`` / ``.xml`` file decodes as it would from the checkpoint. A value that JSON cannot hold is left
    out with a warning (prediction then falls back to its default)."""
    settings = {}
    for key in keys:
        if hparams.get(key) is None:
            continue
        try:
            json.dumps(hparams[key])
        except TypeError:
            log.warning("checkpoint setting %s=%r cannot be stored in the exported file; pass it to predict", key,
                        hparams[key])
            continue
        settings[key] = hparams[key]
    return settings


def input_channels(model: nn.Module) -> int:
    """The image channels ``model`` takes: its backbone's ``in_channels``, else its first convolution's
    (3 when neither says)."""
    stated = getattr(getattr(model, "backbone", model), "in_channels", None)
    if stated is None:
        stated = next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)
    return int(stated)
