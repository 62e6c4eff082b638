"""Cascade R-CNN box and mask heads on torchvision's :class:`~torchvision.models.detection.roi_heads.RoIHeads`.

Cai & Vasconcelos, "Cascade R-CNN: Delving into High Quality Object Detection", CVPR 2018. A sequence of
box heads, each trained on the boxes refined by the one before it at a higher IoU threshold (0.5, 0.6, 0.7),
each with its own class-agnostic box regression. Details the paper leaves open follow mmdetection:
``mmdet/models/roi_heads/cascade_roi_head.py`` (``CascadeRoIHead``), ``mmdet/models/roi_heads/bbox_heads/
bbox_head.py`` (``refine_bboxes``, ``get_bboxes``) and ``configs/_base_/models/cascade_rcnn_r50_fpn.py``.

Assemble by replacing the ``roi_heads`` of a torchvision ``FasterRCNN`` / ``MaskRCNN`` (its RPN, transform and
RoI poolers are kept)::

    model = FasterRCNN(backbone, num_classes=81)
    model.roi_heads = CascadeRoIHeads(
        box_roi_pool=model.roi_heads.box_roi_pool,
        box_heads=[TwoMLPHead(256 * 7 * 7, 1024) for _ in range(3)],
        box_predictors=[CascadeBoxPredictor(1024, 81) for _ in range(3)],
    )

or ``model.roi_heads = cascade_roi_heads(model.roi_heads, 256, 81)`` for the mmdet heads of each stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.ops import boxes as box_ops

# mmdet cascade_rcnn_r50_fpn: SmoothL1Loss(beta=1.0) in every stage (torchvision's fastrcnn_loss uses 1/9).
BOX_LOSS_BETA = 1.0


class CascadeBoxPredictor(nn.Module):
    """Class scores and class-agnostic box deltas of one stage: (N, C, ...) -> (N, num_classes), (N, 4).

    ``num_classes`` counts the background, at index 0. Init as mmdet's ``BBoxHead``: normal std 0.01 for the
    scores, 0.001 for the deltas, zero biases.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, 4)
        for layer, std in ((self.cls_score, 0.01), (self.bbox_pred, 0.001)):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


class StageSamples(NamedTuple):
    """One stage's sampled RoIs, per image: boxes (n_i, 4), matched GT index (n_i,), label (n_i,; 0 is
    background), regression target (n_i, 4) in the stage's box coding, and whether the RoI is a GT box (n_i,)."""

    boxes: list[Tensor]
    matched_idxs: list[Tensor]
    labels: list[Tensor]
    regression_targets: list[Tensor]
    is_gt: list[Tensor]


