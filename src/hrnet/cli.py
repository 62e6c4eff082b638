"""The ``hrnet`` command line: ``models``, ``convert``, ``predict``, ``demo``, ``export`` here, ``fit``,
``validate``, ``test`` through Lightning's CLI; the task-specific parts come from :data:`hrnet.tasks.registry.TASKS`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .tasks.registry import DEFAULT_TASK, TASKS, task_of
from .zoo import choices, zoo_rows

log = logging.getLogger("hrnet")


def format_table(rows: list[dict[str, object]], markdown: bool) -> str:
    headers = ["model", "task", "params (M)", "GFLOPs", "input (HxW)", "loads checkpoints of"]
    cells = [[str(r["name"]), str(r["task"]), f"{r['params_m']:.3f}", f"{r['gflops']:.2f}", str(r["input"]),
              str(r["checkpoints"])] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 3) else '<'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*c) for c in cells])


def cmd_models(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.task)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows, markdown=args.format == "markdown"))
    if args.format != "json":
        print("\nGFLOPs = conv + linear multiply-adds / 2**30 (the HRNet papers' convention), batch 1.")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from .models import PRESETS, CheckpointError, read_checkpoint, to_official
    from .models.convert import to_ours
    from .models.presets import guess_preset

    ours = to_ours(read_checkpoint(args.src))
    guess, matched, total = guess_preset(ours)
    print(f"{args.src}: {len(ours)} tensors; closest preset {guess} ({matched}/{total} match by name and shape)")
    if args.to == "official":
        family = args.family or (PRESETS[guess].family if guess else None)
        if family is None:
            raise CheckpointError("cannot tell the checkpoint family; pass --family cls|pose|seg|face|higher")
        if family == "det":
            raise CheckpointError("detectors have no official HRNet layout; use --to mmdet")
        out: dict[str, Any] = to_official(ours, family)
    elif args.to == "mmdet":
        from .models.mmdet import to_mmdet

        out = to_mmdet(ours)
    else:
        out = ours
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(args.dst) + ".tmp")
    torch.save(out, tmp)
    tmp.replace(args.dst)
    print(f"wrote {args.dst} ({args.to} layout)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a synthetic dataset in a real format, train a small model, evaluate on held-out data."""
    task = TASKS[args.task]
    config, run = task.demo()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("train_images", args.train_images)) if v is not None}
    run(Path(args.out or task.demo_out), config(**overrides), resume=not args.fresh)
    return 0


def predictor_from_args(args: argparse.Namespace) -> Any:
    """The task's :class:`hrnet.tasks.base.Predictor` that ``hrnet predict`` flags describe, accelerated as they say."""
    from .inference import tune_malloc
    from .openvino_backend import ConversionCache
    from .tasks.base import OpenVinoConversion, checkpoint_settings

    _check_backend(args)
    stored = checkpoint_settings(args.weights)
    name = args.model or stored[1].get("model")
    if name is None:
        raise ValueError(f"{args.weights}: no model name stored in the checkpoint; pass --model (a preset: "
                         "hrnet models)")
    task = task_of(name, "predict")
    tune_malloc()
    cache = _cache_dir(args.cache_dir)
    if args.backend == "openvino" and stored[0] is None and args.precision != "int8" and cache is not None \
            and "openvino" in task.exports:
        stored = (OpenVinoConversion(ConversionCache(cache)), stored[1])
    predictor = task.predictor().from_args(args, stored)
    predictor.accelerate(args.precision, args.compile, args.backend, args.calibration_batches, cache or False)
    return predictor


def cmd_predict(args: argparse.Namespace) -> int:
    """The task's predictions (pose keypoints, segmentation labels ...) for an image, a folder or a video."""
    if args.devices is not None or args.num_nodes > 1:
        report = _predict_distributed(args)
        if report is None:  # a rank other than 0: rank 0 reports
            return 0
    else:
        report = predictor_from_args(args).run(Path(args.source), Path(args.out), skip_existing=args.skip_existing)
    kept = f", {report.kept} kept from an earlier run" if report.kept else ""
    print(f"wrote {report.results} and pictures in {args.out} ({report.predicted} predicted{kept})")
    if report.failed:
        total = report.predicted + report.kept + len(report.failed)
        name, why = report.failed[0]
        print(f"hrnet predict: error: {len(report.failed)} of {total} inputs failed (first: {name}: {why}); "
              f"the others are in {report.results}", file=sys.stderr)
        return 1
    return 0


