"""``hrnet fit|validate|test``: Lightning's CLI over the task modules, configured by YAML.

Everything Lightning's Trainer offers is a config key or a dotted override (``--trainer.devices 8``,
``--trainer.num_nodes 2``, ``--trainer.precision bf16-mixed``, ``--trainer.sync_batchnorm true``,
``--ckpt_path last`` to resume); ``--print_config`` shows the resolved run.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from .pose import PoseDataModule, PoseEstimation

# Settings the model's codec and the data's target encoder must agree on: one value, two places.
SHARED_WITH_DATA = ("input_size", "sigma", "unbiased", "keypoints", "use_joint_weights")


class PoseCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
        for key in SHARED_WITH_DATA:
            parser.link_arguments(f"model.{key}", f"data.{key}")


def run_lightning(args: Sequence[str]) -> None:
    PoseCLI(PoseEstimation, PoseDataModule, args=list(args), save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "hrnet"})
