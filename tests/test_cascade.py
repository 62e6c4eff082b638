"""Cascade R-CNN heads (hrnet.models.cascade): assembly on torchvision's FasterRCNN / MaskRCNN, per-stage sampling,
loss weights, inference scoring and refinement with hand-rigged stage heads, state-dict names."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from hrnet.models.cascade import CascadeBoxPredictor, CascadeRoIHeads, cascade_roi_heads

C = 16  # toy feature channels
REP = 64  # toy box-head representation size
NUM_CLASSES = 3  # background + 2
SIDE = 64  # image side


class ToyBackbone(nn.Module):
    """Two stride-2 convs: (B, 3, H, W) -> {"0": (B, C, H/4, W/4)}."""

    out_channels = C

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, C, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(C, C, 3, stride=2, padding=1), nn.ReLU()
        )

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([("0", self.body(x))])


def box_pool() -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)


def mask_pool() -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2)


def cascade_heads(with_mask: bool = False, **kwargs) -> CascadeRoIHeads:
    return CascadeRoIHeads(
        box_roi_pool=box_pool(),
        box_heads=[TwoMLPHead(C * 7 * 7, REP) for _ in range(3)],
        box_predictors=[CascadeBoxPredictor(REP, NUM_CLASSES) for _ in range(3)],
        mask_roi_pool=mask_pool() if with_mask else None,
        mask_heads=[MaskRCNNHeads(C, (C, C), 1) for _ in range(3)] if with_mask else None,
        mask_predictors=[MaskRCNNPredictor(C, C, NUM_CLASSES) for _ in range(3)] if with_mask else None,
        **kwargs,
    )


def cascade_model(with_mask: bool) -> nn.Module:
    """The assembly: a torchvision (Mask) R-CNN whose ``roi_heads`` is replaced by the cascade."""
    anchors = AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),))
    if with_mask:
        model = MaskRCNN(
            ToyBackbone(),
            NUM_CLASSES,
            rpn_anchor_generator=anchors,
            box_roi_pool=box_pool(),
            mask_roi_pool=mask_pool(),
            min_size=SIDE,
            max_size=SIDE,
        )
    else:
        model = FasterRCNN(
            ToyBackbone(),
            NUM_CLASSES,
            rpn_anchor_generator=anchors,
            box_roi_pool=box_pool(),
            min_size=SIDE,
            max_size=SIDE,
        )
    rh = model.roi_heads
    model.roi_heads = CascadeRoIHeads(
        box_roi_pool=rh.box_roi_pool,
        box_heads=[TwoMLPHead(C * 7 * 7, REP) for _ in range(3)],
        box_predictors=[CascadeBoxPredictor(REP, NUM_CLASSES) for _ in range(3)],
        mask_roi_pool=rh.mask_roi_pool,
        mask_heads=[MaskRCNNHeads(C, (C, C), 1) for _ in range(3)] if with_mask else None,
        mask_predictors=[MaskRCNNPredictor(C, C, NUM_CLASSES) for _ in range(3)] if with_mask else None,
    )
    return model


def box_masks(boxes: Tensor) -> Tensor:
    masks = torch.zeros(len(boxes), SIDE, SIDE, dtype=torch.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        m[y1:y2, x1:x2] = 1
    return masks


def toy_targets() -> list[dict[str, Tensor]]:
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 40.0]]), torch.tensor([[20.0, 10.0, 60.0, 50.0], [4.0, 30.0, 24.0, 60.0]])]
    labels = [torch.tensor([1]), torch.tensor([2, 1])]
    return [{"boxes": b, "labels": lab, "masks": box_masks(b)} for b, lab in zip(boxes, labels)]


def jittered(boxes: Tensor, n: int = 40) -> Tensor:
    """Proposals around the GT boxes (a spread of IoUs) plus random ones, clipped to the image."""
    near = boxes.repeat(n, 1) + 6 * torch.randn(n * len(boxes), 4)
    far = torch.rand(n, 2) * (SIDE - 16)
    far = torch.cat([far, far + 8 + 8 * torch.rand(n, 2)], dim=1)
    out = torch.cat([near, far]).clamp(0, SIDE)
    return torch.cat([out[:, :2].minimum(out[:, 2:] - 1), out[:, 2:]], dim=1)


@pytest.mark.parametrize("with_mask", [False, True], ids=["faster", "mask"])
def test_assembled_model_trains_and_detects(with_mask: bool) -> None:
    torch.manual_seed(0)
    model = cascade_model(with_mask)
    images = [torch.rand(3, SIDE, SIDE), torch.rand(3, SIDE, SIDE)]
    targets = toy_targets()
    model.train()
    losses = model(images, targets)
    stage_keys = {f"loss_{n}_s{k}" for k in range(3) for n in ("classifier", "box_reg") + (("mask",) * with_mask)}
    assert stage_keys <= set(losses)
    assert {"loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    assert "loss_classifier" not in losses
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(losses[k] > 0 for k in stage_keys)

    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det in out:
        n = len(det["boxes"])
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,) and det["scores"].shape == (n,)
        assert ((det["labels"] >= 1) & (det["labels"] < NUM_CLASSES)).all()
        assert ("masks" in det) == with_mask
        if with_mask:
            assert det["masks"].shape == (n, 1, SIDE, SIDE)


def test_overfits_one_image() -> None:
    torch.manual_seed(0)
    model = cascade_model(with_mask=False).train()
    image, target = [torch.rand(3, SIDE, SIDE)], toy_targets()[1:]
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    totals = []
    for _ in range(20):
        loss = sum(model(image, target).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert sum(totals[-3:]) / 3 < 0.7 * totals[0], totals


def test_stage_sampling_thresholds_and_box_coding() -> None:
    heads = cascade_heads()
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # IoU with the GT = 10 / width: 0.55, 0.65, 0.75
    proposals = torch.tensor([[0.0, 0.0, 10 / iou, 10.0] for iou in (0.55, 0.65, 0.75)])
    targets = [{"boxes": gt, "labels": torch.tensor([2])}]
    expected_labels = {0: [2, 2, 2, 2], 1: [0, 2, 2, 2], 2: [0, 0, 2, 2]}
    for stage, wanted in expected_labels.items():
        s = heads.sample_stage(stage, [proposals], targets)  # 4 candidates: fewer than the 512 sampled, all kept
        torch.testing.assert_close(s.boxes[0], torch.cat([proposals, gt]))
        assert s.labels[0].tolist() == wanted
        assert s.is_gt[0].tolist() == [False, False, False, True]
        # the IoU-0.75 box [0, 0, 13.33, 10]: dx = wx * (5 - 6.667) / 13.33 = -0.125 * wx with wx = 10, 20, 30
        assert s.regression_targets[0][2, 0].item() == pytest.approx(-0.125 * 10 * (stage + 1), rel=1e-4)


def test_background_only_image_samples_negatives() -> None:
    heads = cascade_heads()
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    s = heads.sample_stage(2, [torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])], targets)
    assert s.labels[0].tolist() == [0, 0]


def _train_losses(heads: CascadeRoIHeads, seed: int = 0) -> dict[str, Tensor]:
    torch.manual_seed(seed)
    features = {"0": torch.randn(2, C, SIDE // 4, SIDE // 4)}
    targets = toy_targets()
    proposals = [jittered(t["boxes"]) for t in targets]
    return heads.train()(features, proposals, [(SIDE, SIDE)] * 2, targets)[1]


def test_stage_loss_weights_scale_each_stage() -> None:
    torch.manual_seed(1)
    heads = cascade_heads(with_mask=True, stage_loss_weights=(1.0, 1.0, 1.0))
    unit = _train_losses(heads)
    heads.stage_loss_weights = (1.0, 0.5, 0.25)
    default = _train_losses(heads)
    heads.stage_loss_weights = (1.0, 0.0, 0.0)
    first_only = _train_losses(heads)
    for k, w in enumerate((1.0, 0.5, 0.25)):
        for name in ("classifier", "box_reg", "mask"):
            key = f"loss_{name}_s{k}"
            assert unit[key] > 0
            torch.testing.assert_close(default[key], w * unit[key])
            assert (first_only[key] > 0) if k == 0 else (first_only[key] == 0)


def test_later_stages_do_not_backprop_into_earlier_regression() -> None:
    torch.manual_seed(2)
    heads = cascade_heads(stage_loss_weights=(0.0, 1.0, 1.0))
    sum(_train_losses(heads).values()).backward()
    assert heads.box_predictors[0].bbox_pred.weight.grad.abs().sum() == 0
    assert heads.box_predictors[1].bbox_pred.weight.grad.abs().sum() > 0


def test_refinement_drops_gt_rois_before_the_next_stage() -> None:
    """mmdet ``refine_bboxes``: stage k+1 gets stage k's sampled RoIs minus the GT ones (re-added by sampling)."""
    torch.manual_seed(3)
    heads = cascade_heads()
    inputs, samples = [], []
    sample_stage = heads.sample_stage

    def recording(stage: int, boxes: list[Tensor], targets: list[dict[str, Tensor]]):
        inputs.append([len(b) for b in boxes])
        samples.append(sample_stage(stage, boxes, targets))
        return samples[-1]

    heads.sample_stage = recording
    _train_losses(heads)
    for k in (1, 2):
        assert inputs[k] == [int((~gt).sum()) for gt in samples[k - 1].is_gt]
        assert all(gt.sum() == len(t["boxes"]) for gt, t in zip(samples[k].is_gt, toy_targets()))


