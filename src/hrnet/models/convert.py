"""Checkpoint reading and conversion between official/timm layouts and ours.

Formats read (see ``tests/data/manifests``):

* official pose / HigherHRNet / face / classification files and timm's: the network's own flat
  ``state_dict`` (``conv1.weight``, ``stage2.0.fuse_layers.0.1.0.weight``, ``final_layer.*``...);
* official segmentation: the same keys under ``model.`` plus ``loss.criterion.weight``;
* training checkpoints wrapping any of these in ``{"state_dict": ...}`` (official, Lightning,
  timm's train script), with ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile);
* ours: ``backbone.<official backbone key>`` and ``head.<official head key>``;
* ``.safetensors`` files (timm's hub format) as well as ``torch.save`` files.

Official files use the same names we do, so conversion is a prefix mapping: backbone keys get
``backbone.``, head keys get ``head.`` (the face repository's ``head.*`` is our V2 head's
``last_layer.*``).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

BACKBONE_PREFIXES = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition", "stage")
WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "module")
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
FACE_HEAD = ("head.", "last_layer.")  # face repository name -> our V2Head name


class CheckpointError(ValueError):
    """A checkpoint could not be read, or does not fit the model."""


@dataclass
class LoadReport:
    """What a (possibly non-strict) load did."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


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


def _load_file(path: Path) -> object:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err


def to_ours(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official/timm key layout -> ``backbone.*`` / ``head.*`` (ours passes through)."""
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
            if family == "face" and k.startswith(FACE_HEAD[1]):
                k = FACE_HEAD[0] + k[len(FACE_HEAD[1]):]
        out["model." + k if family == "seg" else k] = v
    return out


def _fit_to_model(sd: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A bare backbone (``features_only``) takes the backbone part of a full checkpoint."""
    from .hrnet import HRNetBackbone

    if not isinstance(model, HRNetBackbone):
        return sd
    head = [k for k in sd if k.startswith("head.")]
    if head:
        log.info("loading a backbone: ignoring %d head tensors of the checkpoint", len(head))
    return {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}


def compare(sd: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> LoadReport:
    """Which keys of ``sd`` fit ``target`` (a model's state dict), and which do not."""
    report = LoadReport()
    # Checkpoints from PyTorch < 0.4.1 have no num_batches_tracked at all; that is not a mismatch.
    skip_counters = not any(k.endswith("num_batches_tracked") for k in sd)
    for k, t in target.items():
        if k not in sd:
            if not (skip_counters and k.endswith("num_batches_tracked")):
                report.missing.append(k)
        elif tuple(sd[k].shape) != tuple(t.shape):
            report.mismatched.append((k, tuple(sd[k].shape), tuple(t.shape)))
        else:
            report.loaded.append(k)
    report.unexpected = [k for k in sd if k not in target]
    return report


def load_checkpoint(
    model: nn.Module, source: str | Path | Mapping[str, object], strict: bool = True
) -> LoadReport:
    """Load ``source`` into ``model`` (an :class:`HRNet` or :class:`HRNetBackbone`).

    Strict by default: any missing, unexpected or mis-shaped key raises :class:`CheckpointError`
    listing them and naming the preset the checkpoint looks like. ``strict=False`` loads the
    keys that fit and logs the rest.
    """
    name = str(source) if isinstance(source, (str, Path)) else "state dict"
    ours = to_ours(read_checkpoint(source))
    sd = _fit_to_model(ours, model)
    report = compare(sd, model.state_dict())
    if not report.exact:
        message = _describe(name, model, report, ours)
        if strict:
            raise CheckpointError(message + "\nPass strict=False to load only the tensors that fit.")
        log.warning(message)
    model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)
    return report


def _listing(title: str, items: list[str], limit: int = 8) -> str:
    if not items:
        return ""
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(items[:limit]) + more


def _describe(name: str, model: nn.Module, report: LoadReport, sd: Mapping[str, Tensor]) -> str:
    preset = getattr(model, "preset", type(model).__name__)
    lines = f"checkpoint {name} does not fit model {preset}:"
    lines += _listing("missing in checkpoint", report.missing)
    lines += _listing("unexpected in checkpoint", report.unexpected)
    lines += _listing(
        "wrong shape (checkpoint vs model)",
        [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in report.mismatched],
    )
    guess, matched, total = guess_preset(sd)
    if guess:
        lines += f"\n  it looks like preset {guess!r} ({matched} of {total} tensors match by name and shape)"
    return lines


@functools.lru_cache(maxsize=None)
def _preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    from .presets import create_model

    with torch.device("meta"):
        model = create_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_preset(sd: Mapping[str, Tensor]) -> tuple[str | None, int, int]:
    """The preset whose default model shares the most (name, shape) pairs with ``sd`` (ours)."""
    from .presets import PRESETS

    keys = {k for k in sd if k.startswith(("backbone.", "head."))}
    if not keys:
        return None, 0, len(sd)
    best: tuple[str | None, int, int] = (None, 0, len(sd))
    for name in PRESETS:
        shapes = _preset_shapes(name)
        matched = sum(1 for k in keys if shapes.get(k) == tuple(sd[k].shape))
        total = max(len(shapes), len(sd))
        if matched > best[1] or (matched == best[1] and best[0] is not None and total < best[2]):
            best = (name, matched, total)
    return best
