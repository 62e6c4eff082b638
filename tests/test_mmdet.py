"""mmdetection HRNetV2p checkpoints in our torchvision detectors (:mod:`hrnet.models.mmdet`): the key layout as
mmdetection's model definitions give it, the class order, the converted heads computing what mmdetection's
compute (re-stated here with plain tensor ops), and mmdet's anchors and aligned RoIAlign."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper

from hrnet import create_model
from hrnet.models import CheckpointError, read_checkpoint
from hrnet.models.detection import ROI_LEVELS, anchor_generator
from hrnet.models.mmdet import (
    CASCADE_BBOX_REG_WEIGHTS,
    CASCADE_TARGET_STDS,
    MMDetAnchorGenerator,
    MMDetRoIAlign,
    from_mmdet,
    is_mmdet,
    rcnn_conventions,
    to_mmdet,
)

C = 80  # COCO foreground classes (mmdet's num_classes)
RCNN_STDS = (0.1, 0.1, 0.2, 0.2)  # configs/_base_/models/mask_rcnn_r50_fpn.py, roi_head.bbox_head.bbox_coder
MAX_LOG_RATIO = abs(math.log(16 / 1000))
"""mmdet clamps dw, dh to +-log(1000 / 16), torchvision's BoxCoder from above only: the tests keep the deltas inside."""


def _pair(prefix: str, weight: tuple[int, ...], transposed: bool = False) -> dict[str, tuple[int, ...]]:
    """A layer's weight and bias shapes (a transposed conv's weight is (in, out, k, k))."""
    return {f"{prefix}.weight": weight, f"{prefix}.bias": (weight[1] if transposed else weight[0],)}


# mmdetection's W18 heads (configs/hrnet/mask_rcnn_hrnetv2p_w18_1x_coco.py on mask_rcnn_r50_fpn.py), as its modules
# name and shape them: HRFPN's ConvModules (bias, no norm), RPNHead (sigmoid: one logit per anchor),
# Shared2FCBBoxHead (fc_cls C + 1, fc_reg 4C), FCNMaskHead (4 ConvModules, deconv, C logits).
MMDET_W18_HEADS = {
    **_pair("neck.reduction_conv.conv", (256, 18 + 36 + 72 + 144, 1, 1)),
    **{k: v for i in range(5) for k, v in _pair(f"neck.fpn_convs.{i}.conv", (256, 256, 3, 3)).items()},
    **_pair("rpn_head.rpn_conv", (256, 256, 3, 3)),
    **_pair("rpn_head.rpn_cls", (3, 256, 1, 1)),
    **_pair("rpn_head.rpn_reg", (12, 256, 1, 1)),
    **_pair("roi_head.bbox_head.shared_fcs.0", (1024, 256 * 7 * 7)),
    **_pair("roi_head.bbox_head.shared_fcs.1", (1024, 1024)),
    **_pair("roi_head.bbox_head.fc_cls", (C + 1, 1024)),
    **_pair("roi_head.bbox_head.fc_reg", (4 * C, 1024)),
}
MMDET_W18_MASK_HEAD = {
    **{k: v for n in range(4) for k, v in _pair(f"roi_head.mask_head.convs.{n}.conv", (256, 256, 3, 3)).items()},
    **_pair("roi_head.mask_head.upsample", (256, 256, 2, 2), transposed=True),  # deconv 2x2, stride 2
    **_pair("roi_head.mask_head.conv_logits", (C, 256, 1, 1)),
}
# A sample of mmdet's HRNet W18 keys (backbones/hrnet.py: Sequential transitions and fuse paths, resnet.py blocks).
MMDET_W18_BACKBONE = {
    "backbone.conv1.weight": (64, 3, 3, 3),
    "backbone.bn2.running_var": (64,),
    "backbone.layer1.0.conv3.weight": (256, 64, 1, 1),
    "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "backbone.layer1.0.downsample.1.weight": (256,),
    "backbone.transition1.0.0.weight": (18, 256, 3, 3),
    "backbone.transition1.1.0.0.weight": (36, 256, 3, 3),
    "backbone.transition2.2.0.0.weight": (72, 36, 3, 3),
    "backbone.transition3.3.0.1.weight": (144,),
    "backbone.stage2.0.branches.1.3.conv2.weight": (36, 36, 3, 3),
    "backbone.stage3.3.fuse_layers.2.0.1.0.weight": (72, 18, 3, 3),
    "backbone.stage4.2.fuse_layers.0.3.0.weight": (18, 144, 1, 1),
    "backbone.stage4.2.fuse_layers.3.0.2.0.weight": (144, 18, 3, 3),
    "backbone.stage4.2.fuse_layers.3.0.0.1.running_mean": (18,),
}


