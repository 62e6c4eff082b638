"""HRNetV2p detectors on torchvision's own classes: Faster R-CNN, Mask R-CNN, FCOS and Cascade (Mask) R-CNN.

The backbone keeps torchvision's contract (``out_channels`` and an ``OrderedDict`` of maps): :class:`HRNetV2p`
is the HRNet body (all four branches) followed by the HRFPN neck (:class:`~hrnet.models.heads.V2pNeck`), five
levels at strides 4..64 (paper, Sec. 5.3 and Fig. 3c). Every detector is ``torchvision``'s class with that
backbone; Cascade R-CNN replaces the RoI heads with :class:`hrnet.models.cascade.CascadeRoIHeads`.

The settings follow mmdetection's HRNet configs (``configs/hrnet/``, built on ``faster_rcnn_r50_fpn``): anchors
of size 8 x stride (32..512) with ratios 0.5/1/2 on the five levels, RoIs pooled from the four finest levels
(7x7 boxes, 14x14 masks), a 2-fc box head of 1024, 80 COCO classes + background (index 0, torchvision's
convention). ``mmdet_conventions=True`` switches the places where torchvision's defaults differ from mmdet's,
so converted mmdetection checkpoints keep their accuracy (:mod:`hrnet.models.mmdet`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from .heads import V2pNeck
from .hrnet import BACKBONE_PARTS, HRNetBackbone
from .presets import DETECTORS
from .spec import HRNetSpec

STRIDES = (4, 8, 16, 32, 64)
ROI_LEVELS = ["0", "1", "2", "3"]  # RoIs are pooled from strides 4..32, the RPN uses all five levels
BATCH_NORM_MODES = ("eval", "frozen", "train")


class HRNetV2p(nn.Module):
    """``body`` (:class:`HRNetBackbone`, four branches) -> ``neck`` (HRFPN): (B, 3, H, W) -> ``OrderedDict``
    ``{"0": (B, 256, H/4, W/4), ..., "4": (B, 256, H/64, W/64)}`` (floor sizes), ``out_channels`` 256.

    ``batch_norm`` says what the body's BN layers do in training: ``"eval"`` (mmdetection's ``norm_eval``, the
    official recipe: running statistics frozen, scale and shift trained), ``"frozen"`` (torchvision's
    ``FrozenBatchNorm2d``: both frozen) or ``"train"`` (ordinary BN, e.g. with ``sync_batchnorm``).
    ``trainable_layers`` (0..5) trains the last that many of stem, stage 1, ..., stage 4 (torchvision's
    ``trainable_backbone_layers``); the neck always trains.
    """

    def __init__(self, body: HRNetBackbone, out_channels: int = 256, trainable_layers: int = 5,
                 batch_norm: str = "eval") -> None:
        super().__init__()
        if batch_norm not in BATCH_NORM_MODES:
            raise ValueError(f"batch_norm must be one of {BATCH_NORM_MODES}, got {batch_norm!r}")
        if not 0 <= trainable_layers <= len(BACKBONE_PARTS):
            raise ValueError(f"trainable_backbone_layers must be in 0..{len(BACKBONE_PARTS)}, got {trainable_layers}")
        self.body = _freeze_batch_norm(body) if batch_norm == "frozen" else body
        self.neck = V2pNeck(body.out_channels, out_channels)
        self.out_channels = out_channels
        self.batch_norm = batch_norm
        frozen = BACKBONE_PARTS[:len(BACKBONE_PARTS) - trainable_layers]
        for part in frozen:
            for p in self.body.part(part).parameters():
                p.requires_grad_(False)
        for conv in self.neck.modules():
            if isinstance(conv, nn.Conv2d):  # mmdetection's HRFPN.init_weights: caffe2_xavier_init
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)

    def train(self, mode: bool = True) -> HRNetV2p:
        super().train(mode)
        if mode and self.batch_norm == "eval":
            for m in self.body.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.neck(self.body(x))


def _freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Every ``BatchNorm2d`` of ``module`` replaced by a ``FrozenBatchNorm2d`` with its values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norm(child)
    return module


def anchor_generator() -> AnchorGenerator:
    """mmdetection's HRNet anchors: one size per level, 8 x stride, ratios (0.5, 1, 2)."""
    return AnchorGenerator(tuple((8 * s,) for s in STRIDES), ((0.5, 1.0, 2.0),) * len(STRIDES))


