"""``hrnet fit|validate|test``: Lightning's CLI over the task modules, configured by YAML.

The task follows from the preset the config names (``model.model``): pose presets train
:class:`PoseEstimation`, segmentation presets :class:`Segmentation`; configs stay flat. Everything
Lightning's Trainer offers is a config key or a dotted override (``--trainer.devices 8``,
``--trainer.num_nodes 2``, ``--trainer.precision bf16-mixed``, ``--trainer.sync_batchnorm true``,
``--ckpt_path last`` to resume); ``--print_config`` shows the resolved run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI

from ..models import get_preset

# Settings the pose model's codec and the data's target encoder must agree on: one value, two places.
POSE_SHARED_WITH_DATA = ("input_size", "sigma", "unbiased", "keypoints", "use_joint_weights")


class PoseCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
        for key in POSE_SHARED_WITH_DATA:
            parser.link_arguments(f"model.{key}", f"data.{key}")


def preset_named(args: Sequence[str]) -> str | None:
    """The ``model.model`` preset of a command line: the last ``--model.model`` or config file wins."""
    name = None
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else None
        if arg == "--config" and value and Path(value).is_file():
            config = yaml.safe_load(Path(value).read_text()) or {}
            name = (config.get("model") or {}).get("model", name)
        elif arg == "--model.model" and value:
            name = value
        elif arg.startswith("--model.model="):
            name = arg.split("=", 1)[1]
    return name


def run_lightning(args: Sequence[str]) -> None:
    name = preset_named(args)
    kwargs = dict(args=list(args), save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "hrnet"})
    if name is not None and get_preset(name).task == "segmentation":
        from .segmentation.data import SegDataModule
        from .segmentation.module import Segmentation

        LightningCLI(Segmentation, SegDataModule, **kwargs)
    else:
        from .pose.data import PoseDataModule
        from .pose.module import PoseEstimation

        PoseCLI(PoseEstimation, PoseDataModule, **kwargs)
