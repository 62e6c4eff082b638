"""Typed description of an HRNet backbone.

A network is a stem, stage 1 (a stack of Bottlenecks at 1/4 resolution) and stages 2-4, where
stage n has n parallel branches of widths W, 2W, 4W, 8W (paper, Sec. 3). Presets are written as
a call to :func:`derive_spec`; the per-stage tuples are derived, never spelled out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BlockType = Literal["basic", "bottleneck"]
EXPANSION: dict[str, int] = {"basic": 1, "bottleneck": 4}


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``num_modules`` HR modules, each with ``num_blocks[b]`` blocks on branch b."""

    num_modules: int
    block: BlockType
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.num_blocks) != len(self.num_channels):
            raise ValueError(
                f"StageSpec: num_blocks {self.num_blocks} and num_channels {self.num_channels} "
                "must have one entry per branch"
            )
        if self.block not in EXPANSION:
            raise ValueError(f"StageSpec: block must be one of {sorted(EXPANSION)}, got {self.block!r}")

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(c * EXPANSION[self.block] for c in self.num_channels)


@dataclass(frozen=True)
class HRNetSpec:
    """A whole backbone plus the fusion details that official checkpoint families differ in.

    ``upsample_mode``/``align_corners`` are how the fuse step's up paths resize (pose and
    classification: nearest; segmentation and face: bilinear). ``multi_scale_output=False`` makes
    the last module of the last stage output branch 0 only, as the official pose code does.
    """

    stages: tuple[StageSpec, ...]
    stem_width: int = 64
    upsample_mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool | None = None
    multi_scale_output: bool = True
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        if self.upsample_mode == "nearest" and self.align_corners is not None:
            raise ValueError("HRNetSpec: align_corners must be None with upsample_mode='nearest'")
        if self.upsample_mode == "bilinear" and self.align_corners is None:
            raise ValueError("HRNetSpec: bilinear upsampling needs align_corners=True or False")
        for n, stage in enumerate(self.stages[1:], start=2):
            if stage.num_branches != self.stages[n - 2].num_branches + 1:
                raise ValueError(f"HRNetSpec: stage {n} must have one more branch than stage {n - 1}")

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of the backbone outputs, highest resolution first."""
        return self.stages[-1].out_channels


def derive_spec(
    width: int,
    *,
    modules: tuple[int, ...] = (1, 1, 4, 3),
    blocks: tuple[int, ...] = (4, 4, 4, 4),
    stage1_width: int = 64,
    **fusion: object,
) -> HRNetSpec:
    """The standard HRNet schedule for width ``W``: stage n has n branches of width W * 2**b.

    ``modules[n]``/``blocks[n]`` give modules per stage and blocks per branch for stage n+1.
    The defaults are HRNet-W18..W64 (paper, Table 1 / Appendix): 1, 1, 4, 3 modules, 4 blocks.
    """
    stage1 = StageSpec(modules[0], "bottleneck", (blocks[0],), (stage1_width,))
    later = tuple(
        StageSpec(modules[n], "basic", (blocks[n],) * (n + 1), tuple(width * 2**b for b in range(n + 1)))
        for n in range(1, len(modules))
    )
    return HRNetSpec(stages=(stage1, *later), **fusion)  # type: ignore[arg-type]