def cascade_box_loss(
    class_logits: Tensor, box_regression: Tensor, labels: Tensor, regression_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over (N, num_classes) logits and smooth-L1 on the (N, 4) class-agnostic deltas of the
    positives, summed and divided by N (the sampled RoIs), as torchvision's ``fastrcnn_loss`` and mmdet's
    ``BBoxHead.loss`` (``avg_factor`` = all sampled RoIs) both do."""
    loss_cls = F.cross_entropy(class_logits, labels)
    pos = labels > 0
    loss_box = (
        F.smooth_l1_loss(box_regression[pos], regression_targets[pos], beta=BOX_LOSS_BETA, reduction="sum")
        / labels.numel()
    )
    return loss_cls, loss_box


class CascadeRoIHeads(RoIHeads):
    """Cascade R-CNN RoI heads: ``len(box_heads)`` stages sharing ``box_roi_pool`` (and ``mask_roi_pool``).

    Training: stage k samples RoIs from its input boxes plus the GT boxes (mmdet samplers have
    ``add_gt_as_proposals=True`` in every stage) with IoU >= ``stage_iou_thresholds[k]`` foreground and below it
    background (mmdet ``MaxIoUAssigner`` with pos = neg = min_pos IoU, no low-quality matches), then the balanced
    sampler. Stage 0's input is the RPN proposals; stage k+1's is stage k's sampled RoIs regressed by its deltas
    (detached) and clipped to the image, without the RoIs that were GT boxes (mmdet ``refine_bboxes`` drops
    ``pos_is_gts``; the GT boxes come back through the sampling). Losses ``loss_classifier_s{k}``,
    ``loss_box_reg_s{k}`` and ``loss_mask_s{k}`` are multiplied by ``stage_loss_weights[k]``.

    Inference (mmdet ``CascadeRoIHead._refine_roi`` / ``simple_test``): each stage runs on the previous stage's
    regressed and clipped boxes (stage 0 on the proposals), so every stage scores its own input RoIs. The class
    scores are the softmax of the stage logits averaged over stages (mmdet averages ``cls_score`` logits and
    applies the softmax in ``get_bboxes``; the paper's Caffe code averaged probabilities on the last stage's
    RoIs instead). The boxes are the last stage's regression of its input RoIs, one box for every class, then
    torchvision's postprocessing: ``score_thresh``, per-class NMS at ``nms_thresh``, ``detections_per_img``.
    Masks: each stage's mask head on the detected boxes, sigmoid probabilities averaged over stages (mmdet
    ``merge_aug_masks``), the detected class's channel returned as ``masks`` (N, 1, M, M).

    The inherited single-stage ``box_head``, ``box_predictor``, ``mask_head`` and ``mask_predictor`` are None;
    the inherited ``box_coder``, ``proposal_matcher`` and ``select_training_samples`` are stage 0's.
    """

    def __init__(
        self,
        *,
        box_roi_pool: nn.Module,
        box_heads: Sequence[nn.Module],
        box_predictors: Sequence[nn.Module],
        stage_iou_thresholds: Sequence[float] = (0.5, 0.6, 0.7),
        stage_loss_weights: Sequence[float] = (1.0, 0.5, 0.25),
        bbox_reg_weights: Sequence[tuple[float, float, float, float]] = (
            (10.0, 10.0, 5.0, 5.0),
            (20.0, 20.0, 10.0, 10.0),
            (30.0, 30.0, 15.0, 15.0),
        ),
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        mask_roi_pool: nn.Module | None = None,
        mask_heads: Sequence[nn.Module] | None = None,
        mask_predictors: Sequence[nn.Module] | None = None,
    ) -> None:
        num_stages = len(box_heads)
        per_stage = (box_predictors, stage_iou_thresholds, stage_loss_weights, bbox_reg_weights)
        if num_stages == 0 or any(len(s) != num_stages for s in per_stage):
            raise ValueError(
                f"box_heads, box_predictors, stage_iou_thresholds, stage_loss_weights and bbox_reg_weights need "
                f"one entry per stage; got lengths {[num_stages, *map(len, per_stage)]}"
            )
        mask_parts = (mask_roi_pool, mask_heads, mask_predictors)
        if any(p is None for p in mask_parts) != all(p is None for p in mask_parts):
            raise ValueError("mask_roi_pool, mask_heads and mask_predictors go together: give all three or none")
        if mask_heads is not None and not len(mask_heads) == len(mask_predictors) == num_stages:
            raise ValueError(f"mask_heads and mask_predictors need one entry per stage ({num_stages})")
        super().__init__(
            box_roi_pool=box_roi_pool,
            box_head=None,
            box_predictor=None,
            fg_iou_thresh=stage_iou_thresholds[0],
            bg_iou_thresh=stage_iou_thresholds[0],
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            bbox_reg_weights=tuple(bbox_reg_weights[0]),
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            mask_roi_pool=mask_roi_pool,
        )
        self.num_stages = num_stages
        self.stage_loss_weights = tuple(stage_loss_weights)
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.box_coders = [det_utils.BoxCoder(tuple(w)) for w in bbox_reg_weights]
        self.proposal_matchers = [
            det_utils.Matcher(t, t, allow_low_quality_matches=False) for t in stage_iou_thresholds
        ]
        self.mask_heads = None if mask_heads is None else nn.ModuleList(mask_heads)
        self.mask_predictors = None if mask_predictors is None else nn.ModuleList(mask_predictors)

    def has_mask(self) -> bool:
        return self.mask_roi_pool is not None and self.mask_heads is not None and self.mask_predictors is not None

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Proposals (n_i, 4) per image -> (detections, losses) as torchvision's ``RoIHeads``: losses in training,
        detections ``boxes`` (D, 4), ``labels`` (D,), ``scores`` (D,) [, ``masks`` (D, 1, M, M)] otherwise."""
        if self.training:
            self.check_targets(targets)
            return [], self._losses(features, proposals, image_shapes, targets)
        return self._detect(features, proposals, image_shapes), {}

    def sample_stage(self, stage: int, boxes: list[Tensor], targets: list[dict[str, Tensor]]) -> StageSamples:
        """Stage ``stage``'s training RoIs: ``boxes`` (n_i, 4) per image plus the GT boxes, matched at the stage's
        IoU threshold and subsampled by ``fg_bg_sampler``."""
        matcher, coder = self.proposal_matchers[stage], self.box_coders[stage]
        out = StageSamples([], [], [], [], [])
        for boxes_i, target in zip(boxes, targets):
            gt_boxes = target["boxes"].to(boxes_i.dtype)
            candidates = torch.cat([boxes_i, gt_boxes])
            if gt_boxes.numel() == 0:
                matched = torch.full((len(candidates),), -1, dtype=torch.int64, device=candidates.device)
                labels = torch.zeros_like(matched)
                gt_boxes = candidates.new_zeros((1, 4))
            else:
                matched = matcher(box_ops.box_iou(gt_boxes, candidates))
                labels = target["labels"][matched.clamp(min=0)].to(torch.int64)
                labels[matched < 0] = 0
            keep = self._subsample_one(labels)
            matched = matched.clamp(min=0)[keep]
            out.boxes.append(candidates[keep])
            out.matched_idxs.append(matched)
            out.labels.append(labels[keep])
            out.regression_targets.append(coder.encode_single(gt_boxes[matched], candidates[keep]))
            out.is_gt.append(keep >= len(boxes_i))
        return out

    def _subsample_one(self, labels: Tensor) -> Tensor:
        pos, neg = self.fg_bg_sampler([labels])
        return torch.where(pos[0] | neg[0])[0]

    def _stage_forward(
        self, stage: int, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """Stage ``stage``'s logits (sum n_i, num_classes) and class-agnostic deltas (sum n_i, 4)."""
        x = self.box_heads[stage](self.box_roi_pool(features, boxes, image_shapes))
        return self.box_predictors[stage](x)

    def _regress(
        self, stage: int, deltas: Tensor, boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[Tensor]:
        """Boxes (n_i, 4) moved by the stage's deltas (sum n_i, 4) and clipped to their image."""
        decoded = self.box_coders[stage].decode_single(deltas, torch.cat(boxes)).split([len(b) for b in boxes])
        return [box_ops.clip_boxes_to_image(b, shape) for b, shape in zip(decoded, image_shapes)]

    def _mask_logits(
        self, stage: int, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """Stage ``stage``'s mask logits (sum n_i, num_classes, M, M)."""
        x = self.mask_heads[stage](self.mask_roi_pool(features, boxes, image_shapes))
        return self.mask_predictors[stage](x)

    def _losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        losses = {}
        boxes = [p.detach() for p in proposals]
        for k, weight in enumerate(self.stage_loss_weights):
            s = self.sample_stage(k, boxes, targets)
            logits, deltas = self._stage_forward(k, features, s.boxes, image_shapes)
            loss_cls, loss_box = cascade_box_loss(logits, deltas, torch.cat(s.labels), torch.cat(s.regression_targets))
            losses[f"loss_classifier_s{k}"] = weight * loss_cls
            losses[f"loss_box_reg_s{k}"] = weight * loss_box
            if self.has_mask():
                pos = [torch.where(labels > 0)[0] for labels in s.labels]
                pos_boxes = [b[p] for b, p in zip(s.boxes, pos)]
                mask_logits = self._mask_logits(k, features, pos_boxes, image_shapes)
                loss_mask = maskrcnn_loss(
                    mask_logits,
                    pos_boxes,
                    [t["masks"] for t in targets],
                    [t["labels"] for t in targets],
                    [m[p] for m, p in zip(s.matched_idxs, pos)],
                )
                losses[f"loss_mask_s{k}"] = weight * loss_mask
            if k + 1 < self.num_stages:
                refined = self._regress(k, deltas.detach(), s.boxes, image_shapes)
                boxes = [b[~gt] for b, gt in zip(refined, s.is_gt)]
        return losses

    def _detect(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        boxes = proposals
        logits_sum = None
        for k in range(self.num_stages):
            logits, deltas = self._stage_forward(k, features, boxes, image_shapes)
            logits_sum = logits if logits_sum is None else logits_sum + logits
            boxes = self._regress(k, deltas, boxes, image_shapes)
        scores = F.softmax(logits_sum / self.num_stages, dim=-1).split([len(b) for b in boxes])
        result = [self._postprocess(b, p) for b, p in zip(boxes, scores)]
        if self.has_mask():
            det_boxes = [r["boxes"] for r in result]
            stage_probs = [
                self._mask_logits(k, features, det_boxes, image_shapes).sigmoid() for k in range(self.num_stages)
            ]
            labels = torch.cat([r["labels"] for r in result])
            probs = torch.stack(stage_probs).mean(0)[torch.arange(len(labels), device=labels.device), labels][:, None]
            for r, m in zip(result, probs.split([len(b) for b in det_boxes])):
                r["masks"] = m
        return result

    def _postprocess(self, boxes: Tensor, scores: Tensor) -> dict[str, Tensor]:
        """One image's (n, 4) boxes and (n, num_classes) probabilities -> detections, as torchvision's
        ``postprocess_detections`` with one box for all classes."""
        num_classes = scores.shape[1]
        labels = torch.arange(1, num_classes, device=scores.device).expand(len(boxes), -1).reshape(-1)
        boxes = boxes[:, None].expand(-1, num_classes - 1, -1).reshape(-1, 4)
        scores = scores[:, 1:].reshape(-1)
        keep = torch.where(scores > self.score_thresh)[0]
        keep = keep[box_ops.remove_small_boxes(boxes[keep], min_size=1e-2)]
        keep = keep[box_ops.batched_nms(boxes[keep], scores[keep], labels[keep], self.nms_thresh)]
        keep = keep[: self.detections_per_img]
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


def cascade_roi_heads(roi_heads: RoIHeads, out_channels: int, num_classes: int,
                      bbox_reg_weights: Sequence[tuple[float, float, float, float]] | None = None) -> CascadeRoIHeads:
    """A 3-stage cascade replacing torchvision ``roi_heads``: its poolers, sampler size and fraction, score and NMS
    thresholds, detections per image and head widths are kept. Each stage gets mmdet's heads (cascade_rcnn_r50_fpn and
    cascade_mask_rcnn_r50_fpn): 2 fc of 1024 (``TwoMLPHead``) and, when ``roi_heads`` has masks, 4 3x3 convs of
    256, a 2x deconv and per-class 1x1 logits (``MaskRCNNHeads`` + ``MaskRCNNPredictor``, torchvision's Mask R-CNN
    defaults). ``out_channels``: the pooled features' channels; ``num_classes`` counts the background;
    ``bbox_reg_weights``: the stages' box-coder weights (default the paper's; mmdetection's configs give the third
    stage 1/0.033 and 1/0.067, :data:`hrnet.models.mmdet.CASCADE_BBOX_REG_WEIGHTS`)."""
    resolution = roi_heads.box_roi_pool.output_size
    box_in = out_channels * resolution[0] * resolution[1]
    with_mask = roi_heads.has_mask()
    width = roi_heads.box_head.fc7.out_features  # the widths of the heads it replaces (torchvision: 1024, 256)
    mask_width = roi_heads.mask_predictor.conv5_mask.in_channels if with_mask else 0
    return CascadeRoIHeads(
        box_roi_pool=roi_heads.box_roi_pool,
        box_heads=[TwoMLPHead(box_in, width) for _ in range(3)],
        box_predictors=[CascadeBoxPredictor(width, num_classes) for _ in range(3)],
        batch_size_per_image=roi_heads.fg_bg_sampler.batch_size_per_image,
        positive_fraction=roi_heads.fg_bg_sampler.positive_fraction,
        score_thresh=roi_heads.score_thresh,
        nms_thresh=roi_heads.nms_thresh,
        detections_per_img=roi_heads.detections_per_img,
        **({"bbox_reg_weights": bbox_reg_weights} if bbox_reg_weights is not None else {}),
        mask_roi_pool=roi_heads.mask_roi_pool if with_mask else None,
        mask_heads=[MaskRCNNHeads(out_channels, (mask_width,) * 4, 1) for _ in range(3)] if with_mask else None,
        mask_predictors=[MaskRCNNPredictor(mask_width, mask_width, num_classes) for _ in range(3)]
        if with_mask else None,
    )
