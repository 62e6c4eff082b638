"""mmdetection 2.x / 3.x HRNetV2p detector checkpoints in our torchvision-based detectors, and mmdet's conventions.

**Keys.** mmdetection's HRNet (``mmdet/models/backbones/hrnet.py``) uses the official HRNet names, so
``backbone.X`` is our ``backbone.body.X``; the rest is renamed (:func:`from_mmdet`, :func:`to_mmdet`)::

    neck.reduction_conv.conv.*              backbone.neck.reduction_conv.*        necks/hrfpn.py (ConvModule)
    neck.fpn_convs.N.conv.*                 backbone.neck.fpn_convs.N.*
    rpn_head.rpn_conv / rpn_cls / rpn_reg   rpn.head.conv.0.0 / cls_logits / bbox_pred   dense_heads/rpn_head.py
    roi_head.bbox_head.shared_fcs.0 / 1     roi_heads.box_head.fc6 / fc7          bbox_heads/convfc_bbox_head.py
    roi_head.bbox_head.fc_cls               roi_heads.box_predictor.cls_score     (C + 1, 1024), background moved
    roi_head.bbox_head.fc_reg               roi_heads.box_predictor.bbox_pred     (4C, 1024) -> (4(C + 1), 1024)
    roi_head.mask_head.convs.N.conv         roi_heads.mask_head.N.0               mask_heads/fcn_mask_head.py
    roi_head.mask_head.upsample             roi_heads.mask_predictor.conv5_mask   ConvTranspose2d 2x2 / 2
    roi_head.mask_head.conv_logits          roi_heads.mask_predictor.mask_fcn_logits   (C, ...) -> (C + 1, ...)
    roi_head.{bbox,mask}_head.K.*           roi_heads.box_heads.K / box_predictors.K / mask_heads.K /
                                            mask_predictors.K (Cascade R-CNN, cascade_roi_head.py)

mmdet 2.x numbers the C classes 0..C-1 with the background last (``fc_cls`` has C + 1 rows, ``bbox_head.py``),
regresses 4 deltas per foreground class only (``reg_class_agnostic=False``: 4C rows; the cascade stages are
class-agnostic: 4 rows) and predicts C mask channels. torchvision puts the background at index 0 with 4 deltas
and one mask channel for it too; those are never read (detections drop the background, the box and mask losses
take positives only), so conversion inserts zeros there and :func:`to_mmdet` drops them. mmdet 3.x keeps the
2.x model layout; its zoo serves the 2.x files. Both wrap the weights as ``{"meta": ..., "state_dict": ...}``
(``tools/model_converters/publish_model.py`` keeps those two keys), which :func:`~hrnet.models.convert.
read_checkpoint` unwraps; the data preprocessor's mean and std are non-persistent buffers (mmengine
``data_preprocessor.py``), so no ``data_preprocessor.*`` keys appear. mmdet 1.x files (background first,
4(C + 1) delta rows) are refused: mmdetection's ``tools/model_converters/upgrade_model_version.py`` makes them 2.x.

**Conventions** (``configs/_base_/models/{faster,mask,cascade_mask}_rcnn_r50_fpn.py``, which
``configs/hrnet/*`` inherit; :func:`rcnn_conventions` sets the first three, ``mmdet_conventions=True``):

* Anchors (``prior_generators/anchor_generator.py``): base anchors of 8 x stride, ratios h/w 0.5/1/2, centred on
  ``stride * i`` (``center_offset=0``, as torchvision), *not rounded*, stride the configured 4..64.
  torchvision rounds the base anchors' half-extents (32 px at ratio 0.5: 46 x 22 instead of 45.25 x 22.63) and
  takes the stride per axis as ``padded_size // feature_size``, which is not 64 on level 4 when the padded
  size / 32 is odd (800 rows: 12 cells, stride 66). Left so, the converted RPN's deltas act on anchors of other
  shapes, and on such inputs its level-4 anchors drift away from the cells that scored them (22 px by row 11).
* RoIAlign: mmcv ``RoIAlign(aligned=True)`` with ``sampling_ratio=0`` (an adaptive ceil(roi / bin) grid).
  torchvision's ``MultiScaleRoIAlign`` calls ``roi_align(aligned=False)`` (and the presets sample 2x2). Left so,
  the box and mask heads read features half a feature cell off from where they were trained, with another
  sampling grid. The level rule agrees: mmdet's ``map_roi_levels`` (``single_level_roi_extractor.py``) is
  ``floor(log2(sqrt(wh) / 56 + 1e-6))`` clamped to 0..3, torchvision's ``LevelMapper`` ``floor(4 + log2(sqrt(wh) /
  224) + 1e-6) - 2``; they differ only where sqrt(wh) is within 3e-4 px below 112, 224 or 448 (the epsilon sits
  inside vs outside the log). :class:`MMDetRoIAlign` uses mmdet's rule and the configured strides 4..32.
* RPN proposals kept after NMS in training: ``rpn_proposal.max_per_img=1000`` (Faster / Mask R-CNN; the cascade
  configs keep 2000, as torchvision). torchvision's ``rpn_post_nms_top_n_train`` is 2000: twice the candidates
  for the 512 sampled RoIs, so the sampled mix is not the recipe's (training only).

The same in both: input mean/std (``[123.675, 116.28, 103.53]`` / ``[58.395, 57.12, 57.375]`` on 0-255 RGB =
torchvision's on 0-1), padding to 32, resizing to 800 / 1333; box coders (R-CNN stds 0.1/0.1/0.2/0.2 = weights
10/10/5/5, RPN 1/1/1/1, widths without +1, log sizes clamped from above at log(1000/16)); RPN 2000 (train) /
1000 (test) per level before NMS 0.7 batched by level, 1000 after at test; assigners 0.7/0.3 (RPN), 0.5/0.5
(R-CNN), samplers 256 x 0.5 and 512 x 0.25 with GT boxes added as R-CNN proposals; test score 0.05, per-class
NMS 0.5, 100 detections.

Left as torchvision does (no constructor argument reaches them). At inference: the lower clamp of the log-size
deltas (mmdet clamps dw, dh to +-log(1000/16), torchvision's ``BoxCoder`` from above only: boxes differ only
where a delta shrinks its reference more than 62.5-fold, degenerate boxes either way); resizing (mmdet rounds
the new size and resizes the uint8 image with cv2, torchvision floors it and resizes the float tensor: a pixel
of size at most, and interpolation rounding); mask pasting (mmdet ``_do_paste_mask`` samples at pixel centres
with ``grid_sample``; torchvision's ``paste_masks_in_image`` pads the mask by one cell and resizes it to the
integer box: masks differ along their boundary). In training: box losses (mmdet ``L1Loss`` for RPN and R-CNN;
torchvision smooth L1 with beta 1/9: another gradient for small errors); the RPN's low-quality matches (mmdet
needs IoU >= 0.3, torchvision none: differs for GTs whose best anchor overlaps less); R-CNN
``match_low_quality=True`` in the Mask R-CNN config (no effect: each GT is its own best proposal at IoU 1); mask
targets (mmdet: aligned RoIAlign of the GT mask binarised at 0.5; torchvision: unaligned, soft); the cascade
configs' ``allowed_border=0`` (anchors crossing the image are ignored in RPN training; torchvision uses all).

Cascade R-CNN: the third stage's stds are 0.033/0.033/0.067/0.067, i.e. weights 1/0.033 = 30.3 and
1/0.067 = 14.9, not 30/15 (:data:`CASCADE_BBOX_REG_WEIGHTS`).

**FCOS** checkpoints are refused (:func:`from_mmdet` says why): mmdet's HRNet FCOS is not torchvision's FCOS
with other names; see :data:`FCOS_DIFFERENCES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, roi_align

from .convert import MMDET_PREFIXES, CheckpointError
from .detection import ROI_LEVELS, STRIDES

ANCHOR_SCALE = 8
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ROI_STRIDES = (4, 8, 16, 32)
FINEST_SCALE = 56
RPN_POST_NMS_TOP_N_TRAIN = 1000
CASCADE_TARGET_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
CASCADE_BBOX_REG_WEIGHTS = tuple(tuple(1.0 / s for s in stds) for stds in CASCADE_TARGET_STDS)
"""torchvision ``BoxCoder`` weights that decode as mmdet's ``DeltaXYWHBBoxCoder`` with the cascade stds
(``configs/_base_/models/cascade_rcnn_r50_fpn.py``)."""

_CPU = torch.device("cpu")
FCOS_DIFFERENCES = (
    ("neck: configs/hrnet/fcos_* build HRFPN with stride=2, so its levels are strides 8..128 after strided 3x3 "
     "convs; our HRNetV2p neck has stride-1 convs and levels 4..64"),
    ("boxes: mmdet's FCOSHead regresses exp(scale_l * x) pixels (norm_on_bbox=False in "
     "configs/fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py); torchvision's relu(x) times the anchor width"),
    ("centerness: mmdet predicts it from the classification tower (centerness_on_reg=False); torchvision from "
     "the regression tower"),
    "points: mmdet's locations are stride * i + stride // 2; torchvision's anchors are centred on stride * i",
    ("scores: mmdet ranks sigmoid(cls) * sigmoid(centerness); torchvision its square root (threshold 0.05 "
     "applies to another quantity)"),
    ("input: the HRNet FCOS configs normalise BGR images with mean [103.53, 116.28, 123.675], std [57.375, "
     "57.12, 58.395]; torchvision's transform takes RGB"),
)
"""Why :func:`from_mmdet` refuses mmdet's FCOS (``dense_heads/fcos_head.py``, ``configs/hrnet/fcos_*``)."""