def _cascade_heads(mask: bool) -> dict[str, tuple[int, ...]]:
    """mmdet CascadeRoIHead (cascade_roi_head.py): three Shared2FCBBoxHeads with class-agnostic fc_reg, and with
    masks three FCNMaskHeads (one mask_head dict is repeated per stage)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(3):
        shapes |= _pair(f"roi_head.bbox_head.{k}.shared_fcs.0", (1024, 256 * 7 * 7))
        shapes |= _pair(f"roi_head.bbox_head.{k}.shared_fcs.1", (1024, 1024))
        shapes |= _pair(f"roi_head.bbox_head.{k}.fc_cls", (C + 1, 1024))
        shapes |= _pair(f"roi_head.bbox_head.{k}.fc_reg", (4, 1024))
        if mask:
            for n in range(4):
                shapes |= _pair(f"roi_head.mask_head.{k}.convs.{n}.conv", (256, 256, 3, 3))
            shapes |= _pair(f"roi_head.mask_head.{k}.upsample", (256, 256, 2, 2), transposed=True)
            shapes |= _pair(f"roi_head.mask_head.{k}.conv_logits", (C, 256, 1, 1))
    return shapes


def mmdet_state_dict(body: torch.nn.Module, heads: dict[str, tuple[int, ...]],
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """An mmdet-layout state dict with random values: the backbone under mmdet's names (ours are the same), the
    neck and heads from the tables above (not from our model)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in body.state_dict().items():
        if not v.is_floating_point():
            sd["backbone." + k] = v.clone()
        elif k.endswith("running_var"):
            sd["backbone." + k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            sd["backbone." + k] = torch.randn(v.shape, generator=g) * 0.1
    for k, shape in heads.items():
        sd[k] = torch.randn(shape, generator=g) * 0.05
    return sd


def mmdet_delta2bbox(rois: torch.Tensor, deltas: torch.Tensor, stds: tuple[float, ...]) -> torch.Tensor:
    """mmdet ``DeltaXYWHBBoxCoder.decode`` (means 0, no clipping): rois (N, 4), deltas (N, 4k) -> (N, k, 4)."""
    d = deltas.reshape(len(deltas), -1, 4) * torch.tensor(stds)
    dx, dy, dw, dh = d.unbind(-1)
    dw, dh = dw.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO), dh.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    px, py = ((rois[:, 0] + rois[:, 2]) * 0.5)[:, None], ((rois[:, 1] + rois[:, 3]) * 0.5)[:, None]
    pw, ph = (rois[:, 2] - rois[:, 0])[:, None], (rois[:, 3] - rois[:, 1])[:, None]
    gx, gy, gw, gh = px + pw * dx, py + ph * dy, pw * dw.exp(), ph * dh.exp()
    return torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1)


def mmdet_anchors(sizes: list[tuple[int, int]], strides=(4, 8, 16, 32, 64), ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """mmdet ``AnchorGenerator(scales=[8], ratios, strides).grid_priors`` concatenated over levels."""
    out = []
    for (h, w), s in zip(sizes, strides):
        h_ratios = torch.sqrt(torch.tensor(ratios))
        ws, hs = s / h_ratios * 8, s * h_ratios * 8
        base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)
        xx = (torch.arange(w) * s).repeat(h).float()
        yy = (torch.arange(h) * s).view(-1, 1).repeat(1, w).view(-1).float()
        out.append((base[None] + torch.stack([xx, yy, xx, yy], dim=-1)[:, None]).view(-1, 4))
    return torch.cat(out)


