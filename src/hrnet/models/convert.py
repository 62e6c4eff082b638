"""Checkpoint reading and conversion between official/timm layouts and ours.

Formats read (see ``tests/data/manifests``):

* official pose / HigherHRNet / face / classification files and timm's: the network's own flat
  ``state_dict`` (``conv1.weight``, ``stage2.0.fuse_layers.0.1.0.weight``, ``final_layer.*``...);
* official segmentation: the same keys under ``model.`` plus ``loss.criterion.weight``;
* training checkpoints wrapping any of these in ``{"state_dict": ...}`` (official, Lightning,
  timm's train script; ``state_dict_ema`` first when present), with ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile);
* ours: ``backbone.<official backbone key>`` and ``head.<official head key>``;
* ``.safetensors`` files (timm's hub format) as well as ``torch.save`` files.

Official files use the same names we do, so conversion is a prefix mapping: backbone keys get
``backbone.``, head keys get ``head.`` (the face repository's ``head.*`` is our V2 head's
``last_layer.*``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

BACKBONE_PREFIXES = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition", "stage")
# An EMA of the weights, when a training checkpoint holds one (timm's train script, ours), is what its
# author evaluated, and is read first, as timm's ``load_checkpoint(use_ema=True)``.
WRAPPER_KEYS = ("state_dict_ema", "state_dict", "model", "module")
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
# Keys only an mmdetection detector has (its layout: hrnet.models.mmdet); ours are backbone.neck., rpn., roi_heads.
MMDET_PREFIXES = ("neck.reduction_conv.", "rpn_head.", "roi_head.", "bbox_head.")
FACE_HEAD = ("head.", "last_layer.")  # face repository name -> our V2Head name
OFFICIAL_HEAD_NAMES = {"face": FACE_HEAD}  # checkpoint family -> (official head name, ours), where they differ


class CheckpointError(ValueError):
    """A checkpoint could not be read, or does not fit the model."""


def read_checkpoint(source: str | Path | Mapping[str, object]) -> dict[str, Tensor]:
    """Load a file (or take a mapping) and return its flat tensor state dict, wrappers removed."""
    name = "state dict"
    obj: object = source
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}")
        obj = _load_file(path)
    while isinstance(obj, Mapping) and not _has_tensors(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise CheckpointError(
                f"{name}: no tensors found; expected a state dict, or a dict with one under one of "
                f"{list(WRAPPER_KEYS)} (top-level keys: {sorted(map(str, obj))[:10]})"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a dict of tensors, got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor) and not k.startswith("loss.")}
    for prefix in WRAPPER_PREFIXES * 2:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _has_tensors(obj: Mapping[str, object]) -> bool:
    return any(isinstance(v, Tensor) for v in obj.values())


def torch_load(path: str | Path) -> object:
    """``torch.load`` of a checkpoint without running code (``weights_only``), memory-mapped where the file is
    in the zip format of ``torch.save`` since PyTorch 1.6 (tensors are read when used, so reading only the
    hyper-parameters costs nothing), read whole for the older format."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_file(path: Path) -> object:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        return torch_load(path)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {(str(err).splitlines() or ['empty'])[0]})"
        ) from err


def to_ours(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official/timm key layout -> ``backbone.*`` / ``head.*``; an mmdetection detector -> our detector's keys
    (:mod:`hrnet.models.mmdet`); ours passes through."""
    if any(k.startswith(MMDET_PREFIXES) for k in sd):
        from .mmdet import from_mmdet  # imports torchvision's detection code: only for detectors

        return from_mmdet(sd)
    if any(k.startswith("backbone.") for k in sd):
        return dict(sd)
    out = {}
    for k, v in sd.items():
        if k.startswith(BACKBONE_PREFIXES):
            out["backbone." + k] = v
        else:
            if k.startswith(FACE_HEAD[0]):
                k = FACE_HEAD[1] + k[len(FACE_HEAD[0]):]
            out["head." + k] = v
    return out


def to_official(sd: Mapping[str, Tensor], family: str) -> "OrderedDict[str, Tensor]":
    """Our layout -> the official repository's (``family``: cls, pose, seg, face, higher).

    The result loads into the official code: segmentation keys get the ``model.`` prefix that
    its test script strips, face heads are named ``head``.
    """
    out: OrderedDict[str, Tensor] = OrderedDict()
    for k, v in sd.items():
        if k.startswith("backbone."):
            k = k[len("backbone."):]
        elif k.startswith("head."):
            k = k[len("head."):]
            official, ours = OFFICIAL_HEAD_NAMES.get(family, ("", ""))
            if ours and k.startswith(ours):
                k = official + k[len(ours):]
        out["model." + k if family == "seg" else k] = v
    return out