class MMDetAnchorGenerator(AnchorGenerator):
    """mmdet's ``AnchorGenerator`` for the HRNet configs as a torchvision anchor generator: per level l one size
    ``scale * strides[l]`` and ``ratios`` (h / w), base anchors not rounded, centred on ``strides[l] * (j, i)``.

    ``forward(image_list, feature_maps)`` -> one (sum_l H_l * W_l * A, 4) tensor per image, location-major as
    torchvision's and mmdet's ``grid_priors``; the strides are the configured ones, whatever the image size.
    """

    def __init__(
        self, strides: Sequence[int] = STRIDES, scale: int = ANCHOR_SCALE, ratios: Sequence[float] = ANCHOR_RATIOS
    ) -> None:
        strides = tuple(strides)
        super().__init__(tuple((scale * s,) for s in strides), (tuple(ratios),) * len(strides))
        self.strides = strides

    def generate_anchors(
        self,
        scales: list[int],
        aspect_ratios: list[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device = _CPU,
    ) -> Tensor:
        """(A, 4) zero-centred anchors, mmdet's ``gen_single_level_base_anchors`` (torchvision's, unrounded)."""
        sizes = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        ws = (sizes[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (sizes[None, :] * h_ratios[:, None]).reshape(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=1)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature maps (strides {self.strides}), "
                             f"got {len(feature_maps)}")
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(dtype, device)
        per_level = self.grid_anchors(grid_sizes, strides)
        return [torch.cat(per_level) for _ in image_list.image_sizes]


class MMDetRoIAlign(MultiScaleRoIAlign):
    """mmdet's ``SingleRoIExtractor`` with mmcv's ``RoIAlign(aligned=True)``: each box goes to level
    ``floor(log2(sqrt(wh) / finest_scale + 1e-6))`` clamped to the levels, pooled at ``1 / strides[level]``.

    ``forward(x, boxes, image_shapes)``: features ``{name: (B, C, H_l, W_l)}``, boxes (n_i, 4) per image in input
    pixels -> (sum n_i, C, *output_size). ``image_shapes`` is not needed (the strides are given).
    """

    def __init__(
        self,
        featmap_names: Sequence[str] = ROI_LEVELS,
        output_size: int | tuple[int, int] = 7,
        strides: Sequence[int] = ROI_STRIDES,
        finest_scale: int = FINEST_SCALE,
        sampling_ratio: int = 0,
    ) -> None:
        if len(strides) != len(featmap_names):
            raise ValueError(f"one stride per feature map: {list(featmap_names)} vs {list(strides)}")
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        self.strides = tuple(strides)
        self.finest_scale = finest_scale

    def roi_levels(self, boxes: Tensor) -> Tensor:
        """(N, 4) boxes -> (N,) level indices (mmdet ``map_roi_levels``)."""
        scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(min=0, max=len(self.strides) - 1).long()

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.roi_levels(rois[:, 1:])
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            idx = torch.where(levels == level)[0]
            pooled = roi_align(feature, rois[idx], self.output_size, 1.0 / stride, self.sampling_ratio, aligned=True)
            out[idx] = pooled.to(out.dtype)
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"strides={self.strides}, sampling_ratio={self.sampling_ratio}, aligned=True)")


def rcnn_conventions(mask: bool, cascade: bool = False) -> dict[str, Any]:
    """Keyword arguments for torchvision's ``FasterRCNN`` / ``MaskRCNN`` (``mask``) that follow mmdet where its
    defaults differ (module docstring): the anchors, aligned RoI poolers (7x7 boxes, 14x14 masks) and, except for
    Cascade R-CNN (``cascade``; its configs keep torchvision's 2000), 1000 RPN proposals after NMS in training."""
    conventions: dict[str, Any] = {
        "rpn_anchor_generator": MMDetAnchorGenerator(),
        "box_roi_pool": MMDetRoIAlign(ROI_LEVELS, 7),
    }
    if mask:
        conventions["mask_roi_pool"] = MMDetRoIAlign(ROI_LEVELS, 14)
    if not cascade:
        conventions["rpn_post_nms_top_n_train"] = RPN_POST_NMS_TOP_N_TRAIN
    return conventions


# (mmdetection key prefix, our key prefix, tensor layout); {n} and {k} (cascade stage) stand for indices.
_KEEP, _CLS, _REG, _AGNOSTIC, _MASK = "keep", "cls", "reg", "agnostic", "mask"
_RULES: tuple[tuple[str, str, str], ...] = (
    ("backbone.", "backbone.body.", _KEEP),
    ("neck.reduction_conv.conv.", "backbone.neck.reduction_conv.", _KEEP),
    ("neck.fpn_convs.{n}.conv.", "backbone.neck.fpn_convs.{n}.", _KEEP),
    ("rpn_head.rpn_conv.", "rpn.head.conv.0.0.", _KEEP),
    ("rpn_head.rpn_cls.", "rpn.head.cls_logits.", _KEEP),
    ("rpn_head.rpn_reg.", "rpn.head.bbox_pred.", _KEEP),
    ("roi_head.bbox_head.shared_fcs.0.", "roi_heads.box_head.fc6.", _KEEP),
    ("roi_head.bbox_head.shared_fcs.1.", "roi_heads.box_head.fc7.", _KEEP),
    ("roi_head.bbox_head.fc_cls.", "roi_heads.box_predictor.cls_score.", _CLS),
    ("roi_head.bbox_head.fc_reg.", "roi_heads.box_predictor.bbox_pred.", _REG),
    ("roi_head.mask_head.convs.{n}.conv.", "roi_heads.mask_head.{n}.0.", _KEEP),
    ("roi_head.mask_head.upsample.", "roi_heads.mask_predictor.conv5_mask.", _KEEP),
    ("roi_head.mask_head.conv_logits.", "roi_heads.mask_predictor.mask_fcn_logits.", _MASK),
    ("roi_head.bbox_head.{k}.shared_fcs.0.", "roi_heads.box_heads.{k}.fc6.", _KEEP),
    ("roi_head.bbox_head.{k}.shared_fcs.1.", "roi_heads.box_heads.{k}.fc7.", _KEEP),
    ("roi_head.bbox_head.{k}.fc_cls.", "roi_heads.box_predictors.{k}.cls_score.", _CLS),
    ("roi_head.bbox_head.{k}.fc_reg.", "roi_heads.box_predictors.{k}.bbox_pred.", _AGNOSTIC),
    ("roi_head.mask_head.{k}.convs.{n}.conv.", "roi_heads.mask_heads.{k}.{n}.0.", _KEEP),
    ("roi_head.mask_head.{k}.upsample.", "roi_heads.mask_predictors.{k}.conv5_mask.", _KEEP),
    ("roi_head.mask_head.{k}.conv_logits.", "roi_heads.mask_predictors.{k}.mask_fcn_logits.", _MASK),
)


def _pattern(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{k\}", r"(?P<k>\d+)")
    return re.compile(f"^{body}(?P<rest>.+)$")


_COMPILED = tuple((_pattern(theirs), _pattern(ours), theirs, ours, layout) for theirs, ours, layout in _RULES)


def _fill(template: str, match: re.Match[str]) -> str:
    groups = match.groupdict()
    return template.format(**{k: v for k, v in groups.items() if k != "rest"}) + groups["rest"]


def _rename(key: str, ours: bool) -> tuple[str, str, str] | None:
    """``key`` in one layout -> (key in the other, layout, stage id), or None where no rule matches."""
    for theirs_re, ours_re, theirs, ours_t, layout in _COMPILED:
        match = (ours_re if ours else theirs_re).match(key)
        if match:
            return _fill(theirs if ours else ours_t, match), layout, match.groupdict().get("k") or ""
    return None


def is_mmdet(sd: Mapping[str, Tensor]) -> bool:
    """Whether ``sd`` is an mmdetection detector state dict (an HRFPN neck, ``rpn_head.``, ``roi_head.`` or a
    one-stage ``bbox_head.``); ours has ``backbone.neck.``, ``rpn.`` and ``roi_heads.`` instead."""
    return any(k.startswith(MMDET_PREFIXES) for k in sd)


def _class_counts(sd: Mapping[str, Tensor], ours: bool) -> dict[str, int]:
    """Stage id ("" for the single head) -> rows of its class-score layer (classes + background)."""
    counts = {}
    for key, value in sd.items():
        renamed = _rename(key, ours)
        if renamed is not None and renamed[1] == _CLS and key.endswith("weight"):
            counts[renamed[2]] = value.shape[0]
    return counts


def _reorder_to_ours(key: str, value: Tensor, layout: str, classes: int | None) -> Tensor:
    if layout == _KEEP:
        return value
    if classes is None:
        raise CheckpointError(f"mmdet checkpoint: {key} has no class-score layer (fc_cls) in its head")
    if layout == _CLS:
        return torch.cat([value[-1:], value[:-1]])
    if layout == _AGNOSTIC:
        if value.shape[0] != 4:
            raise CheckpointError(f"mmdet checkpoint: {key} has {value.shape[0]} rows; our Cascade R-CNN stages "
                                  "regress class-agnostic deltas (4 rows, reg_class_agnostic=True)")
        return value
    per_class = 4 if layout == _REG else 1
    rows = value.shape[0]
    if layout == _REG and rows == 4 * classes:
        raise CheckpointError(f"mmdet checkpoint: {key} has 4 x {classes} rows, deltas for the background too: "
                              "an mmdetection 1.x checkpoint; convert it with mmdetection's "
                              "tools/model_converters/upgrade_model_version.py first")
    if rows != per_class * (classes - 1):
        raise CheckpointError(f"mmdet checkpoint: {key} has {rows} rows; expected {per_class} x {classes - 1} "
                              f"(one per foreground class: fc_cls has {classes} rows)")
    return torch.cat([value.new_zeros((per_class, *value.shape[1:])), value])


def _reorder_to_mmdet(key: str, value: Tensor, layout: str, classes: int | None) -> Tensor:
    if layout in (_KEEP, _AGNOSTIC):
        return value
    if layout == _CLS:
        return torch.cat([value[1:], value[:1]])
    return value[4:] if layout == _REG else value[1:]


def _convert(sd: Mapping[str, Tensor], ours: bool,
             reorder: Callable[[str, Tensor, str, int | None], Tensor]) -> dict[str, Tensor]:
    classes = _class_counts(sd, ours)
    out, unknown = {}, []
    for key, value in sd.items():
        renamed = _rename(key, ours)
        if renamed is None:
            unknown.append(key)
            continue
        new_key, layout, stage = renamed
        out[new_key] = reorder(key, value, layout, classes.get(stage))
    if unknown:
        more = f" ... and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        side = "our detectors'" if ours else "mmdet's Faster / Mask / Cascade (Mask) R-CNN"
        raise CheckpointError(f"{len(unknown)} keys are not in {side} layout: {', '.join(unknown[:8])}{more}")
    return out


def from_mmdet(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An mmdetection 2.x / 3.x HRNetV2p Faster / Mask / Cascade (Mask) R-CNN state dict -> ours (module
    docstring): keys renamed, background class moved to index 0, zero background deltas and mask channel.

    Raises :class:`~hrnet.models.convert.CheckpointError` for FCOS (:data:`FCOS_DIFFERENCES`), mmdet 1.x files,
    and keys of other heads (HTC's semantic head...), naming them."""
    if any(k.startswith("bbox_head.") for k in sd):
        raise CheckpointError("an mmdetection one-stage (FCOS) checkpoint cannot be loaded into torchvision's FCOS "
                              "by renaming; the two differ in\n  - " + "\n  - ".join(FCOS_DIFFERENCES))
    return _convert(sd, ours=False, reorder=_reorder_to_ours)


def to_mmdet(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our detector state dict -> mmdetection's layout (the inverse of :func:`from_mmdet`; our background deltas
    and background mask channel, never used, are dropped)."""
    return _convert(sd, ours=True, reorder=_reorder_to_mmdet)
