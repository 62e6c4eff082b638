"""The HRNet backbone: stem, stage 1, and stages of parallel multi-resolution modules.

Every module runs its branches, then fuses them: output i is ``ReLU(sum_j f_ij(x_j))`` with
f_ii the identity, f_ij (j < i) a chain of strided 3x3 convs and f_ij (j > i) a 1x1 conv + BN
followed by upsampling to the exact size of branch i (paper, Sec. 3, Eq. 1-2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .blocks import conv_bn, make_layer
from .spec import HRNetSpec, StageSpec

MIN_INPUT_SIZE = 32
"""Smallest accepted input side: the 1/32 branch must hold at least one pixel of the image."""


def fuse_path(i: int, j: int, channels: Sequence[int], bn_momentum: float) -> nn.Module:
    """f_ij: how input branch j reaches output branch i (identity, up, or down)."""
    if j == i:
        return nn.Identity()
    if j > i:  # up: 1x1 conv to width_i + BN; the resize happens in HRModule.fuse
        return conv_bn(channels[j], channels[i], 1, 1, bn_momentum, relu=False)
    steps = [conv_bn(channels[j], channels[j], 3, 2, bn_momentum, relu=True) for _ in range(i - j - 1)]
    steps.append(conv_bn(channels[j], channels[i], 3, 2, bn_momentum, relu=False))
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """One high-resolution module: parallel residual branches, then multi-resolution fusion."""

    def __init__(
        self,
        stage: StageSpec,
        in_channels: Sequence[int],
        multi_scale_output: bool,
        upsample_mode: str,
        align_corners: bool | None,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        self.upsample_mode = upsample_mode
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            make_layer(stage.block, c_in, c, n, bn_momentum)
            for c_in, c, n in zip(in_channels, stage.num_channels, stage.num_blocks)
        )
        channels = stage.out_channels
        num_outputs = stage.num_branches if multi_scale_output else 1
        # A single-branch module has nothing to fuse; like the official code it has no fuse_layers.
        self.fuse_layers = None
        if stage.num_branches > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(fuse_path(i, j, channels, bn_momentum) for j in range(stage.num_branches))
                for i in range(num_outputs)
            )

    def fuse(self, xs: list[Tensor]) -> list[Tensor]:
        """``y_i = ReLU(sum_j f_ij(x_j))``, summed in the order j = 0..n-1 as the official code."""
        outputs = []
        for i, paths in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            terms = []
            for j, (path, x) in enumerate(zip(paths, xs)):
                y = path(x)
                if j > i:
                    y = F.interpolate(y, size=size, mode=self.upsample_mode, align_corners=self.align_corners)
                terms.append(y)
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            outputs.append(F.relu(total))
        return outputs

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        return self.fuse(xs)


def make_transition(prev: Sequence[int], cur: Sequence[int], bn_momentum: float) -> nn.ModuleList:
    """Between stages: keep (or re-width with a 3x3 conv) existing branches; add new ones by
    strided 3x3 convs from the previous lowest-resolution branch."""
    layers: list[nn.Module] = []
    for i, c in enumerate(cur):
        if i < len(prev):
            layers.append(nn.Identity() if prev[i] == c else conv_bn(prev[i], c, 3, 1, bn_momentum, relu=True))
        else:
            steps = [conv_bn(prev[-1], prev[-1], 3, 2, bn_momentum, relu=True) for _ in range(i - len(prev))]
            steps.append(conv_bn(prev[-1], c, 3, 2, bn_momentum, relu=True))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


BACKBONE_PARTS = ("stem", "stage1", "stage2", "stage3", "stage4")
"""What freezing counts in (torchvision's ``trainable_backbone_layers``): the stem, then each stage with the
transition that feeds it."""


class HRNetBackbone(nn.Module):
    """Stem + stages; returns the list of multi-resolution features (strides 4, 8, 16, 32).

    ``feature_info`` lists ``{"num_chs", "reduction", "module"}`` per output, as timm's
    ``features_only`` models do. State-dict keys are the official ones (``conv1``, ``layer1``,
    ``transition1``, ``stage2.0.branches...``, ``stage2.0.fuse_layers...``).
    """

    def __init__(self, spec: HRNetSpec, in_channels: int = 3) -> None:
        super().__init__()
        if spec.stages[0].num_modules != 1 or spec.stages[0].num_branches != 1:
            raise ValueError("HRNetSpec: stage 1 must be one module with one branch")
        self.spec = spec
        self.in_channels = in_channels
        m, w = spec.bn_momentum, spec.stem_width
        self.conv1 = nn.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w, momentum=m)
        self.conv2 = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w, momentum=m)
        self.relu = nn.ReLU(inplace=True)
        s1 = spec.stages[0]
        self.layer1 = make_layer(s1.block, w, s1.num_channels[0], s1.num_blocks[0], m)

        channels = s1.out_channels
        self.num_stages = len(spec.stages)
        for n, stage in enumerate(spec.stages[1:], start=2):
            self.add_module(f"transition{n - 1}", make_transition(channels, stage.out_channels, m))
            self.add_module(f"stage{n}", self._make_stage(stage, stage.out_channels, last=n == self.num_stages))
            channels = stage.out_channels
        self.out_channels: list[int] = list(channels if spec.multi_scale_output else channels[:1])
        self.feature_info = [
            {"num_chs": c, "reduction": 4 * 2**b, "module": f"stage{self.num_stages}"}
            for b, c in enumerate(self.out_channels)
        ]
        self.grad_checkpointing: set[int] = set()

    def _make_stage(self, stage: StageSpec, in_channels: Sequence[int], last: bool) -> nn.Sequential:
        spec = self.spec
        modules = []
        for k in range(stage.num_modules):
            multi = spec.multi_scale_output or not last or k < stage.num_modules - 1
            modules.append(
                HRModule(stage, in_channels, multi, spec.upsample_mode, spec.align_corners, spec.bn_momentum)
            )
            in_channels = stage.out_channels
        return nn.Sequential(*modules)

    def part(self, name: str) -> nn.Module:
        """The modules of one of :data:`BACKBONE_PARTS` (a stage with the transition that feeds it)."""
        if name not in BACKBONE_PARTS[:self.num_stages + 1]:
            raise ValueError(f"backbone part must be one of {BACKBONE_PARTS[:self.num_stages + 1]}, got {name!r}")
        if name == "stem":
            return nn.ModuleList([self.conv1, self.bn1, self.conv2, self.bn2])
        n = int(name[-1])
        if n == 1:
            return self.layer1
        return nn.ModuleList([getattr(self, f"transition{n - 1}"), getattr(self, f"stage{n}")])

    def set_grad_checkpointing(self, stages: bool | Iterable[int] = True) -> None:
        """Recompute activations of the given stages (1-4) in backward instead of storing them.

        ``True`` means every stage, ``False`` none. It only acts in training with grad enabled;
        results are identical, memory drops, backward costs one more forward of those stages.
        """
        if isinstance(stages, bool):
            stages = range(1, self.num_stages + 1) if stages else ()
        chosen = set(stages)
        if not chosen <= set(range(1, self.num_stages + 1)):
            raise ValueError(f"set_grad_checkpointing: stages must be in 1..{self.num_stages}, got {sorted(chosen)}")
        self.grad_checkpointing = chosen

    def check_input(self, x: Tensor) -> None:
        """Fail early, naming what was expected, instead of deep inside a conv."""
        if x.dim() != 4:
            raise ValueError(f"HRNet expects a (B, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"HRNet expects {self.in_channels} input channels, got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if x.shape[-2] < MIN_INPUT_SIZE or x.shape[-1] < MIN_INPUT_SIZE:
            raise ValueError(
                f"HRNet input is too small: {tuple(x.shape[-2:])}; height and width must be >= {MIN_INPUT_SIZE} "
                "(the network downsamples by 32)"
            )

    def _run(self, stage: int, module: Callable[[list[Tensor]], list[Tensor]], xs: list[Tensor]) -> list[Tensor]:
        """Run one HR module of ``stage``, under activation checkpointing if enabled for it."""
        if stage in self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(lambda *t: module(list(t)), *xs, use_reentrant=False)
        return module(xs)

    def _stage1(self, xs: list[Tensor]) -> list[Tensor]:
        return [self.layer1(xs[0])]

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, C, H, W) -> [(B, C_b, ceil(H / 2**(b+2)), ceil(W / 2**(b+2))) for each branch b]."""
        self.check_input(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = self._run(1, self._stage1, [x])
        for n in range(2, self.num_stages + 1):
            transition = getattr(self, f"transition{n - 1}")
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]
            for module in getattr(self, f"stage{n}"):
                xs = self._run(n, module, xs)
        return xs


class HRNet(nn.Module):
    """A backbone and the representation head a task reads from it: ``head(backbone(x))``.

    State-dict keys are ``backbone.<official backbone key>`` and ``head.<official head key>``;
    :mod:`hrnet.models.convert` maps official, timm and our own checkpoints onto them.
    """

    def __init__(self, backbone: HRNetBackbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for ``num_classes`` (0: pooled features), as timm's; only
        classification heads have one."""
        if not hasattr(self.head, "reset_classifier"):
            raise ValueError(f"{type(self.head).__name__} has no classifier to reset")
        self.head.reset_classifier(num_classes)

    def set_grad_checkpointing(self, stages: bool | Iterable[int] = True) -> None:
        """See :meth:`HRNetBackbone.set_grad_checkpointing`."""
        self.backbone.set_grad_checkpointing(stages)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        return self.head(self.backbone(x))
