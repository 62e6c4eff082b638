"""Heatmap codec: official Gaussian targets, argmax / DARK decoding, flip test and JointsMSELoss.

Expected values are computed by hand or with independent means (cv2.GaussianBlur, np.linalg.solve,
closed-form Gaussians), never by calling the code under test a second way.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from hrnet.keypoints.codec import HeatmapCodec, JointsMSELoss, dark_blur_kernel, flip_back, flip_test_average
from hrnet.keypoints.sets import COCO_KEYPOINTS


def _codec(**kw) -> HeatmapCodec:
    return HeatmapCodec(input_size=(256, 192), **kw)  # heatmap 64 x 48, stride 4


def _subpixel_gaussian(h: int, w: int, cx: float, cy: float, sigma: float = 2.0) -> np.ndarray:
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


# ------------------------------------------------------------------------------------------ encode
def test_default_sizes_and_stride():
    c = _codec()
    assert c.heatmap_size == (64, 48)
    assert c.stride == (4.0, 4.0)
    assert dark_blur_kernel(2.0) == 11 and dark_blur_kernel(3.0) == 17  # DARK / mmpose config pairs
    # OpenCV's sigma for the derived kernel is the codec sigma
    assert 0.3 * ((11 - 1) * 0.5 - 1) + 0.8 == pytest.approx(2.0)


def test_encode_peak_and_gaussian_values():
    c = _codec()
    joints = np.array([[50.0, 70.0], [101.0, 33.0]])  # /4 -> (12.5, 17.5) and (25.25, 8.25)
    target, weight = c.encode(joints, np.array([1, 1]))
    assert target.shape == (2, 64, 48) and target.dtype == np.float32
    assert weight.dtype == np.float32 and weight.tolist() == [1.0, 1.0]
    # mu = int(j / 4 + 0.5): (13, 18) and (25, 8)
    for k, (mx, my) in enumerate([(13, 18), (25, 8)]):
        assert target[k, my, mx] == 1.0
        assert np.unravel_index(np.argmax(target[k]), target[k].shape) == (my, mx)
    # hand value: offset (dx=2, dy=1) -> exp(-(4 + 1) / (2 * 2^2))
    assert target[0, 19, 15] == pytest.approx(math.exp(-5 / 8), rel=1e-6)
    assert target[0, 18 - 6, 13] == pytest.approx(math.exp(-36 / 8), rel=1e-6)  # edge of 13x13 patch
    assert target[0, 18 - 7, 13] == 0.0  # just outside the 3-sigma window
    assert target[0, 18, 13 + 7] == 0.0
    # the whole window equals the closed form, zero elsewhere
    yy, xx = np.mgrid[0:64, 0:48]
    inside = (np.abs(xx - 13) <= 6) & (np.abs(yy - 18) <= 6)
    expect = np.where(inside, np.exp(-((xx - 13) ** 2 + (yy - 18) ** 2) / 8.0), 0.0)
    np.testing.assert_allclose(target[0], expect, rtol=1e-6, atol=1e-7)


def test_encode_weights_invisible_and_out_of_range():
    c = _codec()
    joints = np.array([
        [50.0, 70.0],    # invisible
        [-40.0, 10.0],   # mu_x = int(-9.5) = -9, br_x = -2 < 0 -> outside
        [222.0, 10.0],   # mu_x = 56, ul_x = 50 >= 48 -> outside
        [-10.0, 100.0],  # mu_x = int(-2.0) = -2: partly inside, clipped
        [100.0, 300.0],  # mu_y = 75, ul_y = 69 >= 64 -> outside
    ])
    target, weight = c.encode(joints, np.array([0, 1, 1, 1, 1]))
    assert weight.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert not target[[0, 1, 2, 4]].any()
    # clipped Gaussian centred at x = -2, y = 25: column 0 is 2 px away
    assert target[3, 25, 0] == pytest.approx(math.exp(-4 / 8), rel=1e-6)
    assert target[3, 25, 4] == pytest.approx(math.exp(-36 / 8), rel=1e-6)
    assert target[3, 25, 5] == 0.0
    assert target[3].max() < 1.0


def test_encode_official_border_rules():
    c = _codec()
    joints = np.array([
        [-7.0, 100.0],   # -1.75 + 0.5 = -1.25 -> int() truncates to -1 (floor would give -2)
        [210.0, 100.0],  # mu_x = 53, ul_x = 47: one column inside the 48-wide map
        [214.0, 100.0],  # mu_x = 54, ul_x = 48 >= 48 -> weight 0
        [-31.0, 100.0],  # mu_x = int(-7.25) = -7, br_x = 0: official keeps weight 1 (test is br < 0)
    ])
    target, weight = c.encode(joints, np.ones(4))
    assert weight.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert target[0, 25, 0] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert target[1, 25, 47] == pytest.approx(math.exp(-36 / 8), rel=1e-6)
    assert target[1, :, :47].sum() == 0
    assert not target[2].any() and not target[3].any()


def test_encode_joint_weights_multiply():
    spec = COCO_KEYPOINTS
    c = HeatmapCodec.from_spec(spec, (256, 192), use_joint_weights=True)
    joints = np.tile([[96.0, 128.0]], (spec.num_joints, 1))
    vis = np.ones(spec.num_joints)
    vis[3] = 0
    _, weight = c.encode(joints, vis)
    expect = np.array(spec.joint_weights, dtype=np.float32)
    expect[3] = 0
    np.testing.assert_array_equal(weight, expect)
    assert weight[9] == pytest.approx(1.5)


def test_unbiased_encode_is_subpixel_gaussian():
    c = _codec(unbiased=True)
    target, weight = c.encode(np.array([[101.0, 33.0]]), np.array([1]))
    np.testing.assert_allclose(target[0], _subpixel_gaussian(64, 48, 25.25, 8.25), rtol=1e-5, atol=1e-7)
    assert weight.tolist() == [1.0]


# ------------------------------------------------------------------------------------------ decode
def test_argmax_decode_quarter_offset_rules():
    hm = np.zeros((1, 3, 10, 12), np.float32)
    hm[0, 0, 5, 6] = 1.0
    hm[0, 0, 5, 7] = 0.5   # right neighbour higher -> +0.25 in x
    hm[0, 0, 4, 6] = 0.3   # upper neighbour higher -> -0.25 in y
    hm[0, 1, 5, 1] = 1.0   # px = 1: outside the official 1 < px < w-1 -> no offset
    hm[0, 1, 5, 2] = 0.5
    hm[0, 2] = -1.0        # non-positive max -> coords zeroed
    hm[0, 2, 3, 3] = -0.5
    coords, maxvals = _codec().decode(hm)
    assert coords.dtype == np.float32 and coords.shape == (1, 3, 2) and maxvals.shape == (1, 3, 1)
    np.testing.assert_allclose(coords[0, 0], [6.25, 4.75])
    np.testing.assert_allclose(coords[0, 1], [1.0, 5.0])
    np.testing.assert_allclose(coords[0, 2], [0.0, 0.0])
    np.testing.assert_allclose(maxvals[0, :, 0], [1.0, 1.0, -0.5])


def test_roundtrip_official_targets_argmax():
    c = _codec()
    rng = np.random.default_rng(0)
    joints = rng.uniform([20, 20], [172, 236], size=(17, 2))
    target, _ = c.encode(joints, np.ones(17))
    coords, maxvals = c.decode(target[None])
    # symmetric quantised Gaussian: no quarter shift, decode returns exactly mu = int(j/4 + 0.5)
    np.testing.assert_array_equal(coords[0], np.floor(joints / 4 + 0.5))
    assert np.abs(coords[0] - joints / 4).max() <= 0.5
    np.testing.assert_array_equal(maxvals, 1.0)


def test_dark_beats_argmax_on_subpixel_gaussians():
    rng = np.random.default_rng(1)
    centres = rng.uniform([8, 8], [40, 56], size=(20, 2))
    hm = np.stack([_subpixel_gaussian(64, 48, cx, cy) for cx, cy in centres])[None]
    arg, _ = _codec(decode="argmax").decode(hm)
    dark, _ = _codec(decode="dark").decode(hm)
    err_arg = np.linalg.norm(arg[0] - centres, axis=1)
    err_dark = np.linalg.norm(dark[0] - centres, axis=1)
    assert np.abs(arg[0] - centres).max() <= 0.25 + 1e-6
    assert err_dark.max() < 0.1
    assert err_dark.mean() < 0.5 * err_arg.mean()
    # encode(unbiased) -> decode(dark) round trip in input pixels
    c = _codec(unbiased=True, decode="dark")
    joints = centres * 4
    target, _ = c.encode(joints, np.ones(len(joints)))
    coords, _ = c.decode(target[None])
    assert np.abs(c.heatmap_to_input(coords[0]) - joints).max() < 0.4  # < 0.1 heatmap px


def test_dark_matches_reference_blur_and_newton_step():
    """Reference: official-style per-map cv2.GaussianBlur on a zero-padded map + np.linalg.solve."""
    rng = np.random.default_rng(2)
    hm = np.stack([_subpixel_gaussian(32, 24, *rng.uniform([5, 5], [19, 27])) for _ in range(4)])
    hm = (hm * rng.uniform(0.5, 1.0) + rng.uniform(0, 0.05, hm.shape)).astype(np.float32)[None]
    k = 11
    b = (k - 1) // 2
    coords, _ = _codec(decode="dark").decode(hm)
    for j in range(hm.shape[1]):
        m = hm[0, j].astype(np.float64)
        pad = np.zeros((m.shape[0] + 2 * b, m.shape[1] + 2 * b))
        pad[b:-b, b:-b] = m
        blur = cv2.GaussianBlur(pad, (k, k), 0)[b:-b, b:-b]
        blur *= m.max() / blur.max()
        L = np.log(np.maximum(blur, 1e-10))
        y, x = np.unravel_index(np.argmax(m), m.shape)
        grad = np.array([(L[y, x + 1] - L[y, x - 1]) / 2, (L[y + 1, x] - L[y - 1, x]) / 2])
        hxx = (L[y, x + 2] - 2 * L[y, x] + L[y, x - 2]) / 4
        hyy = (L[y + 2, x] - 2 * L[y, x] + L[y - 2, x]) / 4
        hxy = (L[y + 1, x + 1] - L[y - 1, x + 1] - L[y + 1, x - 1] + L[y - 1, x - 1]) / 4
        ref = np.array([x, y]) - np.linalg.solve([[hxx, hxy], [hxy, hyy]], grad)
        np.testing.assert_allclose(coords[0, j], ref, atol=1e-4)


def test_decode_torch_in_torch_out():
    hm = torch.from_numpy(_subpixel_gaussian(64, 48, 20.3, 30.6))[None, None].repeat(2, 3, 1, 1)
    for method in ("argmax", "dark"):
        coords, maxvals = _codec(decode=method).decode(hm)
        assert isinstance(coords, torch.Tensor) and isinstance(maxvals, torch.Tensor)
        assert coords.shape == (2, 3, 2) and maxvals.shape == (2, 3, 1) and coords.dtype == torch.float32
        ref, _ = _codec(decode=method).decode(hm.numpy())
        np.testing.assert_array_equal(coords.numpy(), ref)
    coords16, _ = _codec().decode(hm.to(torch.bfloat16))  # AMP outputs decode too
    assert coords16.dtype == torch.float32 and coords16.shape == (2, 3, 2)


# -------------------------------------------------------------------------------------------- flip
def _pair_swap_reference(hm: np.ndarray, pairs) -> np.ndarray:
    out = hm[:, :, :, ::-1].copy()
    for a, b in pairs:
        out[:, [a, b]] = out[:, [b, a]]
    return out


def test_flip_back_identity_and_pair_swap():
    spec = COCO_KEYPOINTS
    torch.manual_seed(0)
    hm = torch.rand(2, spec.num_joints, 8, 6)
    twice = flip_back(flip_back(hm, spec.flip_index), spec.flip_index)
    torch.testing.assert_close(twice, hm, rtol=0, atol=0)
    np.testing.assert_array_equal(flip_back(hm, spec.flip_index).numpy(),
                                  _pair_swap_reference(hm.numpy(), spec.flip_pairs))
    np.testing.assert_array_equal(flip_back(hm.numpy(), spec.flip_index),
                                  _pair_swap_reference(hm.numpy(), spec.flip_pairs))


def test_flip_back_moves_left_peak_to_right_channel_with_shift():
    spec = COCO_KEYPOINTS
    ls, rs = spec.joint_names.index("left_shoulder"), spec.joint_names.index("right_shoulder")
    w = 48
    hm = torch.zeros(1, spec.num_joints, 64, w)
    hm[0, ls, 20, 10] = 1.0  # in the flipped image the left shoulder is at x = 10
    out = flip_back(hm, spec.flip_index)
    assert out[0, ls].sum() == 0
    assert out[0, rs, 20, w - 1 - 10] == 1.0
    shifted = flip_back(hm, spec.flip_index, shift=True)
    assert shifted[0, rs, 20, w - 10] == 1.0 and shifted[0, rs].sum() == 1.0
    # official shift: out[..., 1:] = out[..., :-1]; column 0 keeps its own value
    col = torch.arange(w, dtype=torch.float32).expand(1, 1, 2, w)
    s = flip_back(col, [0], shift=True)
    assert s[0, 0, 0].tolist() == [w - 1.0] + [float(w - 1 - i) for i in range(w - 1)]


def test_flip_test_average():
    spec = COCO_KEYPOINTS
    torch.manual_seed(1)
    a, b = torch.rand(2, spec.num_joints, 8, 6), torch.rand(2, spec.num_joints, 8, 6)
    avg = flip_test_average(a, b, spec.flip_index, shift=False)
    ref = (a.numpy() + _pair_swap_reference(b.numpy(), spec.flip_pairs)) * 0.5
    np.testing.assert_allclose(avg.numpy(), ref, rtol=1e-6)
    # the model output of the mirrored image of a symmetric scene flips back onto itself
    avg2 = HeatmapCodec.flip_test_average(a, flip_back(a, spec.flip_index), spec.flip_index, shift=False)
    torch.testing.assert_close(avg2, a)


# -------------------------------------------------------------------------------------------- loss
def test_joints_mse_loss_hand_value():
    out = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    gt = torch.tensor([[[[0.0, 1.0]], [[1.0, 1.0]]]])
    w = torch.tensor([[[1.0], [0.5]]])  # (1, 2, 1)
    # joint 0: ((1-0)^2 + (2-1)^2) / 2 = 1; joint 1: ((1.5-0.5)^2 + (2-0.5)^2) / 2 = 1.625
    expect = 0.5 * (1.0 + 1.625) / 2
    assert JointsMSELoss(True)(out, gt, w).item() == pytest.approx(expect)
    assert JointsMSELoss(True)(out, gt, w[..., 0]).item() == pytest.approx(expect)
    # unweighted: joint 1 = (4 + 9) / 2 = 6.5
    assert JointsMSELoss(False)(out, gt, w).item() == pytest.approx(0.5 * (1.0 + 6.5) / 2)


def test_joints_mse_loss_equals_per_joint_loop():
    torch.manual_seed(3)
    out, gt = torch.rand(3, 4, 5, 6, requires_grad=True), torch.rand(3, 4, 5, 6)
    w = torch.rand(3, 4, 1)
    ref = sum(0.5 * torch.nn.functional.mse_loss(out[:, j] * w[:, j, :, None], gt[:, j] * w[:, j, :, None])
              for j in range(4)) / 4
    loss = JointsMSELoss()(out, gt, w)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert out.grad is not None
