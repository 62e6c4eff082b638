"""Gaussian heatmap codec for top-down pose: target encoding, prediction decoding, flip test, loss.

One :class:`HeatmapCodec` owns both directions so that training targets and inference decoding
always agree on input size, heatmap size, stride and sigma.

Coordinate conventions
----------------------
* ``input_size`` and ``heatmap_size`` are ``(height, width)`` (note: the official configs write
  ``IMAGE_SIZE``/``HEATMAP_SIZE`` as ``[width, height]``).
* :meth:`HeatmapCodec.encode` takes joints in *input-crop* pixels ``(x, y)`` (after the affine crop).
* :meth:`HeatmapCodec.decode` returns coordinates in *heatmap* pixels ``(x, y)``; the official
  back-projection (``transform_preds`` with ``output_size = heatmap (w, h)``) consumes exactly these.
  :meth:`HeatmapCodec.heatmap_to_input` scales them to input-crop pixels when needed.

Behaviour follows the official deep-high-resolution-net code (``JointsDataset.generate_target``,
``core.inference.get_final_preds``, ``utils.transforms.flip_back``, ``core.loss.JointsMSELoss``)
and the DARK paper's official decoding (Zhang et al., CVPR 2020); see the per-method notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import cv2
import numpy as np
import torch
from torch import nn

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "HeatmapCodec",
    "JointsMSELoss",
    "dark_blur_kernel",
    "flip_back",
    "flip_test_average",
    "get_max_preds",
]


def dark_blur_kernel(sigma: float) -> int:
    """Odd blur kernel size whose OpenCV default Gaussian sigma equals ``sigma``.

    ``cv2.GaussianBlur(..., (k, k), 0)`` uses ``sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8``; inverting it
    gives the DARK configs' pairs: sigma 2 -> 11 (official ``TEST.BLUR_KERNEL`` default), sigma 3 -> 17.
    """
    k = 2 * int(round((sigma - 0.8) / 0.3 + 1.0)) + 1
    return max(k, 3)


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # bf16 / fp16 (AMP) outputs
        return x.cpu().numpy()
    return np.asarray(x)


def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer argmax per map: ``(coords (N,K,2) float32 as (x, y), maxvals (N,K,1))``.

    As the official ``get_max_preds``: first maximum in row-major order, and coordinates are zeroed
    where the maximum is not positive.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W), got shape {heatmaps.shape}")
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    coords *= (maxvals > 0.0).astype(np.float32)
    return coords, maxvals


def _gaussian_blur_zero_pad(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """DARK's modulation blur: zero-pad by ``(kernel - 1) // 2``, ``cv2.GaussianBlur`` (sigma from
    the kernel size), crop back, then rescale each map so its maximum equals the original maximum.

    Implemented as a separable zero-padded convolution with ``cv2.getGaussianKernel(kernel, 0)``;
    with that padding OpenCV never reaches its own border rule, so this equals the per-map loop of the
    official code (float64, up to summation order).
    """
    if kernel % 2 != 1 or kernel < 3:
        raise ValueError(f"blur kernel must be an odd integer >= 3, got {kernel}")
    border = (kernel - 1) // 2
    g = cv2.getGaussianKernel(kernel, 0).astype(np.float64).ravel()
    hm = heatmaps.astype(np.float64)
    h, w = hm.shape[-2:]
    pad = np.pad(hm, [(0, 0)] * (hm.ndim - 2) + [(border, border), (border, border)])
    rows = sum(g[t] * pad[..., :, t:t + w] for t in range(kernel))  # blur along x
    out = sum(g[t] * rows[..., t:t + h, :] for t in range(kernel))  # blur along y
    origin_max = hm.reshape(*hm.shape[:-2], -1).max(-1)[..., None, None]
    blurred_max = out.reshape(*out.shape[:-2], -1).max(-1)[..., None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(blurred_max != 0, origin_max / blurred_max, 1.0)
    return out * factor


def _dark_refine(coords: np.ndarray, log_hm: np.ndarray) -> np.ndarray:
    """Second-order Taylor step ``-H^-1 * grad`` at each integer argmax on the log heatmap.

    Finite differences and the interior condition ``1 < px < w - 2 and 1 < py < h - 2`` are those of
    the official DARK ``taylor``; a singular Hessian leaves the point unchanged.
    """
    n, k, h, w = log_hm.shape
    out = coords.astype(np.float64).copy()
    px = coords[..., 0].astype(np.int64)
    py = coords[..., 1].astype(np.int64)
    ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    if not ok.any():
        return out.astype(np.float32)
    ni, ki = np.nonzero(ok)
    x, y = px[ok], py[ok]
    m = log_hm[ni, ki]  # (P, h, w)
    p = np.arange(len(ni))

    def at(dy: int, dx: int) -> np.ndarray:
        return m[p, y + dy, x + dx]

    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    det = dxx * dyy - dxy**2
    nz = det != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # inverse of [[dxx, dxy], [dxy, dyy]] applied to (dx, dy), negated
        off_x = -(dyy * dx - dxy * dy) / det
        off_y = -(-dxy * dx + dxx * dy) / det
    out[ni[nz], ki[nz], 0] += off_x[nz]
    out[ni[nz], ki[nz], 1] += off_y[nz]
    return out.astype(np.float32)


class HeatmapCodec:
    """Encode joints to Gaussian heatmaps and decode heatmaps to joints (top-down, HRNetV1).

    Args:
        input_size: network input crop ``(H, W)``, e.g. ``(256, 192)``.
        heatmap_size: output heatmap ``(h, w)``; default ``(H // 4, W // 4)``.
        sigma: Gaussian sigma in heatmap pixels (official: 2 for 256x192 / 256x256, 3 for 384x288).
        decode: ``"argmax"`` (official post-process, quarter-pixel shift) or ``"dark"``.
        joint_weights: optional per-joint loss weights (official ``USE_DIFFERENT_JOINTS_WEIGHT``), e.g.
            ``KeypointSpec.weights``; multiplied into ``target_weight``.
        blur_kernel: DARK modulation kernel; default :func:`dark_blur_kernel` of ``sigma`` (11 for 2).
        unbiased: encode with DARK's unbiased targets (sub-pixel centre ``joint / stride``, no rounding)
            instead of the official quantised ones. Default ``False`` = official HRNet targets.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int] | None = None,
        sigma: float = 2.0,
        decode: str = "argmax",
        joint_weights: Sequence[float] | None = None,
        blur_kernel: int | None = None,
        unbiased: bool = False,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if heatmap_size is None:
            heatmap_size = (self.input_size[0] // 4, self.input_size[1] // 4)
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        if decode not in ("argmax", "dark"):
            raise ValueError(f"decode must be 'argmax' or 'dark', got {decode!r}")
        self.sigma = float(sigma)
        self.decode_method = decode
        self.joint_weights = None if joint_weights is None else np.asarray(joint_weights, dtype=np.float32)
        self.blur_kernel = int(blur_kernel) if blur_kernel is not None else dark_blur_kernel(self.sigma)
        self.unbiased = bool(unbiased)

    @classmethod
    def from_spec(cls, spec: Any, input_size: Sequence[int], *, use_joint_weights: bool = False,
                  **kwargs: Any) -> "HeatmapCodec":
        """Codec for a :class:`~hrnet.keypoints.sets.KeypointSpec` (joint weights from ``spec.weights``)."""
        weights = spec.weights if use_joint_weights else None
        return cls(input_size, joint_weights=weights, **kwargs)

    @property
    def stride(self) -> tuple[float, float]:
        """``(stride_x, stride_y)`` = input / heatmap, the official ``feat_stride``."""
        return (self.input_size[1] / self.heatmap_size[1], self.input_size[0] / self.heatmap_size[0])

    def __repr__(self) -> str:
        return (f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
                f"sigma={self.sigma}, decode={self.decode_method!r}, unbiased={self.unbiased})")

    # ------------------------------------------------------------------ encode
    def encode(self, joints: ArrayLike, joints_vis: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian targets: ``(target float32 (K, h, w), target_weight float32 (K,))``.

        ``joints`` (K, 2+) are input-crop pixels; ``joints_vis`` (K,) the visibility (0/1; the official
        COCO loader clips 2 to 1). As the official ``generate_target``:

        * ``mu = int(joint / stride + 0.5)`` (Python ``int``, truncation toward zero);
        * ``tmp_size = 3 * sigma``; a ``(2 * tmp_size + 1)^2`` unnormalised Gaussian, peak 1, is pasted
          with clipping at the heatmap border;
        * ``target_weight = joints_vis``, set to 0 when ``ul >= size`` or ``br < 0`` with
          ``ul = int(mu - tmp_size)``, ``br = int(mu + tmp_size + 1)``; the map is drawn only for
          weights > 0.5; the weight is then multiplied by ``joint_weights`` when given.

        Faithfully kept official quirk: since ``br`` is exclusive, a joint with ``br == 0`` (Gaussian
        entirely left of / above the map by one pixel) keeps weight 1 with an all-zero target.
        """
        joints = _to_numpy(joints).astype(np.float64)
        vis = _to_numpy(joints_vis).astype(np.float32).reshape(-1)
        num_joints = joints.shape[0]
        if vis.shape[0] != num_joints:
            raise ValueError(f"joints_vis has {vis.shape[0]} entries for {num_joints} joints")
        h, w = self.heatmap_size
        stride_x, stride_y = self.stride
        target = np.zeros((num_joints, h, w), dtype=np.float32)
        weight = vis.copy()
        tmp_size = self.sigma * 3
        size = 2 * tmp_size + 1
        gx = np.arange(0, size, 1, np.float32)
        gy = gx[:, None]
        g0 = size // 2
        patch = np.exp(-((gx - g0) ** 2 + (gy - g0) ** 2) / (2 * self.sigma**2))
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)[:, None]

        for j in range(num_joints):
            if self.unbiased:
                mu_x = joints[j, 0] / stride_x
                mu_y = joints[j, 1] / stride_y
            else:
                mu_x = int(joints[j, 0] / stride_x + 0.5)
                mu_y = int(joints[j, 1] / stride_y + 0.5)
            ul = (int(mu_x - tmp_size), int(mu_y - tmp_size))
            br = (int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1))
            if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
                weight[j] = 0
                continue
            if weight[j] <= 0.5:
                continue
            if self.unbiased:
                target[j] = np.exp(-((xs - mu_x) ** 2 + (ys - mu_y) ** 2) / (2 * self.sigma**2))
                continue
            g_x = max(0, -ul[0]), min(br[0], w) - ul[0]
            g_y = max(0, -ul[1]), min(br[1], h) - ul[1]
            img_x = max(0, ul[0]), min(br[0], w)
            img_y = max(0, ul[1]), min(br[1], h)
            target[j, img_y[0]:img_y[1], img_x[0]:img_x[1]] = patch[g_y[0]:g_y[1], g_x[0]:g_x[1]]

        if self.joint_weights is not None:
            if self.joint_weights.shape[0] != num_joints:
                raise ValueError(f"joint_weights has {self.joint_weights.shape[0]} entries for {num_joints} joints")
            weight = weight * self.joint_weights
        return target, weight.astype(np.float32)

    # ------------------------------------------------------------------ decode
    def decode(self, heatmaps: ArrayLike, method: str | None = None) -> tuple[ArrayLike, ArrayLike]:
        """Heatmaps ``(N, K, h, w)`` -> ``(coords (N, K, 2) heatmap pixels (x, y), maxvals (N, K, 1))``.

        Returns the input's type: numpy in -> float32 numpy out; torch in -> float32 tensors on the
        input's device (the work itself is done on CPU in numpy, as the official code). ``maxvals``
        are always the raw heatmap maxima (before any DARK blur).

        * ``"argmax"``: official ``get_final_preds`` with ``POST_PROCESS``: integer argmax, then
          ``+0.25 * sign(hm[y, x+1] - hm[y, x-1])`` (same for y) when ``1 < px < w-1 and 1 < py < h-1``.
        * ``"dark"``: official DARK: blur (zero-padded, kernel :attr:`blur_kernel`, rescaled to the
          original maximum), ``log(max(hm, 1e-10))``, one Newton/Taylor step at the integer argmax
          when ``1 < px < w-2 and 1 < py < h-2``.
        """
        method = method or self.decode_method
        is_torch = isinstance(heatmaps, torch.Tensor)
        hm = _to_numpy(heatmaps)
        if hm.ndim != 4:
            raise ValueError(f"heatmaps must be (N, K, h, w), got shape {hm.shape}")
        hm = hm.astype(np.float32, copy=False)
        coords, maxvals = get_max_preds(hm)
        n, k, h, w = hm.shape
        if method == "argmax":
            px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
            py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
            ok = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
            ni, ki = np.nonzero(ok)
            x, y = px[ok], py[ok]
            diff_x = hm[ni, ki, y, x + 1] - hm[ni, ki, y, x - 1]
            diff_y = hm[ni, ki, y + 1, x] - hm[ni, ki, y - 1, x]
            coords[ni, ki, 0] += np.sign(diff_x) * 0.25
            coords[ni, ki, 1] += np.sign(diff_y) * 0.25
        elif method == "dark":
            blurred = _gaussian_blur_zero_pad(hm, self.blur_kernel)
            coords = _dark_refine(coords, np.log(np.maximum(blurred, 1e-10)))
        else:
            raise ValueError(f"decode method must be 'argmax' or 'dark', got {method!r}")
        coords = coords.astype(np.float32)
        maxvals = maxvals.astype(np.float32)
        if is_torch:
            dev = heatmaps.device
            return torch.from_numpy(coords).to(dev), torch.from_numpy(maxvals).to(dev)
        return coords, maxvals

    def heatmap_to_input(self, coords: ArrayLike) -> ArrayLike:
        """Heatmap pixels -> input-crop pixels (multiply by the stride; what ``transform_preds`` implies)."""
        sx, sy = self.stride
        if isinstance(coords, torch.Tensor):
            return coords * coords.new_tensor([sx, sy])
        return np.asarray(coords) * np.array([sx, sy], dtype=np.float32)

    # ------------------------------------------------------------------ flip
    @staticmethod
    def flip_back(heatmaps: ArrayLike, flip_index: Sequence[int], shift: bool = False) -> ArrayLike:
        return flip_back(heatmaps, flip_index, shift=shift)

    @staticmethod
    def flip_test_average(heatmaps: ArrayLike, heatmaps_of_flipped_input: ArrayLike,
                          flip_index: Sequence[int], shift: bool = True) -> ArrayLike:
        return flip_test_average(heatmaps, heatmaps_of_flipped_input, flip_index, shift=shift)


def flip_back(heatmaps: ArrayLike, flip_index: Sequence[int], shift: bool = False) -> ArrayLike:
    """Mirror heatmaps ``(N, K, h, w)`` predicted on a flipped image back to the original frame.

    Flips along width and reorders channels so ``out[:, j] = flipped[:, flip_index[j]]`` (official
    ``flip_back`` swaps the ``flip_pairs``; identical for an involutive ``flip_index``). With
    ``shift=True`` applies the official ``TEST.SHIFT_HEATMAP`` one-pixel right shift
    ``out[..., 1:] = out[..., :-1]`` (column 0 keeps its value). Torch in -> torch out (autograd-safe,
    same device); numpy in -> numpy out.
    """
    idx = list(flip_index)
    if isinstance(heatmaps, torch.Tensor):
        if heatmaps.ndim != 4:
            raise ValueError(f"heatmaps must be (N, K, h, w), got {tuple(heatmaps.shape)}")
        out = heatmaps.flip(-1)[:, torch.as_tensor(idx, device=heatmaps.device)]
        if shift:
            out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
        return out
    hm = np.asarray(heatmaps)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, h, w), got {hm.shape}")
    out = hm[:, idx, :, ::-1].copy()
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


def flip_test_average(heatmaps: ArrayLike, heatmaps_of_flipped_input: ArrayLike,
                      flip_index: Sequence[int], shift: bool = True) -> ArrayLike:
    """Official flip test: ``(heatmaps + flip_back(heatmaps_of_flipped_input, shift)) * 0.5``."""
    return (heatmaps + flip_back(heatmaps_of_flipped_input, flip_index, shift=shift)) * 0.5


class JointsMSELoss(nn.Module):
    """Official ``JointsMSELoss``: ``0.5 * mean_k MSE(pred_k * w_k, gt_k * w_k)``.

    Each joint's MSE is a mean over batch and pixels, so the result equals ``0.5 * mean`` over all
    elements. ``target_weight`` may be ``(N, K)`` or ``(N, K, 1)``.
    """

    def __init__(self, use_target_weight: bool = True) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor | None = None) -> torch.Tensor:
        n, k = output.shape[:2]
        pred = output.reshape(n, k, -1)
        gt = target.reshape(n, k, -1).to(pred.dtype)
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError("use_target_weight=True needs target_weight")
            w = target_weight.reshape(n, k, 1).to(pred.dtype)
            pred, gt = pred * w, gt * w
        return 0.5 * torch.mean((pred - gt) ** 2)