def mmcv_roi_align(feature: torch.Tensor, box: list[float], scale: float, out: int = 7) -> torch.Tensor:
    """mmcv ``RoIAlign(out, scale, sampling_ratio=0, pool_mode='avg', aligned=True)`` of one box on a (C, H, W) map
    (``roi_align_cuda_kernel.cuh``, ``bilinear_interpolate`` in ``common_cuda_helper.hpp``)."""
    height, width = feature.shape[-2:]

    def bilinear(y: float, x: float) -> torch.Tensor:
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return feature.new_zeros(feature.shape[0])
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_high = y_low = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_high = x_low = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1 - ly, 1 - lx
        f = feature
        return hy * hx * f[:, y_low, x_low] + hy * lx * f[:, y_low, x_high] + ly * hx * f[:, y_high, x_low] \
            + ly * lx * f[:, y_high, x_high]

    x1, y1, x2, y2 = (v * scale - 0.5 for v in box)
    bin_h, bin_w = (y2 - y1) / out, (x2 - x1) / out
    grid_h, grid_w = math.ceil((y2 - y1) / out), math.ceil((x2 - x1) / out)
    result = feature.new_zeros((feature.shape[0], out, out))
    for ph in range(out):
        for pw in range(out):
            total = feature.new_zeros(feature.shape[0])
            for iy in range(grid_h):
                y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    total = total + bilinear(y, x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w)
            result[:, ph, pw] = total / max(grid_h * grid_w, 1)
    return result


@pytest.fixture(scope="module")
def maskrcnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("maskrcnn_hrnetv2p_w18", mmdet_conventions=True).eval()


@pytest.fixture(scope="module")
def mmdet_sd(maskrcnn) -> dict[str, torch.Tensor]:
    return mmdet_state_dict(maskrcnn.backbone.body, {**MMDET_W18_HEADS, **MMDET_W18_MASK_HEAD})


@pytest.fixture(scope="module")
def converted(maskrcnn, mmdet_sd) -> torch.nn.Module:
    maskrcnn.load_state_dict(from_mmdet(mmdet_sd))  # strict
    return maskrcnn


def test_our_model_has_mmdets_w18_mask_rcnn_layout(maskrcnn) -> None:
    theirs = to_mmdet(maskrcnn.state_dict())
    expected = {**MMDET_W18_HEADS, **MMDET_W18_MASK_HEAD}
    assert {k: tuple(theirs[k].shape) for k in expected if k in theirs} == expected
    assert {k: tuple(theirs[k].shape) for k in MMDET_W18_BACKBONE if k in theirs} == MMDET_W18_BACKBONE
    assert set(theirs) - {k for k in theirs if k.startswith("backbone.")} == set(expected)


