"""Representation heads: what each task reads out of the backbone's multi-resolution list.

* :class:`PoseHead` - HRNetV1: the highest-resolution stream only (paper, Sec. 4, Fig. 3a).
* :class:`V2Head` - HRNetV2: all streams upsampled to 1/4 and concatenated, then two 1x1
  convs (segmentation, face landmarks; Fig. 3b).
* :class:`V2pNeck` - HRNetV2p: a feature pyramid by downsampling the HRNetV2 output (Fig. 3c).
* :class:`ClassificationHead` - HRNet-C, the ImageNet head (Appendix, Fig. 13).
* :class:`HigherHead` - HigherHRNet's deconvolution head (1/4 and 1/2 resolution outputs).

Each takes the list of branch tensors, highest resolution first. Attribute names are the
official ones so checkpoints map key for key (see ``convert.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import BasicBlock, make_layer


def concat_upsampled(xs: Sequence[Tensor], align_corners: bool) -> Tensor:
    """The HRNetV2 representation: every branch resized (bilinear) to branch 0, concatenated.

    (B, C_0, H, W), (B, C_1, H/2, W/2), ... -> (B, sum C_b, H, W).
    """
    size = xs[0].shape[-2:]
    ups = [xs[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners) for x in xs[1:]]
    return torch.cat(ups, dim=1)


class PoseHead(nn.Module):
    """HRNetV1 head: a conv on the 1/4-resolution stream to one heatmap per joint.

    (B, C_0, H/4, W/4) -> (B, K, H/4, W/4). Official key: ``final_layer``.
    """

    def __init__(self, in_channels: Sequence[int], num_joints: int = 17, final_conv_kernel: int = 1) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(
            in_channels[0], num_joints, final_conv_kernel, padding=1 if final_conv_kernel == 3 else 0
        )

    def forward(self, xs: list[Tensor]) -> Tensor:
        return self.final_layer(xs[0])


class V2Head(nn.Module):
    """HRNetV2 head: concat of all upsampled streams, 1x1 conv + BN + ReLU, 1x1 conv to K maps.

    -> (B, K, H/4, W/4) logits (segmentation) or heatmaps (face). Official key: ``last_layer``
    (the face repository calls the same layers ``head``; the converter maps it).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_outputs: int,
        align_corners: bool = False,
        final_conv_kernel: int = 1,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        c = sum(in_channels)
        self.last_layer = nn.Sequential(
            nn.Conv2d(c, c, 1),
            nn.BatchNorm2d(c, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, num_outputs, final_conv_kernel, padding=1 if final_conv_kernel == 3 else 0),
        )

    def forward(self, xs: list[Tensor]) -> Tensor:
        return self.last_layer(concat_upsampled(xs, self.align_corners))


class ClassificationHead(nn.Module):
    """HRNet-C: each stream widened by a Bottleneck, merged top-down by strided convs, 1x1 conv
    to 2048, global average pool, linear classifier. The widths (32, 64, 128, 256) x 4 are fixed
    in the official code whatever the backbone width; ``num_classes=0`` returns pooled features.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int = 1000,
        head_channels: Sequence[int] = (32, 64, 128, 256),
        num_features: int = 2048,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.incre_modules = nn.ModuleList(
            make_layer("bottleneck", c_in, c, 1, bn_momentum) for c_in, c in zip(in_channels, head_channels)
        )
        wide = [c * 4 for c in head_channels]
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.BatchNorm2d(c_out, momentum=bn_momentum),
                nn.ReLU(inplace=True),
            )
            for c_in, c_out in zip(wide[:-1], wide[1:])
        )
        self.final_layer = nn.Sequential(
            nn.Conv2d(wide[-1], num_features, 1),
            nn.BatchNorm2d(num_features, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )
        self.num_features = num_features
        self.classifier: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """A new linear classifier (PyTorch's default init) for ``num_classes``; 0 returns pooled features."""
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, xs: list[Tensor]) -> Tensor:
        """-> (B, num_classes) logits."""
        y = self.incre_modules[0](xs[0])
        for incre, down, x in zip(self.incre_modules[1:], self.downsamp_modules, xs[1:]):
            y = incre(x) + down(y)
        y = self.final_layer(y).mean(dim=(2, 3))
        return self.classifier(y)


class HigherHead(nn.Module):
    """HigherHRNet head: 1x1 conv to J heatmaps + J tag maps at 1/4, then [features, those maps]
    -> 4x4 stride-2 transposed conv + BN + ReLU + BasicBlocks -> 1x1 conv to J heatmaps at 1/2.

    Returns ``[(B, 2J, H/4, W/4), (B, J, H/2, W/2)]``. Official keys: ``final_layers``,
    ``deconv_layers``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_joints: int = 17,
        deconv_channels: int | None = None,
        num_basic_blocks: int = 4,
        tag_per_joint: bool = True,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        c = in_channels[0]
        deconv_channels = deconv_channels or c
        maps = num_joints + (num_joints if tag_per_joint else 1)
        self.final_layers = nn.ModuleList([nn.Conv2d(c, maps, 1), nn.Conv2d(deconv_channels, num_joints, 1)])
        deconv = nn.Sequential(
            nn.ConvTranspose2d(c + maps, deconv_channels, 4, stride=2, padding=1, output_padding=0, bias=False),
            nn.BatchNorm2d(deconv_channels, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )
        blocks = [
            nn.Sequential(BasicBlock(deconv_channels, deconv_channels, bn_momentum=bn_momentum))
            for _ in range(num_basic_blocks)
        ]
        self.deconv_layers = nn.ModuleList([nn.Sequential(deconv, *blocks)])

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        x = xs[0]
        low = self.final_layers[0](x)
        x = self.deconv_layers[0](torch.cat([x, low], dim=1))
        return [low, self.final_layers[1](x)]


class V2pNeck(nn.Module):
    """HRNetV2p, the official ``HRFPN`` (mmdetection ``necks/hrfpn.py``): the HRNetV2 concat (every branch
    bilinearly upsampled to branch 0, ``align_corners=False``) -> a 1x1 conv with bias to ``out_channels``
    (no BN, no activation) -> average pooling with kernel = stride = 2**l in floor mode for l = 0..4 -> an
    unshared 3x3 conv with bias per level. Returns ``OrderedDict`` ``{"0": stride 4, ..., "4": stride 64}`` and
    exposes ``out_channels``: torchvision's backbone contract.

    Any input size works: the upsampling goes to branch 0's size (the official ``scale_factor=2**i`` is the
    same wherever its sizes match), and a level whose map is smaller than its kernel pools what there is into
    one cell (floor mode would give an empty map there, the "output size is too small" of the official code).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        num_levels: int = 5,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.num_levels = num_levels
        self.align_corners = align_corners
        self.reduction_conv = nn.Conv2d(sum(in_channels), out_channels, 1)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(num_levels))

    @staticmethod
    def pool(y: Tensor, level: int) -> Tensor:
        """(B, C, H, W) -> (B, C, max(H // 2**level, 1), max(W // 2**level, 1)) by average pooling."""
        k = 2**level
        return F.avg_pool2d(y, kernel_size=k, stride=k, ceil_mode=min(y.shape[-2:]) < k)

    def forward(self, xs: list[Tensor]) -> "OrderedDict[str, Tensor]":
        y = self.reduction_conv(concat_upsampled(xs, self.align_corners))
        levels = [y] + [self.pool(y, lvl) for lvl in range(1, self.num_levels)]
        return OrderedDict((str(lvl), conv(x)) for lvl, (conv, x) in enumerate(zip(self.fpn_convs, levels)))
