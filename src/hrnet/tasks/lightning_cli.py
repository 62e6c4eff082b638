"""``hrnet fit|validate|test``: Lightning's CLI over the task modules, configured by YAML.

The task follows from the preset the config names (``model.model``): its entry in
:data:`hrnet.tasks.registry.TASKS` gives the LightningModule and DataModule (pose presets train
``PoseEstimation``, segmentation presets ``Segmentation``); configs stay flat. Everything
Lightning's Trainer offers is a config key or a dotted override (``--trainer.devices 8``,
``--trainer.num_nodes 2``, ``--trainer.precision bf16-mixed``, ``--trainer.sync_batchnorm true``,
``--ckpt_path last`` to resume, ``--checkpoint_every_n_steps 1000`` to save a resume point within epochs);
``--print_config`` shows the resolved run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.layer_sync import LayerSync

from .checkpoints import AtomicCheckpointIO
from .registry import Task, task_of
from .sync_batchnorm import SyncBatchNormPlugin


class TaskCLI(LightningCLI):
    """Lightning's CLI over one task's LightningModule and DataModule; the task's ``linked`` settings (which
    the model's codec and the data's target encoder must agree on) are given once, as ``model.X``."""

    def __init__(self, task: Task, **kwargs: Any) -> None:
        self.task = task
        module, datamodule = task.lightning()
        super().__init__(module, datamodule, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        for key in self.task.linked:
            parser.link_arguments(f"model.{key}", f"data.{key}")
        parser.add_argument("--checkpoint_every_n_steps", type=int | None, default=None,
                            help="also save last.ckpt every N optimizer steps (beside the config's checkpoints), "
                                 "so a killed run resumes mid-epoch with --ckpt_path last")

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the ``model`` settings with the ones ``--ckpt_path`` stored; here the stored ones only
        fill in what the config and command line leave at its default, so ``hrnet validate --ckpt_path best.ckpt
        --model.flip_test false --model.results_dir out`` does what it says."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        given = self.config[subcommand].get("model")
        defaults = self._parser(subcommand).get_defaults().get("model")
        super()._parse_ckpt_path()
        if given is None or defaults is None:
            return
        model = self.config[subcommand]["model"]
        for key, value in vars(given).items():
            if value != getattr(defaults, key, None):
                model[key] = value

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        """Checkpoints are saved crash-safe (:class:`AtomicCheckpointIO`) unless the config names its own
        plugins, and ``sync_batchnorm`` works on CPU too (:class:`SyncBatchNormPlugin`); both are added here
        rather than as defaults so the saved ``config.yaml`` stays plain. With
        ``checkpoint_every_n_steps``, a step-interval ``ModelCheckpoint`` writes ``last.ckpt`` into the
        config's checkpoint folder, where ``--ckpt_path last`` looks."""
        plugins = config.get("plugins") or [AtomicCheckpointIO()]
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if config.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
            plugins = [*plugins, SyncBatchNormPlugin()]
        config["plugins"] = plugins
        every = (self.config_init[self.subcommand] if self.subcommand else self.config_init).get("checkpoint_every_n_steps")
        if every:
            folders = [c.dirpath for c in config.get("callbacks") or [] if isinstance(c, ModelCheckpoint)]
            steps = ModelCheckpoint(dirpath=folders[0] if folders else None, save_last=True, save_top_k=0,
                                    every_n_train_steps=int(every))
            callbacks = [*callbacks, steps] if folders else [*callbacks, steps, ModelCheckpoint()]  # + the default
        return super()._instantiate_trainer(config, callbacks)


def preset_named(args: Sequence[str]) -> str | None:
    """The ``model.model`` preset of a command line: the last ``--model.model`` or config file wins."""
    name = None
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--config="):
            arg, value = "--config", arg.split("=", 1)[1]
        if arg == "--config" and value and Path(value).is_file():
            try:
                config = yaml.safe_load(Path(value).read_text())
            except yaml.YAMLError as err:
                raise ValueError(f"--config {value}: not valid YAML ({str(err).splitlines()[0]})") from err
            model = config.get("model") if isinstance(config, dict) else None
            name = model.get("model", name) if isinstance(model, dict) else name
        elif arg == "--model.model" and value:
            name = value
        elif arg.startswith("--model.model="):
            name = arg.split("=", 1)[1]
    return name


def run_lightning(args: Sequence[str]) -> None:
    """``hrnet fit|validate|test ...``: the task follows from the preset the command line names (the
    default task when it names none, e.g. ``hrnet fit --help``)."""
    task = task_of(preset_named(args), args[0] if args else "fit")
    with warnings.catch_warnings():  # we pass args on purpose: sys.argv holds the same command line
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        TaskCLI(task, args=list(args), save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "hrnet"})