def test_mmdet_mask_rcnn_loads_strictly_and_round_trips(converted, mmdet_sd) -> None:
    ours = converted.state_dict()
    assert ours["roi_heads.box_predictor.cls_score.weight"].shape == (C + 1, 1024)
    assert ours["roi_heads.box_predictor.bbox_pred.weight"].shape == (4 * (C + 1), 1024)
    assert ours["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape == (C + 1, 256, 1, 1)
    torch.testing.assert_close(ours["backbone.body.stage4.2.fuse_layers.3.0.2.0.weight"],
                               mmdet_sd["backbone.stage4.2.fuse_layers.3.0.2.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(ours["rpn.head.conv.0.0.weight"], mmdet_sd["rpn_head.rpn_conv.weight"], rtol=0, atol=0)
    back = to_mmdet(from_mmdet(mmdet_sd))
    assert back.keys() == mmdet_sd.keys()
    for k, v in mmdet_sd.items():
        assert torch.equal(back[k], v), k


def test_mmdet_faster_rcnn_loads_strictly() -> None:
    model = create_model("fasterrcnn_hrnetv2p_w18")
    model.load_state_dict(from_mmdet(mmdet_state_dict(model.backbone.body, MMDET_W18_HEADS, seed=1)))


def test_background_moves_from_last_to_first() -> None:
    cls_w = torch.zeros(C + 1, 3)
    cls_w[C] = 7.0  # mmdet's background row
    cls_w[0] = 3.0  # mmdet class 0 (COCO person)
    reg_w = torch.arange(4 * C * 3, dtype=torch.float32).view(4 * C, 3)
    logits_w = torch.arange(C, dtype=torch.float32).view(C, 1, 1, 1) + 1
    ours = from_mmdet({
        "roi_head.bbox_head.fc_cls.weight": cls_w, "roi_head.bbox_head.fc_cls.bias": torch.arange(C + 1.0),
        "roi_head.bbox_head.fc_reg.weight": reg_w, "roi_head.bbox_head.fc_reg.bias": torch.ones(4 * C),
        "roi_head.mask_head.conv_logits.weight": logits_w, "roi_head.mask_head.conv_logits.bias": torch.ones(C),
    })
    cls = ours["roi_heads.box_predictor.cls_score.weight"]
    assert (cls[0] == 7).all() and (cls[1] == 3).all() and (cls[2:] == 0).all()
    assert ours["roi_heads.box_predictor.cls_score.bias"].tolist() == [C] + list(range(C))
    reg = ours["roi_heads.box_predictor.bbox_pred.weight"]
    assert (reg[:4] == 0).all() and torch.equal(reg[4:8], reg_w[:4]) and torch.equal(reg[-4:], reg_w[-4:])
    assert ours["roi_heads.box_predictor.bbox_pred.bias"][:4].tolist() == [0.0] * 4
    logits = ours["roi_heads.mask_predictor.mask_fcn_logits.weight"].flatten()
    assert logits[0] == 0 and logits[1:].tolist() == list(range(1, C + 1))


def test_converted_box_head_computes_mmdets(converted, mmdet_sd) -> None:
    """mmdet Shared2FCBBoxHead + get_bboxes: softmax over fc_cls (background last), fc_reg rows 4c..4c+3 decoded
    with stds 0.1/0.1/0.2/0.2; ours: class c + 1."""
    torch.manual_seed(1)
    feats = torch.randn(6, 256, 7, 7) * 0.1
    proposals = torch.tensor([[10.0, 20, 80, 90], [0, 0, 300, 200], [50, 60, 55, 100]]).repeat(2, 1)
    w = {k[len("roi_head.bbox_head."):]: v for k, v in mmdet_sd.items() if k.startswith("roi_head.bbox_head.")}
    x = F.relu(F.linear(feats.flatten(1), w["shared_fcs.0.weight"], w["shared_fcs.0.bias"]))
    x = F.relu(F.linear(x, w["shared_fcs.1.weight"], w["shared_fcs.1.bias"]))
    theirs_p = F.softmax(F.linear(x, w["fc_cls.weight"], w["fc_cls.bias"]), dim=-1)
    theirs_d = F.linear(x, w["fc_reg.weight"], w["fc_reg.bias"])
    assert (theirs_d.view(-1, 4)[:, 2:] * 0.2).abs().max() < MAX_LOG_RATIO  # unclamped (see below)
    with torch.no_grad():
        logits, deltas = converted.roi_heads.box_predictor(converted.roi_heads.box_head(feats))
        boxes = converted.roi_heads.box_coder.decode(deltas, [proposals])
    probs = F.softmax(logits, dim=-1)
    torch.testing.assert_close(probs[:, 1:], theirs_p[:, :C])
    torch.testing.assert_close(probs[:, 0], theirs_p[:, C])
    torch.testing.assert_close(deltas.view(6, C + 1, 4)[:, 1:], theirs_d.view(6, C, 4))
    torch.testing.assert_close(boxes[:, 1:], mmdet_delta2bbox(proposals, theirs_d, RCNN_STDS))


def test_converted_mask_head_computes_mmdets(converted, mmdet_sd) -> None:
    """mmdet FCNMaskHead.forward: 4 x (conv3x3 + ReLU), deconv + ReLU, 1x1 logits; our channel c + 1 is its c."""
    torch.manual_seed(2)
    x = feats = torch.randn(3, 256, 14, 14)
    w = {k[len("roi_head.mask_head."):]: v for k, v in mmdet_sd.items() if k.startswith("roi_head.mask_head.")}
    for n in range(4):
        x = F.relu(F.conv2d(x, w[f"convs.{n}.conv.weight"], w[f"convs.{n}.conv.bias"], padding=1))
    x = F.relu(F.conv_transpose2d(x, w["upsample.weight"], w["upsample.bias"], stride=2))
    theirs = F.conv2d(x, w["conv_logits.weight"], w["conv_logits.bias"])
    with torch.no_grad():
        ours = converted.roi_heads.mask_predictor(converted.roi_heads.mask_head(feats))
    assert ours.shape == (3, C + 1, 28, 28)
    torch.testing.assert_close(ours[:, 1:], theirs, rtol=1e-4, atol=1e-5)


def test_converted_rpn_computes_mmdets(converted, mmdet_sd) -> None:
    """mmdet RPNHead.forward_single + anchors + delta2bbox (stds 1) on a 160 x 192 padded batch, whose level 4 is
    2 x 3 cells: torchvision's own anchor generator would put them 80 px apart vertically."""
    torch.manual_seed(3)
    sizes = [(40, 48), (20, 24), (10, 12), (5, 6), (2, 3)]
    feats = [torch.randn(1, 256, h, w) * 0.3 for h, w in sizes]
    images = ImageList(torch.zeros(1, 3, 160, 192), [(150, 180)])
    scores, deltas = [], []
    for f in feats:
        x = F.relu(F.conv2d(f, mmdet_sd["rpn_head.rpn_conv.weight"], mmdet_sd["rpn_head.rpn_conv.bias"], padding=1))
        scores.append(F.conv2d(x, mmdet_sd["rpn_head.rpn_cls.weight"], mmdet_sd["rpn_head.rpn_cls.bias"])
                      .permute(0, 2, 3, 1).reshape(-1))
        deltas.append(F.conv2d(x, mmdet_sd["rpn_head.rpn_reg.weight"], mmdet_sd["rpn_head.rpn_reg.bias"])
                      .permute(0, 2, 3, 1).reshape(-1, 4))
    anchors = mmdet_anchors(sizes)
    assert torch.cat(deltas)[:, 2:].abs().max() < MAX_LOG_RATIO
    theirs = mmdet_delta2bbox(anchors, torch.cat(deltas), (1.0, 1.0, 1.0, 1.0))[:, 0]
    with torch.no_grad():
        objectness, ours_deltas = concat_box_prediction_layers(*converted.rpn.head(feats))
        ours_anchors = converted.rpn.anchor_generator(images, feats)
        ours = converted.rpn.box_coder.decode(ours_deltas, ours_anchors)[:, 0]
        default_anchors = anchor_generator()(images, feats)[0]
    torch.testing.assert_close(objectness.flatten(), torch.cat(scores))
    torch.testing.assert_close(ours_anchors[0], anchors, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-3)
    assert not torch.allclose(default_anchors, anchors, atol=0.5)


def test_level_4_anchors_keep_stride_64_on_800_x_1216() -> None:
    """Padded 800 x 1216: level 4 is 12 x 19 cells (floor pooling); torchvision's default derives the vertical
    stride as 800 // 12 = 66 (1216 // 19 = 64 across). The anchor of size 512 at cell (11, 18) is centred at
    (18 * 64, 11 * 64) = (1152, 704) in mmdet."""
    sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (12, 19)]
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    images = ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1199)])
    start = 3 * sum(h * w for h, w in sizes[:4]) + 3 * (11 * 19 + 18)
    ours = MMDetAnchorGenerator()(images, feats)[0]
    default = anchor_generator()(images, feats)[0]
    half_w, half_h = 256 * math.sqrt(2), 256 / math.sqrt(2)  # ratio h/w 0.5 at size 512
    expected = torch.tensor([[1152 - half_w, 704 - half_h, 1152 + half_w, 704 + half_h],
                             [896.0, 448, 1408, 960],
                             [1152 - half_h, 704 - half_w, 1152 + half_h, 704 + half_w]])
    torch.testing.assert_close(ours[start:start + 3], expected, rtol=0, atol=1e-3)
    assert default[start + 1].tolist() == [896.0, 470.0, 1408.0, 982.0]  # centred on row 11 * 66 = 726
    assert default[start].tolist() == [1152 - 362.0, 726 - 181.0, 1152 + 362.0, 726 + 181.0]  # rounded
    torch.testing.assert_close(ours[0], torch.tensor([-16 * math.sqrt(2), -8 * math.sqrt(2),
                                                      16 * math.sqrt(2), 8 * math.sqrt(2)]))


