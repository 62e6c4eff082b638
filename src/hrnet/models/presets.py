"""Model zoo: one small entry per preset, ``create_model`` / ``list_models``, and checkpoint loading
(``load_checkpoint``, ``guess_preset``; the key formats themselves are :mod:`hrnet.models.convert`).

Each preset records what its official checkpoints depend on (fusion upsampling mode,
``align_corners``, single-output last module, head shape, BN momentum, init) as explicit data.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .convert import CheckpointError, read_checkpoint, to_ours
from .heads import ClassificationHead, HigherHead, PoseHead, V2Head
from .hrnet import HRNet, HRNetBackbone
from .ocr import OCRHead
from .spec import HRNetSpec, derive_spec

log = logging.getLogger(__name__)

NEAREST: dict[str, Any] = {"upsample_mode": "nearest", "align_corners": None}
BILINEAR: dict[str, Any] = {"upsample_mode": "bilinear", "align_corners": False}

# The two small schedules of the paper's Appendix; everything else is derive_spec(W).
W18_SMALL_V1: dict[str, Any] = {"modules": (1, 1, 1, 1), "blocks": (1, 2, 2, 2), "stage1_width": 32}
W18_SMALL_V2: dict[str, Any] = {"modules": (1, 1, 3, 2), "blocks": (2, 2, 2, 2)}


MODEL_TASKS = ("classification", "pose", "bottomup", "segmentation", "detection", "face")
DETECTORS = ("fasterrcnn", "maskrcnn", "fcos", "cascade_rcnn", "cascade_maskrcnn")
"""The detector kinds of the detection presets (:func:`hrnet.models.detection.build_detector` builds them; it and
torchvision's detection models are imported only when a detector is built)."""
"""What each preset's network is for (``Preset.task``), in zoo order; the tasks with a pipeline are
``hrnet.tasks.registry.TASKS``."""


@dataclass(frozen=True)
class Preset:
    """A named model: backbone spec, head factory and its defaults, provenance, and the names of its
    outputs (exported files use them)."""

    name: str
    task: str
    spec: HRNetSpec
    head: Callable[..., nn.Module]
    head_defaults: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (224, 224)
    init: str = "normal"
    family: str = "cls"
    source: str = ""
    outputs: tuple[str, ...] = ("output",)
    detector: str | None = None

    def head_args(self) -> list[str]:
        """The keyword arguments ``create_model`` accepts for this preset's head (a detector's: its builder's)."""
        if self.detector:
            from .detection import build_detector

        params = inspect.signature(build_detector if self.detector else self.head).parameters
        return [p for p, v in params.items() if p not in ("in_channels", "spec", "kind", "body")
                and v.kind is not inspect.Parameter.VAR_KEYWORD]


def _cls_head(in_channels: list[int], spec: HRNetSpec, num_classes: int = 1000) -> nn.Module:
    return ClassificationHead(in_channels, num_classes, bn_momentum=spec.bn_momentum)


def _pose_head(in_channels: list[int], spec: HRNetSpec, num_joints: int = 17) -> nn.Module:
    return PoseHead(in_channels, num_joints)


def _v2_head(in_channels: list[int], spec: HRNetSpec, num_outputs: int) -> nn.Module:
    """Segmentation and face share the HRNetV2 head; it upsamples like the fusion does."""
    return V2Head(in_channels, num_outputs, align_corners=bool(spec.align_corners), bn_momentum=spec.bn_momentum)


def _seg_head(in_channels: list[int], spec: HRNetSpec, num_classes: int = 19) -> nn.Module:
    return _v2_head(in_channels, spec, num_classes)


def _seg_ocr_head(in_channels: list[int], spec: HRNetSpec, num_classes: int = 19) -> nn.Module:
    """OCR with the official widths (MID_CHANNELS 512, KEY_CHANNELS 256, dropout 0.05)."""
    return OCRHead(in_channels, num_classes, align_corners=bool(spec.align_corners), bn_momentum=spec.bn_momentum)


def _face_head(in_channels: list[int], spec: HRNetSpec, num_landmarks: int = 98) -> nn.Module:
    return _v2_head(in_channels, spec, num_landmarks)


def _higher_head(in_channels: list[int], spec: HRNetSpec, num_joints: int = 17) -> nn.Module:
    return HigherHead(in_channels, num_joints, deconv_channels=in_channels[0], bn_momentum=spec.bn_momentum)


def _detector_has_no_head(in_channels: list[int], spec: HRNetSpec) -> nn.Module:
    raise TypeError("a detection preset is built by hrnet.models.detection.build_detector, not as backbone + head")


def _presets() -> dict[str, Preset]:
    presets: list[Preset] = []
    cls_src = "HRNet-Image-Classification / timm"
    cls_schedules = {"hrnet_w18_small": (16, W18_SMALL_V1), "hrnet_w18_small_v2": (18, W18_SMALL_V2)}
    cls_schedules |= {f"hrnet_w{w}": (w, {}) for w in (18, 30, 32, 40, 44, 48, 64)}
    for name, (width, schedule) in cls_schedules.items():
        spec = derive_spec(width, **schedule, **NEAREST)
        presets.append(Preset(name, "classification", spec, _cls_head, {"num_classes": 1000},
                              (224, 224), init="kaiming", family="cls", source=cls_src))
    # No official pose model uses the small backbones; these take their ImageNet weights (strict=False).
    for name, schedule in {"pose_hrnet_w18_small": W18_SMALL_V1, "pose_hrnet_w18_small_v2": W18_SMALL_V2}.items():
        spec = derive_spec(16 if schedule is W18_SMALL_V1 else 18, multi_scale_output=False, **schedule, **NEAREST)
        presets.append(Preset(name, "pose", spec, _pose_head, {"num_joints": 17}, (256, 192), family="pose",
                              source="HRNet-Image-Classification backbone"))
    # No official small HigherHRNet: pose_hrnet_w18_small's body with the HigherHRNet head, for CPU-sized
    # training (the bottom-up demo).
    presets.append(Preset("higher_hrnet_w18_small", "bottomup",
                          derive_spec(16, multi_scale_output=False, **W18_SMALL_V1, **NEAREST), _higher_head,
                          {"num_joints": 17}, (256, 256), family="higher", source="HRNet-Image-Classification backbone",
                          outputs=("heatmaps_and_tags", "heatmaps_2x")))
    for width in (32, 48):
        spec = derive_spec(width, multi_scale_output=False, **NEAREST)
        presets.append(Preset(f"pose_hrnet_w{width}", "pose", spec, _pose_head, {"num_joints": 17},
                              (256, 192), family="pose", source="deep-high-resolution-net.pytorch"))
        presets.append(Preset(f"higher_hrnet_w{width}", "bottomup", spec, _higher_head, {"num_joints": 17},
                              (512, 512) if width == 32 else (640, 640), family="higher",
                              source="HigherHRNet-Human-Pose-Estimation",
                              outputs=("heatmaps_and_tags", "heatmaps_2x")))
    # The small Cityscapes models were trained with the pytorch-v1.1 code (BN momentum 0.01).
    seg_specs = {
        "seg_hrnet_w18_small_v1": derive_spec(16, **W18_SMALL_V1, **BILINEAR, bn_momentum=0.01),
        "seg_hrnet_w18_small_v2": derive_spec(18, **W18_SMALL_V2, **BILINEAR, bn_momentum=0.01),
    }
    seg_specs |= {f"seg_hrnet_w{w}": derive_spec(w, **BILINEAR) for w in (18, 32, 48)}
    for name, spec in seg_specs.items():
        # W18/W32 have no official segmentation checkpoint; their backbones take ImageNet weights.
        source = "HRNet-Image-Classification backbone" if name in ("seg_hrnet_w18", "seg_hrnet_w32") else \
            "HRNet-Semantic-Segmentation"
        presets.append(Preset(name, "segmentation", spec, _seg_head, {"num_classes": 19}, (1024, 2048),
                              family="seg", source=source))
    # HRNet-OCR branch: MODEL.ALIGN_CORNERS keeps its default True (the OCR yamls do not set it);
    # BN momentum 0.1. Its init_weights skips the head (names with cls/aux/ocr): PyTorch defaults.
    ocr_spec = derive_spec(48, **{**BILINEAR, "align_corners": True})
    presets.append(Preset("seg_hrnet_w48_ocr", "segmentation", ocr_spec, _seg_ocr_head, {"num_classes": 19},
                          (1024, 2048), init="normal_backbone", family="seg",
                          source="HRNet-Semantic-Segmentation (OCR)", outputs=("aux", "logits")))
    # HRNetV2p detectors (mmdetection configs/hrnet): ImageNet-initialised bodies, so the classification fusion.
    # w18_small: the small ImageNet schedule (hrnet_w18_small's body), for CPU-sized training such as the demo.
    bodies = {"w18_small": derive_spec(16, **W18_SMALL_V1, **NEAREST)}
    bodies |= {f"w{w}": derive_spec(w, **NEAREST) for w in (18, 32, 40, 48)}
    for kind in DETECTORS:
        for body, spec in bodies.items():
            outputs = ("boxes", "labels", "scores", "masks") if "mask" in kind else ("boxes", "labels", "scores")
            published = kind != "fcos" and body in ("w18", "w32", "w40")  # mmdetection's zoo (FCOS: another design)
            presets.append(Preset(f"{kind}_hrnetv2p_{body}", "detection", spec,
                                  _detector_has_no_head, {"num_classes": 81}, (800, 1333), init="kaiming_body",
                                  family="det", outputs=outputs, detector=kind,
                                  source="mmdetection (HRNet configs)" if published else
                                  "HRNet-Image-Classification backbone"))
    face_spec = derive_spec(18, **BILINEAR, bn_momentum=0.01)
    presets.append(Preset("face_hrnet_w18", "face", face_spec, _face_head, {"num_landmarks": 98},
                          (256, 256), family="face", source="HRNet-Facial-Landmark-Detection"))
    # No official small face model: hrnet_w18_small's body with the face head, for CPU-sized training (the demo).
    presets.append(Preset("face_hrnet_w18_small", "face", derive_spec(16, **W18_SMALL_V1, **BILINEAR, bn_momentum=0.01),
                          _face_head, {"num_landmarks": 98}, (256, 256), family="face",
                          source="HRNet-Image-Classification backbone"))
    return {p.name: p for p in sorted(presets, key=lambda p: MODEL_TASKS.index(p.task))}


PRESETS: dict[str, Preset] = _presets()


def list_models(task: str | None = None) -> list[str]:
    """Preset names, optionally only those of one task (``"pose"``, ``"segmentation"``...)."""
    return [name for name, p in PRESETS.items() if task is None or p.task == task]


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


def init_weights(model: nn.Module, scheme: str) -> None:
    """Official initialisation: ``"normal"`` (pose, seg, face: conv weights N(0, 0.001), conv
    biases 0) or ``"kaiming"`` (classification: He normal, fan_out); BN weight 1, bias 0.
    ``"normal_backbone"`` (HRNet-OCR) is ``"normal"`` on the backbone only; the head keeps
    PyTorch's default initialisation, as the official OCR code leaves it. ``"kaiming_body"`` (detectors) is
    ``"kaiming"`` on the HRNet body only."""
    if scheme == "normal_backbone":
        model, scheme = getattr(model, "backbone", model), "normal"
    if scheme == "kaiming_body":  # a detector: torchvision's heads and the neck initialise themselves
        model, scheme = model.backbone.body, "kaiming"
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def create_model(
    name: str,
    weights: str | Path | Mapping[str, Tensor] | None = None,
    *,
    features_only: bool = False,
    in_channels: int = 3,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build a preset; optionally load ``weights`` (a path or a state dict in any supported format).

    ``overrides`` are head arguments (``num_classes``, ``num_joints``, ``num_landmarks``).
    ``features_only=True`` returns the bare :class:`HRNetBackbone`, whose forward gives the list
    of multi-resolution features (all four, also for pose presets). ``strict=False`` loads what
    fits and skips the rest (e.g. a new head), reporting what it skipped.
    """
    preset = get_preset(name)
    if features_only:
        if overrides:
            raise TypeError(f"create_model({name!r}, features_only=True) takes no head arguments, got {sorted(overrides)}")
        model: nn.Module = HRNetBackbone(dataclasses.replace(preset.spec, multi_scale_output=True), in_channels)
    else:
        unknown = set(overrides) - set(preset.head_args())
        if unknown and not preset.detector:  # a detector passes the rest to torchvision's class
            raise TypeError(f"create_model({name!r}): unknown argument(s) {sorted(unknown)}; "
                            f"this preset accepts {preset.head_args()}")
        backbone = HRNetBackbone(preset.spec, in_channels)
        args = {**preset.head_defaults, **overrides}
        if preset.detector:
            from .detection import build_detector

            model = build_detector(preset.detector, backbone, preset.spec, **args)
        else:
            model = HRNet(backbone, preset.head(backbone.out_channels, preset.spec, **args))
    if next(model.parameters()).device.type != "meta":  # meta models (counting, guessing) hold no values
        init_weights(model, preset.init)
    model.preset = preset.name  # type: ignore[assignment]
    if weights is not None:
        load_checkpoint(model, weights, strict=strict)
    return model


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


def _fit_to_model(sd: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A bare backbone (``features_only``) takes the backbone part of a full checkpoint."""
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
    with torch.device("meta"):
        model = create_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_preset(sd: Mapping[str, Tensor]) -> tuple[str | None, int, int]:
    """The preset whose default model shares the most (name, shape) pairs with ``sd`` (ours)."""
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