def _predict_distributed(args: argparse.Namespace) -> Any:
    """``hrnet predict --devices N [--num-nodes M]``: Lightning's predict loop on every device, one merged results file."""
    from .files import VIDEO_SUFFIXES, iter_inputs
    from .tasks.distributed_predict import predict_distributed

    _check_backend(args)  # before any process is started, so that a mistake is told once
    paths = list(iter_inputs(Path(args.source)))
    videos = [path.name for path in paths if path.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        raise ValueError(f"--devices predicts image files; {videos[0]} is a video (predict videos without --devices)")
    if args.skip_existing:
        raise ValueError("--skip-existing applies to one-process runs; leave out --devices / --num-nodes")

    def build(device: str) -> Any:
        return predictor_from_args(argparse.Namespace(**{**vars(args), "device": device}))

    devices = int(args.devices) if args.devices and args.devices.isdigit() else (args.devices or "auto")
    return predict_distributed(build, paths, Path(args.out), devices, args.num_nodes, args.accelerator)


def _cache_dir(chosen: str | None) -> Path | None:
    """``--cache-dir``: ``off`` keeps no converted models, no value takes the default (``HRNET_CACHE``)."""
    from .openvino_backend import default_cache_dir

    if chosen is None:
        return default_cache_dir()
    return None if chosen == "off" else Path(chosen)


def _check_backend(args: argparse.Namespace) -> None:
    """``hrnet predict``: the weights file exists, and it, backend, precision, ``--compile`` and device fit together."""
    if not Path(args.weights).is_file():
        raise FileNotFoundError(f"--weights {args.weights}: file not found")
    suffix = Path(args.weights).suffix
    runs = {".onnx": ("onnxruntime",), ".xml": ("openvino",)}.get(suffix, ("torch", "openvino"))
    if args.backend not in runs:
        raise ValueError(f"--backend {args.backend} with --weights {args.weights}: onnxruntime runs .onnx files "
                         "(`hrnet export onnx`), openvino runs .xml files (`hrnet export openvino`) and checkpoints, "
                         "torch runs checkpoints")
    if args.backend == "onnxruntime" and args.precision != "fp32":
        raise ValueError("--precision bf16/int8 applies to the torch and openvino backends, not --backend onnxruntime")
    if args.compile and args.backend != "torch":
        raise ValueError(f"--compile applies to the torch backend; --backend {args.backend} always compiles")
    if suffix == ".xml" and args.precision == "int8":
        raise ValueError(f"--precision int8 with --weights {args.weights}: int8 is calibrated from a checkpoint; "
                         "pass the checkpoint with --backend openvino")
    if (args.precision == "int8" or args.backend == "openvino") and args.device != "cpu":
        raise ValueError(f"--precision int8 and --backend openvino run on the CPU, not --device {args.device}")


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint to ONNX (or OpenVINO) and check onnxruntime (OpenVINO) against PyTorch on a random input."""
    import torch

    from .export import OnnxModel, export_onnx, max_abs_diff
    from .models import create_model, get_preset
    from .runtime import task_settings
    from .tasks.base import read_hparams

    weights = Path(args.weights)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {weights}")
    hparams = read_hparams(weights)
    name = args.model or hparams.get("model")
    if name is None:
        raise ValueError(f"{weights}: no model name stored in the checkpoint; pass it, e.g. "
                         "hrnet export onnx pose_hrnet_w32 --weights CKPT")
    preset = get_preset(name)
    accepted = preset.head_args()
    head: dict[str, int] = {}
    for arg in ("num_classes", "num_joints", "num_landmarks"):
        value = getattr(args, arg)
        if value is not None:
            if arg not in accepted:
                raise ValueError(f"--{arg.replace('_', '-')} does not apply to {name} (it takes {accepted})")
            head[arg] = value
    task = TASKS.get(preset.task)
    if task is not None:
        if args.format not in task.exports:
            formats = f"these formats do: {', '.join(task.exports)}" if task.exports else "no export format does"
            raise ValueError(f"hrnet export {args.format} does not apply to {preset.task} models ({formats})")
        head = {**task.predictor().head_args(hparams), **head}
    settings = task_settings(hparams, task.settings if task is not None else ())
    size = tuple(args.input_size or hparams.get("input_size") or preset.input_size)
    model = create_model(name, weights=weights, **head).eval()
    if args.format == "openvino":
        return _export_openvino(model, name, size, Path(args.out or weights.with_suffix(".xml")), settings, args)
    out = Path(args.out or weights.with_suffix(".onnx"))
    export_onnx(model, out, input_size=size, dynamic_hw=not args.static, opset=args.opset,
                settings=settings)
    onnx_model = OnnxModel(out)
    kind = "dynamic" if onnx_model.metadata.get("dynamic_hw") == "true" else f"static {size[0]}x{size[1]}"
    diff, scale = max_abs_diff(model, onnx_model, torch.randn(1, 3, *size))
    print(f"wrote {out} ({name}, input {size[0]}x{size[1]}, dynamic batch, {kind} H/W)")
    print(f"max abs diff onnxruntime vs PyTorch: {diff:.3g} (max abs output {scale:.3g})")
    return 0


def _export_openvino(model: Any, name: str, size: tuple[int, ...], out: Path, settings: dict[str, Any],
                     args: argparse.Namespace) -> int:
    """``hrnet export openvino``: an fp32 OpenVINO model (dynamic batch, H and W), read back and compared
    with PyTorch; the precision (fp32/bf16) is chosen when it runs (``hrnet predict --precision``)."""
    import torch

    from .export import max_abs_diff
    from .openvino_backend import OpenVinoModel

    if args.static or args.opset is not None:
        raise ValueError("--static and --opset apply to `hrnet export onnx`")
    converted = OpenVinoModel.convert(model, "fp32", example=torch.randn(1, 3, *size))
    converted.input_size = (int(size[0]), int(size[1]))
    converted.settings = settings
    converted.save(out)
    diff, scale = max_abs_diff(model, OpenVinoModel.load(out), torch.randn(1, 3, *size))
    print(f"wrote {out} and {out.with_suffix('.bin')} ({name}, input {size[0]}x{size[1]}, dynamic batch and H/W)")
    print(f"max abs diff OpenVINO fp32 vs PyTorch: {diff:.3g} (max abs output {scale:.3g})")
    return 0


def build_parser(task_flags: bool = True) -> argparse.ArgumentParser:
    """The command line; ``task_flags=False`` leaves out ``hrnet predict``'s per-task flag groups, which import
    every task's predictor (``main`` adds them only for ``hrnet predict``, so other commands start fast)."""
    parser = argparse.ArgumentParser(prog="hrnet", description="HRNet models, checkpoints and pipelines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in LIGHTNING_COMMANDS.items():  # handled by Lightning's CLI; listed here for --help
        sub.add_parser(name, help=text, add_help=False)

    p = sub.add_parser("models", help="print the model zoo (params, GFLOPs, input size)")
    p.add_argument("--task", choices=choices("task"), help="only this task's presets")
    p.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("convert", help="convert a checkpoint between the official/timm layout and ours")
    p.add_argument("src", help="checkpoint file (.pth/.pt/.pth.tar/.ckpt/.safetensors)")
    p.add_argument("dst", help="output file (torch.save)")
    p.add_argument("--to", choices=["ours", "official", "mmdet"], default="ours",
                   help="layout to write (mmdet: an HRNetV2p detector in mmdetection's keys)")
    p.add_argument("--family", choices=choices("family"),
                   help="official layout to write (default: that of the closest preset)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("predict", help="a task's predictions (" + ", ".join(TASKS) + ") for an image, a folder or "
                       "a video")
    p.add_argument("source", help="image file, folder of images, or video file")
    p.add_argument("--weights", required=True, help="checkpoint (ours, Lightning .ckpt, or official), or an exported "
                   ".onnx / .xml file")
    p.add_argument("--model", help="preset name (read from our checkpoints when omitted); picks the task")
    p.add_argument("--num-classes", type=int, help="classes of a checkpoint that does not store them (segmentation: "
                   "default 19; detection: background included, default 81)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="bf16: BN folded, channels-last, bf16 autocast where the CPU/GPU has native bf16; int8 (CPU, "
                   "needs torchao, always compiled): calibrated on the first --calibration-batches inputs (see README)")
    p.add_argument("--calibration-batches", type=int, default=8,
                   help="int8: how many model input batches (run in fp32) calibrate the quantization (default 8)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (worth it for many inputs of one size; each new size compiles once)")
    p.add_argument("--backend", choices=["torch", "openvino", "onnxruntime"], default="torch",
                   help="openvino (CPU; pip install openvino, fastest here): a checkpoint, or an .xml file from "
                   "`hrnet export openvino`; onnxruntime: an .onnx file from `hrnet export onnx`")
    p.add_argument("--cache-dir", help="openvino: where converted and compiled models are kept for the next run "
                   "(default: $HRNET_CACHE, else ~/.cache/hrnet; off: keep none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/predict", help="output folder (default: runs/predict)")
    p.add_argument("--devices", help="run Lightning's predict loop on this many devices (or auto), one process each "
                   "(DDP), each writing its shard of the results, merged into one results file at the end")
    p.add_argument("--num-nodes", type=int, default=1, help="with --devices: machines taking part (default 1)")
    p.add_argument("--accelerator", default="auto", help="with --devices: cpu, gpu or auto (Lightning's)")
    p.add_argument("--skip-existing", action="store_true",
                   help="keep the inputs an earlier run into --out finished (picture and records there); "
                   "predict the rest")
    for task in TASKS.values() if task_flags else ():
        task.predictor().add_arguments(p.add_argument_group(f"{task.name} models", task.summary))
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="train and evaluate on a generated dataset (about 5 min on 2 CPU cores)")
    demos = {name: task for name, task in TASKS.items() if task.demo is not None}
    p.add_argument("--task", choices=list(demos), default=DEFAULT_TASK)
    outs = ", ".join(f"{task.demo_out} for {name}" for name, task in demos.items())
    p.add_argument("--out", help=f"output folder (default: {outs})")
    p.add_argument("--epochs", type=int, help="training epochs (default: the task's demo config)")
    p.add_argument("--train-images", type=int, help="synthetic training images (default: the task's demo config)")
    p.add_argument("--fresh", action="store_true", help="do not resume from OUT/checkpoints/last.ckpt")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export a model to ONNX or OpenVINO (checked against PyTorch)")
    p.add_argument("format", choices=["onnx", "openvino"], help="output format (openvino: .xml + .bin, fp32 weights)")
    p.add_argument("model", nargs="?", help="preset name (read from our checkpoints when omitted)")
    p.add_argument("--weights", required=True, help="checkpoint (ours, Lightning .ckpt, or official)")
    p.add_argument("--out", help="output file (default: the checkpoint's name with .onnx / .xml)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="example input size (default: from the checkpoint, else the preset's)")
    p.add_argument("--num-classes", type=int, help="classification/segmentation classes")
    p.add_argument("--num-joints", type=int, help="pose keypoints")
    p.add_argument("--num-landmarks", type=int, help="face landmarks")
    p.add_argument("--static", action="store_true",
                   help="onnx: fixed height and width (the batch axis stays dynamic; openvino files are always dynamic)")
    p.add_argument("--opset", type=int, help="onnx: opset (default: the exporter's)")
    p.set_defaults(func=cmd_export)
    return parser


LIGHTNING_COMMANDS = {
    "fit": "train (Lightning): hrnet fit --config configs/pose/coco_w32_256x192_adam_lr1e-3.yaml",
    "validate": "evaluate on the validation set (Lightning)",
    "test": "evaluate on the test set (Lightning)",
}


def configure_console(verbose: bool) -> None:
    """Each message once: our logger prints through its own handler (INFO with ``-v``, else warnings) and
    leaves Lightning's to Lightning; Lightning's advertisements and warnings that tell a user nothing
    (``hrnet`` passes ``args`` to LightningCLI on purpose; a deprecation inside Lightning) are dropped."""
    ours = logging.getLogger("hrnet")
    if not any(isinstance(h, _Stderr) for h in ours.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO if verbose else logging.WARNING)
    ours.propagate = False
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in target.filters):
            target.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class _Stderr(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (``main`` may run many times in one process)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _DropTips(logging.Filter):
    """Drops Lightning's "💡 Tip: try installing ..." lines (cloud-logger and model-registry advertisements)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def error_message(err: BaseException) -> str:
    """What to tell the user of ``err``: its message, except that an error a DataLoader worker raised and
    PyTorch re-raised with the worker's traceback in its text is told as the original one-line message
    (``image file x.jpg is truncated ...``)."""
    text = str(err)
    if text.startswith("Caught ") and "DataLoader worker" in text.split("\n", 1)[0]:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``hrnet COMMAND ...``; a user mistake (a bad file, argument or preset) is one line on stderr and exit
    code 2, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_console(verbose=bool(argv) and argv[0] in ("-v", "--verbose"))  # the root parser's -v comes first
    command = argv[0] if argv else ""
    start = time.perf_counter()
    try:
        if command in LIGHTNING_COMMANDS:
            from .tasks.lightning_cli import run_lightning

            run_lightning(argv)
            return 0
        subcommand = next((arg for arg in argv if not arg.startswith("-")), "")
        args = build_parser(task_flags=subcommand == "predict").parse_args(argv)
        command = args.command
        code = args.func(args)
    except (FileNotFoundError, ValueError) as err:  # a CheckpointError is a ValueError
        print(f"hrnet {command}: error: {error_message(err)}", file=sys.stderr)
        return 2
    log.info("done in %.1f s", time.perf_counter() - start)
    return code


if __name__ == "__main__":
    sys.exit(main())