def test_roi_pooler_is_mmcvs_aligned_roi_align() -> None:
    """SingleRoIExtractor (finest_scale 56, strides 4..32) with mmcv RoIAlign(aligned=True, sampling_ratio=0)."""
    torch.manual_seed(4)
    feats = {str(lvl): torch.randn(1, 4, 256 // s, 320 // s) for lvl, s in enumerate((4, 8, 16, 32))}
    boxes = torch.tensor([[10.3, 20.7, 45.1, 60.2],  # sqrt(wh) 37: level 0
                          [5.5, 7.25, 160.3, 150.9],  # 149: level 1
                          [0.0, 0.0, 112.0, 112.0],  # 112: level 1 (the boundary)
                          [1.5, 0.5, 319.0, 255.0],  # 284: level 2
                          [-50.0, -60.0, 420.0, 400.0]])  # 465: level 3
    levels = [0, 1, 1, 2, 3]
    pooler = MMDetRoIAlign(ROI_LEVELS, 7)
    assert pooler.roi_levels(boxes).tolist() == levels
    theirs = torch.stack([mmcv_roi_align(feats[str(lvl)][0], b.tolist(), 1 / 2 ** (lvl + 2))
                          for b, lvl in zip(boxes, levels)])
    ours = pooler(feats, [boxes], [(256, 320)])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    torchvision_default = MultiScaleRoIAlign(ROI_LEVELS, 7, sampling_ratio=2)(feats, [boxes], [(256, 320)])
    assert not torch.allclose(torchvision_default, theirs, atol=1e-3)


def test_roi_levels_agree_with_torchvisions_level_mapper() -> None:
    """floor(log2(s / 56 + 1e-6)) vs floor(4 + log2(s / 224) + 1e-6) - 2: equal on a 0.01 px sweep; they part only
    just below a boundary (224 - 1e-4 here), where ours follows mmdet."""
    s = torch.arange(1.0, 1000.0, 0.01)
    boxes = torch.stack([torch.zeros_like(s), torch.zeros_like(s), s, s], dim=1)
    ours = MMDetRoIAlign().roi_levels(boxes)
    assert torch.equal(ours, LevelMapper(2, 5)([boxes]))
    near = torch.tensor([[0.0, 0.0, 223.9999, 223.9999]])
    assert MMDetRoIAlign().roi_levels(near).item() == 1 and LevelMapper(2, 5)([near]).item() == 2
    closer = torch.tensor([[0.0, 0.0, 111.99999, 111.99999], [0.0, 0.0, 223.99998, 223.99998]])
    assert MMDetRoIAlign().roi_levels(closer).tolist() == [1, 2]  # mmdet's 1e-6 inside the log lifts these


def test_mmdet_conventions_reach_the_model(maskrcnn) -> None:
    assert isinstance(maskrcnn.rpn.anchor_generator, MMDetAnchorGenerator)
    assert isinstance(maskrcnn.roi_heads.box_roi_pool, MMDetRoIAlign)
    assert maskrcnn.roi_heads.box_roi_pool.output_size == (7, 7)
    assert maskrcnn.roi_heads.mask_roi_pool.output_size == (14, 14)
    assert maskrcnn.rpn._post_nms_top_n == {"training": 1000, "testing": 1000}
    assert maskrcnn.rpn._pre_nms_top_n == {"training": 2000, "testing": 1000}  # mmdet nms_pre, as torchvision's
    assert "mask_roi_pool" not in rcnn_conventions(mask=False)
    assert "rpn_post_nms_top_n_train" not in rcnn_conventions(mask=True, cascade=True)  # cascade configs: 2000


def test_mmdet_cascade_mask_rcnn_loads_strictly_and_round_trips() -> None:
    model = create_model("cascade_maskrcnn_hrnetv2p_w18")
    heads = {k: v for k, v in MMDET_W18_HEADS.items() if not k.startswith("roi_head.")} | _cascade_heads(mask=True)
    sd = mmdet_state_dict(model.backbone.body, heads, seed=5)
    for k in range(3):
        sd[f"roi_head.bbox_head.{k}.fc_cls.bias"][C] = 10.0 + k  # background, last in mmdet
    ours = from_mmdet(sd)
    model.load_state_dict(ours)  # strict
    for k in range(3):
        assert ours[f"roi_heads.box_predictors.{k}.cls_score.bias"][0] == 10.0 + k
        assert ours[f"roi_heads.box_predictors.{k}.bbox_pred.weight"].shape == (4, 1024)
        assert ours[f"roi_heads.mask_predictors.{k}.mask_fcn_logits.weight"].shape == (C + 1, 256, 1, 1)
        assert (ours[f"roi_heads.mask_predictors.{k}.mask_fcn_logits.weight"][0] == 0).all()
        assert ours[f"roi_heads.mask_heads.{k}.3.0.weight"].shape == (256, 256, 3, 3)
    back = to_mmdet(ours)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], v) for k, v in sd.items())