def rigged_heads(class_logits: list[list[float]], dx: list[float], mask_logits: list[list[float]]) -> CascadeRoIHeads:
    """Stage k predicts constant logits ``class_logits[k]``, deltas (dx[k], 0, 0, 0) and mask logits
    ``mask_logits[k][c]`` everywhere, whatever the RoI features."""
    heads = CascadeRoIHeads(
        box_roi_pool=box_pool(),
        box_heads=[nn.Flatten() for _ in range(3)],
        box_predictors=[CascadeBoxPredictor(C * 7 * 7, NUM_CLASSES) for _ in range(3)],
        mask_roi_pool=mask_pool(),
        mask_heads=[MaskRCNNHeads(C, (8,), 1) for _ in range(3)],
        mask_predictors=[MaskRCNNPredictor(8, 8, NUM_CLASSES) for _ in range(3)],
        score_thresh=0.0,
    )
    with torch.no_grad():
        for k, (p, m) in enumerate(zip(heads.box_predictors, heads.mask_predictors)):
            for layer in (p.cls_score, p.bbox_pred, m.mask_fcn_logits):
                layer.weight.zero_()
            p.cls_score.bias.copy_(torch.tensor(class_logits[k]))
            p.bbox_pred.bias.copy_(torch.tensor([dx[k], 0.0, 0.0, 0.0]))
            m.mask_fcn_logits.bias.copy_(torch.tensor(mask_logits[k]))
    return heads.eval()


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_inference_averages_stage_logits_and_masks_on_clipped_proposals() -> None:
    class_logits = [[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]]
    mask_logits = [[0.0, 2.0, -1.0], [0.0, -2.0, 1.0], [0.0, 4.0, 0.0]]
    heads = rigged_heads(class_logits, [0.0, 0.0, 0.0], mask_logits)
    # mean logits (1/3, 2/3, 1) -> softmax; the mean of the stages' softmaxes would give 0.348, 0.409 instead
    z = sum(math.exp(v) for v in (1 / 3, 2 / 3, 1))
    score = {1: math.exp(2 / 3) / z, 2: math.exp(1) / z}
    assert score[1] == pytest.approx(0.32132, abs=1e-5) and score[2] == pytest.approx(0.44845, abs=1e-5)
    mask = {c: sum(sigmoid(m[c]) for m in mask_logits) / 3 for c in (1, 2)}  # 0.6607, 0.5
    proposals = [torch.tensor([[-5.0, 10.0, 30.0, 40.0], [20.0, 20.0, 70.0, 60.0]]), torch.tensor([[10.0, 10, 50, 50]])]
    clipped = [torch.tensor([[0.0, 10.0, 30.0, 40.0], [20.0, 20.0, 64.0, 60.0]]), proposals[1]]
    features = {"0": torch.randn(2, C, SIDE // 4, SIDE // 4)}
    with torch.no_grad():
        out, losses = heads(features, proposals, [(SIDE, SIDE)] * 2)
    assert losses == {}
    for det, boxes in zip(out, clipped):
        order = sorted(range(len(det["labels"])), key=lambda i: (det["labels"][i].item(), det["boxes"][i, 0].item()))
        labels = det["labels"][order]
        assert labels.tolist() == [1] * len(boxes) + [2] * len(boxes)  # every box for every foreground class
        torch.testing.assert_close(det["boxes"][order], torch.cat([boxes, boxes]))
        torch.testing.assert_close(det["scores"][order], torch.tensor([score[c] for c in labels.tolist()]))
        assert det["masks"].shape == (len(labels), 1, 28, 28)
        torch.testing.assert_close(
            det["masks"][order],
            torch.tensor([mask[c] for c in labels.tolist()]).view(-1, 1, 1, 1).expand(-1, 1, 28, 28),
        )


def test_inference_chains_stage_regressions_with_stage_box_coding() -> None:
    # stage k moves x by dx_k / wx_k * width: 1 / 10 * 20 = 2 / 20 * 20 = 3 / 30 * 20 = 2 pixels each
    heads = rigged_heads([[0.0, 3.0, 0.0]] * 3, [1.0, 2.0, 3.0], [[0.0, 0.0, 0.0]] * 3)
    features = {"0": torch.randn(1, C, SIDE // 4, SIDE // 4)}
    with torch.no_grad():
        out, _ = heads(features, [torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 40.0, 60.0, 50.0]])], [(SIDE, SIDE)])
    keep = out[0]["labels"] == 1
    boxes = out[0]["boxes"][keep][out[0]["boxes"][keep][:, 0].argsort()]
    # the second box (width 10) moves 3 x 1 pixel
    torch.testing.assert_close(boxes, torch.tensor([[16.0, 10.0, 36.0, 30.0], [53.0, 40.0, 63.0, 50.0]]))


def test_inference_without_detections() -> None:
    heads = rigged_heads([[5.0, 0.0, 0.0]] * 3, [0.0] * 3, [[0.0] * 3] * 3)  # background wins everywhere
    heads.score_thresh = 0.05
    features = {"0": torch.randn(2, C, SIDE // 4, SIDE // 4)}
    with torch.no_grad():
        out, _ = heads(features, [torch.tensor([[10.0, 10.0, 30.0, 30.0]]), torch.zeros(0, 4)], [(SIDE, SIDE)] * 2)
    for det in out:
        assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["masks"].shape == (0, 1, 28, 28)


def test_state_dict_keys() -> None:
    keys = set(cascade_model(with_mask=True).roi_heads.state_dict())
    for k in range(3):
        expected = {
            f"box_heads.{k}.fc6.weight",
            f"box_heads.{k}.fc7.weight",
            f"box_predictors.{k}.cls_score.weight",
            f"box_predictors.{k}.bbox_pred.weight",
            f"mask_heads.{k}.0.0.weight",
            f"mask_heads.{k}.1.0.weight",
            f"mask_predictors.{k}.conv5_mask.weight",
            f"mask_predictors.{k}.mask_fcn_logits.weight",
        }
        assert expected <= keys
    assert not any(key.startswith(("box_head.", "box_predictor.", "mask_head.", "mask_predictor.")) for key in keys)
    sd = cascade_heads().state_dict()
    assert sd["box_predictors.2.bbox_pred.weight"].shape == (4, REP)  # class-agnostic
    assert sd["box_predictors.2.cls_score.weight"].shape == (NUM_CLASSES, REP)


@pytest.mark.parametrize("with_mask", [False, True], ids=["faster", "mask"])
def test_cascade_roi_heads_from_torchvision(with_mask: bool) -> None:
    anchors = AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),))
    settings = {"box_score_thresh": 0.3, "box_nms_thresh": 0.4, "box_detections_per_img": 7}
    settings |= {"box_batch_size_per_image": 64, "box_positive_fraction": 0.5}
    cls = MaskRCNN if with_mask else FasterRCNN
    model = cls(ToyBackbone(), NUM_CLASSES, rpn_anchor_generator=anchors, min_size=SIDE, max_size=SIDE, **settings)
    rh = model.roi_heads
    heads = cascade_roi_heads(rh, C, NUM_CLASSES)
    assert heads.box_roi_pool is rh.box_roi_pool and heads.has_mask() == with_mask
    assert (heads.mask_roi_pool is rh.mask_roi_pool) if with_mask else heads.mask_heads is None
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.3, 0.4, 7)
    assert (heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction) == (64, 0.5)
    assert [p.bbox_pred.out_features for p in heads.box_predictors] == [4, 4, 4]
    assert heads.box_heads[0].fc6.in_features == C * 7 * 7 and heads.box_heads[0].fc7.out_features == 1024
    model.roi_heads = heads
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, SIDE, SIDE)])
    assert len(det["boxes"]) <= 7 and ("masks" in det) == with_mask


def test_rejects_mismatched_stages() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        cascade_heads(stage_iou_thresholds=(0.5, 0.6))
    with pytest.raises(ValueError, match="all three or none"):
        CascadeRoIHeads(
            box_roi_pool=box_pool(),
            box_heads=[nn.Flatten() for _ in range(3)],
            box_predictors=[CascadeBoxPredictor(C * 49, NUM_CLASSES) for _ in range(3)],
            mask_roi_pool=mask_pool(),
        )
