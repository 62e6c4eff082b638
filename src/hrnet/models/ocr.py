"""HRNet + OCR: object-contextual representations on the HRNetV2 representation.

OCR (Yuan, Chen and Wang, "Object-Contextual Representations for Semantic Segmentation",
ECCV 2020) is the segmentation head of the HRNet-OCR models (HRNet-Semantic-Segmentation,
HRNet-OCR branch, ``seg_hrnet_ocr.py``). On the HRNetV2 concat of the four branches it

1. predicts coarse class logits (``aux_head``): the *soft object regions*;
2. reduces the features to ``mid_channels`` (``conv3x3_ocr``);
3. gathers one *object region representation* per class: the features averaged over the
   pixels, weighted by a softmax of that class's aux logits over all pixels
   (``ocr_gather_head``, no parameters);
4. lets every pixel attend to the K object representations (``ocr_distri_head``): scaled
   dot-product attention with ``key_channels``-wide queries/keys/values, softmax over the K
   classes, then the context is concatenated with the pixel features and fused by a 1x1 conv;
5. classifies the augmented representation (``cls_head``).

Attribute names are the official ones, so official checkpoint keys map to ``head.<key>`` with no
special case. The BN + ReLU pairs inside ``ocr_distri_head`` are ``Sequential(BN, ReLU)`` in the
official code, hence keys such as ``f_pixel.1.0.weight``; :func:`bn_relu` reproduces that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import concat_upsampled


def bn_relu(channels: int, bn_momentum: float) -> nn.Sequential:
    """``Sequential(BN, ReLU)``: one nested module, as the official OCR code builds it."""
    return nn.Sequential(nn.BatchNorm2d(channels, momentum=bn_momentum), nn.ReLU(inplace=True))


def conv1x1_bn_relu(in_channels: int, out_channels: int, bn_momentum: float) -> list[nn.Module]:
    """1x1 conv without bias, then the nested BN + ReLU (keys ``0.weight``, ``1.0.*``)."""
    return [nn.Conv2d(in_channels, out_channels, 1, bias=False), bn_relu(out_channels, bn_momentum)]


class SpatialGather(nn.Module):
    """Object region representations: a soft, per-class weighted average of the pixel features.

    feats (B, C, H, W), logits (B, K, H, W) -> (B, C, K, 1), where the weights of class k are
    ``softmax(scale * logits[:, k])`` over the H*W pixels. No parameters.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, feats: Tensor, logits: Tensor) -> Tensor:
        b, k = logits.shape[:2]
        weights = F.softmax(self.scale * logits.reshape(b, k, -1), dim=2)  # (B, K, HW)
        pixels = feats.reshape(b, feats.shape[1], -1).transpose(1, 2)  # (B, HW, C)
        return torch.matmul(weights, pixels).transpose(1, 2).unsqueeze(3)  # (B, C, K, 1)

    @staticmethod
    def matmul_macs(inputs: tuple[Tensor, ...], output: Tensor) -> int:
        """Multiply-adds of the (K, HW) @ (HW, C) product, for :func:`~.complexity.count_macs`."""
        feats, logits = inputs
        b, c, h, w = feats.shape
        return b * logits.shape[1] * h * w * c


