"""Segmentation test-time inference: whole / sliding window / multi-scale / flip against a literal
float64 re-implementation of the official ``multi_scale_inference`` (cv2 resize, exp-space sums)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrnet import create_model
from hrnet.tasks.segmentation.tta import (
    CITYSCAPES_TEST,
    IMAGENET_PAD_VALUE,
    predict_logits,
    scaled_size,
    slide_windows,
)

C = 3


class Dummy(nn.Module):
    """Tiny FCN with 1/4 output: conv3x3 -> avg-pool 4 (ceil mode, so any size works)."""

    def __init__(self, symmetric: bool = False, two_outputs: bool = False, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.aux = nn.Conv2d(3, C, 1)
        with torch.no_grad():
            w = torch.randn(C, 3, 3, 3, generator=g)
            if symmetric:  # mirror-symmetric kernel: the model commutes with a horizontal flip
                w = (w + w.flip(-1)) / 2
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(torch.randn(C, generator=g))
            self.aux.weight.copy_(torch.randn(C, 3, 1, 1, generator=g))
        self.two_outputs = two_outputs

    def forward(self, x):
        out = F.avg_pool2d(self.conv(x), 4, ceil_mode=True)
        if self.two_outputs:
            return [F.avg_pool2d(self.aux(x), 4, ceil_mode=True), out]
        return out


def image(h: int, w: int, b: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def whole(model, x, align_corners=False):
    with torch.no_grad():
        out = model(x)
    out = out[-1] if isinstance(out, list) else out
    return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=align_corners)


# --------------------------------------------------------------- literal official reference (float64)
def ref_inference(model, img_hwc: np.ndarray, flip: bool, ac: bool) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(img_hwc.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        out = model(x)
        out = out[-1] if isinstance(out, list) else out
        pred = F.interpolate(out.double(), size=x.shape[-2:], mode="bilinear", align_corners=ac)
        if flip:
            fo = model(torch.from_numpy(x.numpy()[:, :, :, ::-1].copy()))
            fo = fo[-1] if isinstance(fo, list) else fo
            fo = F.interpolate(fo.double(), size=x.shape[-2:], mode="bilinear", align_corners=ac)
            pred = (pred + torch.from_numpy(fo.numpy()[:, :, :, ::-1].copy())) * 0.5
    return pred.exp()


def ref_pad(img: np.ndarray, size, value) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=tuple(float(v) for v in value))
    return img


def official_reference(model, x: torch.Tensor, scales, flip=False, layout="pad", crop=None, stride=None,
                       base_size=None, whole_max_scale=None, ac=False, whole_mode=False) -> torch.Tensor:
    _, _, H, W = x.shape
    img = x[0].permute(1, 2, 0).numpy().copy()
    final = torch.zeros(1, C, H, W, dtype=torch.float64)
    pad = np.array(IMAGENET_PAD_VALUE, dtype=np.float32)
    for scale in scales:
        long_size = int((base_size or max(H, W)) * scale + 0.5)
        if H > W:
            nh, nw = long_size, int(W * long_size / H + 0.5)
        else:
            nw, nh = long_size, int(H * long_size / W + 0.5)
        new = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        height, width = new.shape[:2]
        if whole_mode or (whole_max_scale is not None and scale <= whole_max_scale):
            preds = ref_inference(model, new, flip, ac)
        elif layout == "pad" and max(height, width) <= min(crop):
            preds = ref_inference(model, ref_pad(new, crop, pad), flip, ac)[:, :, :height, :width]
        else:
            if layout == "pad":
                new = ref_pad(new, crop, pad)
            nh2, nw2 = new.shape[:2]
            rows = int(np.ceil((nh2 - crop[0]) / stride[0])) + 1
            cols = int(np.ceil((nw2 - crop[1]) / stride[1])) + 1
            preds = torch.zeros(1, C, nh2, nw2, dtype=torch.float64)
            count = torch.zeros(1, 1, nh2, nw2, dtype=torch.float64)
            for r in range(rows):
                for c in range(cols):
                    h0, w0 = r * stride[0], c * stride[1]
                    h1, w1 = min(h0 + crop[0], nh2), min(w0 + crop[1], nw2)
                    if layout == "clamp":
                        h0, w0 = max(h1 - crop[0], 0), max(w1 - crop[1], 0)
                    patch = new[h0:h1, w0:w1]
                    if layout == "pad":
                        patch = ref_pad(patch, crop, pad)
                    pred = ref_inference(model, patch, flip, ac)
                    preds[:, :, h0:h1, w0:w1] += pred[:, :, : h1 - h0, : w1 - w0]
                    count[:, :, h0:h1, w0:w1] += 1
            preds = (preds / count)[:, :, :height, :width]
        final += F.interpolate(preds, (H, W), mode="bilinear", align_corners=ac)
    return final


def assert_matches_reference(ours: torch.Tensor, ref: torch.Tensor, n_scales: int, atol: float = 1e-4) -> None:
    want = (ref / n_scales).log().float()
    assert ours.shape == want.shape
    assert torch.allclose(ours, want, atol=atol, rtol=1e-4), float((ours - want).abs().max())
    top2 = want.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-3  # argmax agrees wherever it is not a near-tie
    assert clear.float().mean() > 0.9
    assert torch.equal(ours.argmax(1)[clear], ref.argmax(1)[clear])


# ------------------------------------------------------------------------------------------ tests
def test_size_and_window_arithmetic():
    assert scaled_size(1024, 2048, 1.0, 2048) == (1024, 2048)
    assert scaled_size(1024, 2048, 0.75, 2048) == (768, 1536)
    assert scaled_size(1024, 2048, 1.75, 2048) == (1792, 3584)
    assert scaled_size(37, 53, 1.0) == (37, 53)
    assert scaled_size(53, 37, 0.5) == (27, 19)  # long 26.5+0.5 -> 27, short int(37*27/53+0.5) = 19
    # Cityscapes x1.5: 1536 x 3072, crop = stride = 1024 x 2048, clamped: 2 x 2 windows
    boxes = slide_windows(1536, 3072, (1024, 2048), (1024, 2048), "clamp")
    assert boxes == [(0, 1024, 0, 2048), (0, 1024, 1024, 3072), (512, 1536, 0, 2048), (512, 1536, 1024, 3072)]
    # base layout: crop 520, stride int(520 * 2/3) = 346 on 600 x 900: rows ceil(80/346)+1 = 2,
    # cols ceil(380/346)+1 = 3; the last row/column windows are short (padded to the crop later)
    boxes = slide_windows(600, 900, (520, 520), (346, 346), "pad")
    assert boxes == [(0, 520, 0, 520), (0, 520, 346, 866), (0, 520, 692, 900),
                     (346, 600, 0, 520), (346, 600, 346, 866), (346, 600, 692, 900)]
    assert slide_windows(600, 900, (520, 520), (346, 346), "clamp")[-1] == (80, 600, 380, 900)
    # smaller than the crop: one window (the official formula, ceil((12 - 64) / 20) + 1 = -1, gives none)
    assert math.ceil((12 - 64) / 20) + 1 <= 0
    assert slide_windows(10, 12, (64, 64), (20, 20), "clamp") == [(0, 10, 0, 12)]


def test_one_scale_whole_equals_upsampled_model_logits():
    model = Dummy().eval()
    for h, w in [(32, 48), (37, 53), (5, 7)]:
        x = image(h, w, b=2)
        out = predict_logits(model, x, num_classes=C)
        assert out.shape == (2, C, h, w) and out.dtype == torch.float32
        assert torch.allclose(out, whole(model, x), atol=1e-6)
        ac = predict_logits(model, x, num_classes=C, align_corners=True)
        assert torch.allclose(ac, whole(model, x, align_corners=True), atol=1e-6)


def test_slide_with_a_window_covering_the_image_equals_whole():
    model = Dummy().eval()
    x = image(37, 53)
    ref = whole(model, x)
    for layout in ("pad", "clamp"):
        out = predict_logits(model, x, num_classes=C, mode="slide", crop_size=(37, 53), window=layout)
        assert torch.allclose(out, ref, atol=1e-6), layout
    # clamp never pads: a crop larger than the image is one window = the whole image
    out = predict_logits(model, x, num_classes=C, mode="slide", crop_size=(64, 96), window="clamp")
    assert torch.allclose(out, ref, atol=1e-6)


def test_multi_scale_with_repeated_scale_one_equals_whole_and_flip_invariance():
    model = Dummy().eval()
    x = image(40, 56)
    ref = whole(model, x)
    assert torch.allclose(predict_logits(model, x, num_classes=C, scales=(1.0, 1.0)), ref, atol=1e-5)
    sym = Dummy(symmetric=True).eval()
    ref_sym = whole(sym, x)
    flipped = predict_logits(sym, x, num_classes=C, flip=True)
    assert torch.allclose(flipped, ref_sym, atol=1e-5)
    # a non-equivariant model: flip changes the result, and equals the manual average
    manual = (ref + whole(model, x.flip(-1)).flip(-1)) / 2
    assert torch.allclose(predict_logits(model, x, num_classes=C, flip=True), manual, atol=1e-5)


@pytest.mark.parametrize("layout", ["pad", "clamp"])
@pytest.mark.parametrize("size,crop,stride", [
    ((37, 53), (16, 24), None),      # odd size, several overlapping windows, default 2/3 stride
    ((37, 53), (20, 20), (20, 20)),  # stride = crop: short last windows (pad) / shifted (clamp)
    ((13, 11), (16, 24), None),      # smaller than the crop: padding path (pad) / one window (clamp)
    ((30, 17), (16, 24), (5, 8)),    # narrower than the crop in one dimension only
])
def test_slide_matches_official_reference(layout, size, crop, stride):
    model = Dummy(seed=1).eval()
    x = image(*size, seed=2)
    out = predict_logits(model, x, num_classes=C, mode="slide", crop_size=crop, stride=stride, window=layout)
    st = stride or (int(crop[0] * 2 / 3), int(crop[1] * 2 / 3))
    ref = official_reference(model, x, (1.0,), layout=layout, crop=crop, stride=st)
    assert_matches_reference(out, ref, 1)


@pytest.mark.parametrize("flip", [False, True])
def test_multi_scale_flip_slide_matches_official_reference(flip):
    model = Dummy(seed=3).eval()
    x = image(36, 50, seed=4)
    scales = (0.5, 0.75, 1.0, 1.5)
    kw = dict(mode="slide", crop_size=(24, 32), stride=(24, 32), window="clamp", whole_max_scale=1.0, base_size=50)
    out = predict_logits(model, x, num_classes=C, scales=scales, flip=flip, **kw)
    ref = official_reference(model, x, scales, flip=flip, layout="clamp", crop=(24, 32), stride=(24, 32),
                             base_size=50, whole_max_scale=1.0)
    assert_matches_reference(out, ref, len(scales))
    # whole-image multi-scale, align_corners=True, pad layout
    out = predict_logits(model, x, num_classes=C, scales=(0.75, 1.25), flip=flip, align_corners=True)
    ref = official_reference(model, x, (0.75, 1.25), flip=flip, ac=True, whole_mode=True)
    assert_matches_reference(out, ref, 2)
    out = predict_logits(model, x, num_classes=C, mode="slide", crop_size=(20, 20), scales=(0.6, 1.3), flip=flip)
    ref = official_reference(model, x, (0.6, 1.3), flip=flip, layout="pad", crop=(20, 20), stride=(13, 13))
    assert_matches_reference(out, ref, 2)


def test_list_outputs_pick_output_index_and_large_logits_do_not_overflow():
    model = Dummy(two_outputs=True).eval()
    x = image(24, 40)
    main = whole(model, x)
    assert torch.allclose(predict_logits(model, x, num_classes=C), main, atol=1e-6)
    with torch.no_grad():
        aux = F.interpolate(model(x)[0], size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.allclose(predict_logits(model, x, num_classes=C, output_index=0), aux, atol=1e-6)
    # logits of ~1000 overflow the official float32 exp; the log-space fusion stays finite and exact
    big = Dummy().eval()
    with torch.no_grad():
        big.conv.weight.mul_(300.0)
        big.conv.bias.mul_(300.0)
    out = predict_logits(big, x, num_classes=C, mode="slide", crop_size=(16, 16), scales=(1.0, 0.5), flip=True)
    assert torch.isfinite(out).all()
    out1 = predict_logits(big, x, num_classes=C, scales=(1.0, 1.0))
    assert torch.allclose(out1, whole(big, x), rtol=1e-5, atol=1e-3)


def test_argument_checks_and_cityscapes_preset():
    model = Dummy().eval()
    x = image(16, 16)
    with pytest.raises(ValueError, match="crop_size"):
        predict_logits(model, x, num_classes=C, mode="slide")
    with pytest.raises(ValueError, match="stride"):
        predict_logits(model, x, num_classes=C, mode="slide", crop_size=8, stride=9)
    with pytest.raises(ValueError, match="num_classes"):
        predict_logits(model, x, num_classes=5)
    with pytest.raises(ValueError, match="mode"):
        predict_logits(model, x, num_classes=C, mode="tile")  # type: ignore[arg-type]
    assert CITYSCAPES_TEST["crop_size"] == (1024, 2048) and CITYSCAPES_TEST["window"] == "clamp"


def test_tiny_real_model():
    model = create_model("seg_hrnet_w18_small_v1", num_classes=C).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the official init (N(0, 0.001)) gives ~1e-13 logits: use He init for real margins
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, generator=g)
    x = image(64, 96, seed=5)
    ref = whole(model, x, align_corners=model.head.align_corners)
    out = predict_logits(model, x, num_classes=C)  # align_corners read from model.head
    assert out.shape == (1, C, 64, 96)
    assert torch.allclose(out, ref, atol=1e-5)
    slide = predict_logits(model, x, num_classes=C, mode="slide", crop_size=(64, 96), window="pad")
    assert torch.allclose(slide, ref, atol=1e-5)
    # two overlapping 64 x 64 windows (clamped to the border) vs the reference
    out = predict_logits(model, x, num_classes=C, mode="slide", crop_size=(64, 64), stride=(64, 42), window="clamp")
    ref2 = official_reference(model, x, (1.0,), layout="clamp", crop=(64, 64), stride=(64, 42))
    assert_matches_reference(out, ref2, 1)
    assert not math.isnan(float(out.sum()))