def build_detector(kind: str, body: HRNetBackbone, spec: HRNetSpec, *, num_classes: int = 81,
                   trainable_backbone_layers: int = 5, batch_norm: str = "eval", min_size: int = 800,
                   max_size: int = 1333, mmdet_conventions: bool = False, neck_channels: int = 256,
                   head_channels: int | None = None, **kwargs: Any) -> nn.Module:
    """A detector of ``kind`` (one of :data:`DETECTORS`) around ``body``. ``num_classes`` counts the background
    (COCO: 80 + 1); ``kwargs`` go to torchvision's class (thresholds, ``box_detections_per_img``...).

    ``neck_channels`` (official 256) and ``head_channels`` (the R-CNN box head's fc width and the mask head's
    conv width, official 1024 and 256; ``None`` keeps those) size a smaller model, e.g. the demo's."""
    if kind not in DETECTORS:
        raise ValueError(f"detector kind must be one of {DETECTORS}, got {kind!r}")
    backbone = HRNetV2p(body, neck_channels, trainable_layers=trainable_backbone_layers, batch_norm=batch_norm)
    common = {"min_size": min_size, "max_size": max_size, **kwargs}
    if head_channels is not None and kind != "fcos":
        common |= _small_heads(kind, neck_channels, head_channels, num_classes)
    if kind == "fcos":
        return _fcos(backbone, num_classes, common, mmdet_conventions)
    if mmdet_conventions:
        from .mmdet import rcnn_conventions

        common = {**rcnn_conventions(mask="mask" in kind, cascade=kind.startswith("cascade")), **common}
    common.setdefault("rpn_anchor_generator", anchor_generator())
    common.setdefault("box_roi_pool", MultiScaleRoIAlign(ROI_LEVELS, 7, sampling_ratio=2))
    classes = None if "box_predictor" in common else num_classes  # torchvision takes one or the other
    if kind in ("fasterrcnn", "cascade_rcnn"):
        model: nn.Module = FasterRCNN(backbone, classes, **common)
    else:
        common.setdefault("mask_roi_pool", MultiScaleRoIAlign(ROI_LEVELS, 14, sampling_ratio=2))
        model = MaskRCNN(backbone, classes, **common)
    if kind.startswith("cascade"):
        from .cascade import cascade_roi_heads
        from .mmdet import CASCADE_BBOX_REG_WEIGHTS

        weights = {"bbox_reg_weights": CASCADE_BBOX_REG_WEIGHTS} if mmdet_conventions else {}
        model.roi_heads = cascade_roi_heads(model.roi_heads, backbone.out_channels, num_classes, **weights)
    return model


def _small_heads(kind: str, channels: int, width: int, num_classes: int) -> dict[str, nn.Module]:
    """torchvision's R-CNN heads at another width (a cascade derives its stages from them)."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    heads: dict[str, nn.Module] = {"box_head": TwoMLPHead(channels * 7 * 7, width),
                                   "box_predictor": FastRCNNPredictor(width, num_classes)}
    if "mask" in kind:
        heads |= {"mask_head": MaskRCNNHeads(channels, (width,) * 4, 1),
                  "mask_predictor": MaskRCNNPredictor(width, width, num_classes)}
    return heads


def _fcos(backbone: HRNetV2p, num_classes: int, common: dict[str, Any], mmdet_conventions: bool) -> FCOS:
    """FCOS (paper Table IX) on the five HRNetV2p levels, one location per cell, torchvision's GroupNorm head of
    4 convs. Labels are 1..K as for the other detectors (torchvision's FCOS keeps the unused class 0 too)."""
    if mmdet_conventions:
        raise ValueError("mmdet_conventions applies to the R-CNN detectors; FCOS keeps torchvision's")
    anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * len(STRIDES))  # size = stride: torchvision
    # derives the FCOS level ranges, centre-sampling radius and box scale from it
    head = FCOSHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes)
    return FCOS(backbone, num_classes, anchor_generator=anchors, head=head, **common)


def detector(name: str, *, weights: str | Path | None = None, weights_backbone: str | Path | None = None,
             num_classes: int = 81, trainable_backbone_layers: int = 5, **kwargs: Any) -> nn.Module:
    """torchvision-style builder of detection preset ``name``: ``weights`` a detector checkpoint (ours, Lightning,
    or mmdetection's, loaded strictly), ``weights_backbone`` an ImageNet HRNet-C checkpoint (official or timm,
    loaded into the body with ``strict=False``). ``hrnet.models.detection.maskrcnn_hrnetv2p_w32(weights=...)``
    and the like are this function with the preset's name."""
    from .presets import create_model, load_checkpoint

    model = create_model(name, num_classes=num_classes, trainable_backbone_layers=trainable_backbone_layers, **kwargs)
    if weights_backbone is not None:
        load_checkpoint(model.backbone.body, weights_backbone, strict=False)
    if weights is not None:
        load_checkpoint(model, weights)
    return model


def __getattr__(name: str) -> Any:
    """``fasterrcnn_hrnetv2p_w32`` etc.: :func:`detector` for that preset (module-level, as torchvision's builders)."""
    from .presets import PRESETS

    if name in PRESETS and PRESETS[name].detector:
        return functools.partial(detector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