class ObjectAttention(nn.Module):
    """Pixel-to-object attention: the object contextual representation of the OCR paper.

    query = f_pixel(feats) (B, key, H, W); key = f_object(objects), value = f_down(objects)
    (B, key, K, 1); weights = softmax over the K objects of ``key_channels**-0.5 * query . key``;
    context = f_up(weights @ value) -> (B, C, H, W). f_pixel/f_object are two (1x1 conv, BN,
    ReLU) layers, f_down/f_up one.
    """

    def __init__(self, in_channels: int, key_channels: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.key_channels = key_channels
        m = bn_momentum
        self.f_pixel = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels, m),
                                     *conv1x1_bn_relu(key_channels, key_channels, m))
        self.f_object = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels, m),
                                      *conv1x1_bn_relu(key_channels, key_channels, m))
        self.f_down = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels, m))
        self.f_up = nn.Sequential(*conv1x1_bn_relu(key_channels, in_channels, m))

    def forward(self, feats: Tensor, objects: Tensor) -> Tensor:
        b, _, h, w = feats.shape
        query = self.f_pixel(feats).reshape(b, self.key_channels, -1).transpose(1, 2)  # (B, HW, key)
        key = self.f_object(objects).reshape(b, self.key_channels, -1)  # (B, key, K)
        value = self.f_down(objects).reshape(b, self.key_channels, -1).transpose(1, 2)  # (B, K, key)
        sim = F.softmax(self.key_channels**-0.5 * torch.matmul(query, key), dim=-1)  # (B, HW, K)
        context = torch.matmul(sim, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.f_up(context)

    def matmul_macs(self, inputs: tuple[Tensor, ...], output: Tensor) -> int:
        """Multiply-adds of query @ key and weights @ value (HW x D x K each), for
        :func:`~.complexity.count_macs`; the convs are counted as convs."""
        feats, objects = inputs
        b, _, h, w = feats.shape
        num_objects = objects.shape[2] * objects.shape[3]
        return 2 * b * h * w * self.key_channels * num_objects


class SpatialOCR(nn.Module):
    """Object-contextual representation: ``conv1x1 + BN + ReLU + Dropout2d`` on
    ``cat([context, feats])`` (B, 2C, H, W) -> (B, out_channels, H, W)."""

    def __init__(
        self, in_channels: int, key_channels: int, out_channels: int, dropout: float = 0.05, bn_momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.object_context_block = ObjectAttention(in_channels, key_channels, bn_momentum)
        self.conv_bn_dropout = nn.Sequential(
            *conv1x1_bn_relu(2 * in_channels, out_channels, bn_momentum), nn.Dropout2d(dropout)
        )

    def forward(self, feats: Tensor, objects: Tensor) -> Tensor:
        context = self.object_context_block(feats, objects)
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))


class OCRHead(nn.Module):
    """HRNetV2 concat -> OCR; returns ``[aux_logits, ocr_logits]``, both (B, K, H/4, W/4).

    Shapes, with C = sum(in_channels) (720 for W48), M = ``mid_channels``, D = ``key_channels``:

    * concat of the branches upsampled to branch 0: (B, C, H/4, W/4);
    * ``aux_head`` (1x1 conv C->C with bias, BN, ReLU, 1x1 conv C->K with bias): aux logits;
    * ``conv3x3_ocr`` (3x3 conv C->M with bias, BN, ReLU): pixel features (B, M, H/4, W/4);
    * ``ocr_gather_head``: object representations (B, M, K, 1);
    * ``ocr_distri_head``: attention (width D) and fusion -> (B, M, H/4, W/4);
    * ``cls_head`` (1x1 conv M->K with bias): OCR logits.

    The official defaults are M = 512, D = 256 and dropout 0.05 (hard-coded there). The official
    training loss weights the two outputs 0.4 (aux) and 1.0 (OCR); predictions use the OCR logits.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int = 19,
        mid_channels: int = 512,
        key_channels: int = 256,
        align_corners: bool = True,
        bn_momentum: float = 0.1,
        dropout: float = 0.05,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        c = sum(in_channels)
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(c, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(mid_channels, key_channels, mid_channels, dropout, bn_momentum)
        self.cls_head = nn.Conv2d(mid_channels, num_classes, 1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(c, c, 1),
            nn.BatchNorm2d(c, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, num_classes, 1),
        )

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        feats = concat_upsampled(xs, self.align_corners)
        aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        objects = self.ocr_gather_head(feats, aux)
        feats = self.ocr_distri_head(feats, objects)
        return [aux, self.cls_head(feats)]