def test_cascade_weights_decode_as_mmdets_stage_stds() -> None:
    torch.manual_seed(6)
    rois = torch.tensor([[10.0, 20, 110, 70], [0, 0, 400, 300]])
    deltas = torch.randn(2, 4)
    for stds, weights in zip(CASCADE_TARGET_STDS, CASCADE_BBOX_REG_WEIGHTS):
        ours = BoxCoder(weights).decode_single(deltas, rois)
        torch.testing.assert_close(ours, mmdet_delta2bbox(rois, deltas, stds)[:, 0])
    rounded = BoxCoder((30.0, 30.0, 15.0, 15.0)).decode_single(deltas, rois)
    assert not torch.allclose(rounded, mmdet_delta2bbox(rois, deltas, CASCADE_TARGET_STDS[2])[:, 0], atol=1e-3)


def test_refused_checkpoints_say_why() -> None:
    fcos = {"bbox_head.cls_convs.0.conv.weight": torch.zeros(256, 256, 3, 3),
            "bbox_head.scales.0.scale": torch.tensor(1.0), "neck.reduction_conv.conv.weight": torch.zeros(1)}
    assert is_mmdet(fcos)
    with pytest.raises(CheckpointError, match="stride=2(.|\n)*exp\\(scale_l \\* x\\)(.|\n)*centerness"):
        from_mmdet(fcos)
    v1 = {"roi_head.bbox_head.fc_cls.weight": torch.zeros(C + 1, 8),
          "roi_head.bbox_head.fc_reg.weight": torch.zeros(4 * (C + 1), 8)}
    with pytest.raises(CheckpointError, match="upgrade_model_version"):
        from_mmdet(v1)
    htc = {"rpn_head.rpn_conv.weight": torch.zeros(1), "roi_head.semantic_head.conv_logits.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="roi_head.semantic_head.conv_logits.weight"):
        from_mmdet(htc)
    with pytest.raises(CheckpointError, match="4 rows"):
        from_mmdet({"roi_head.bbox_head.0.fc_cls.weight": torch.zeros(C + 1, 8),
                    "roi_head.bbox_head.0.fc_reg.weight": torch.zeros(4 * C, 8)})


def test_layout_detection(maskrcnn) -> None:
    assert not is_mmdet(maskrcnn.state_dict())
    assert not is_mmdet({"conv1.weight": torch.zeros(1), "incre_modules.0.0.conv1.weight": torch.zeros(1),
                         "head.last_layer.0.weight": torch.zeros(1)})
    assert is_mmdet({"backbone.conv1.weight": torch.zeros(1), "neck.reduction_conv.conv.weight": torch.zeros(1)})
    assert is_mmdet({"roi_head.bbox_head.fc_cls.weight": torch.zeros(1)})


@pytest.mark.parametrize("meta", [
    {"mmdet_version": "2.25.0", "CLASSES": ("person", "bicycle"), "config": "model = dict(...)", "epoch": 12},
    {"dataset_meta": {"classes": ("person", "bicycle"), "palette": [(220, 20, 60), (119, 11, 32)]},
     "mmengine_version": "0.10.4", "epoch": 12, "iter": 87960},
])
def test_published_mmdet_files_read_and_convert(tmp_path, mmdet_sd, meta) -> None:
    """publish_model.py keeps ``meta`` and ``state_dict`` and saves without the zipfile format."""
    heads = ("rpn_head.", "roi_head.bbox_head.fc_", "roi_head.mask_head.conv_logits.")
    part = {k: v for k, v in mmdet_sd.items() if k.startswith(heads)}
    path = tmp_path / "mmdet.pth"
    torch.save({"meta": meta, "state_dict": part}, path, _use_new_zipfile_serialization=False)
    sd = read_checkpoint(path)
    assert sd.keys() == part.keys() and is_mmdet(sd)
    assert from_mmdet(sd)["rpn.head.cls_logits.weight"].shape == (3, 256, 1, 1)
