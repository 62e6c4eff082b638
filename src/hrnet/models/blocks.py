"""Residual blocks and small conv helpers shared by every HRNet family.

Attribute names (``conv1``, ``bn1``, ``downsample`` ...) are the official ones, so official and
timm checkpoints map onto these modules key for key.
"""

from __future__ import annotations

from torch import Tensor, nn

from .spec import EXPANSION, BlockType


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int, bn_momentum: float, relu: bool
) -> nn.Sequential:
    """``Sequential(conv (no bias), BN[, ReLU])`` - keys ``0.weight``, ``1.*`` as in the official code."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels, momentum=bn_momentum),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut (ResNet BasicBlock, expansion 1)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut (ResNet Bottleneck, expansion 4)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_layer(
    block: BlockType, in_channels: int, channels: int, num_blocks: int, bn_momentum: float, stride: int = 1
) -> nn.Sequential:
    """``num_blocks`` blocks; the first gets a 1x1 conv + BN shortcut when its shape changes."""
    cls = BLOCKS[block]
    out_channels = channels * EXPANSION[block]
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = conv_bn(in_channels, out_channels, 1, stride, bn_momentum, relu=False)
    layers = [cls(in_channels, channels, stride, downsample, bn_momentum)]
    layers += [cls(out_channels, channels, 1, None, bn_momentum) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)
