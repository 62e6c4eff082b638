"""The ``hrnet`` command line: ``models``, ``convert``, ``demo``, ``export``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .models import PRESETS, CheckpointError, list_models, read_checkpoint, to_official
from .models.complexity import model_complexity
from .models.convert import to_ours
from .models.presets import guess_preset

log = logging.getLogger("hrnet")


def zoo_rows(task: str | None = None) -> list[dict[str, object]]:
    """One row per preset: name, task, params (M), GFLOPs (MACs / 2**30) at its default input."""
    rows = []
    for name in list_models(task):
        preset = PRESETS[name]
        c = model_complexity(name)
        rows.append({
            "name": name,
            "task": preset.task,
            "params_m": round(c.params / 1e6, 3),
            "gflops": round(c.gflops, 2),
            "input": f"{c.input_size[0]}x{c.input_size[1]}",
            "checkpoints": preset.source,
        })
    return rows


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
    ours = to_ours(read_checkpoint(args.src))
    guess, matched, total = guess_preset(ours)
    print(f"{args.src}: {len(ours)} tensors; closest preset {guess} ({matched}/{total} match by name and shape)")
    if args.to == "official":
        family = args.family or (PRESETS[guess].family if guess else None)
        if family is None:
            raise CheckpointError("cannot tell the checkpoint family; pass --family cls|pose|seg|face|higher")
        out: dict[str, torch.Tensor] = to_official(ours, family)
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
    from .demos.pose import PoseDemoConfig, run_pose_demo
    from .demos.segmentation import SegDemoConfig, run_seg_demo

    overrides = {k: v for k, v in (("epochs", args.epochs), ("train_images", args.train_images)) if v is not None}
    if args.task == "segmentation":
        run_seg_demo(Path(args.out or "runs/demo_segmentation"), SegDemoConfig(**overrides), resume=not args.fresh)
    else:
        run_pose_demo(Path(args.out or "runs/demo"), PoseDemoConfig(**overrides), resume=not args.fresh)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Pose keypoints or segmentation labels for an image, a folder of images or a video."""
    from .inference import tune_malloc
    from .models import get_preset
    from .tasks.base import read_hparams

    suffix = Path(args.weights).suffix
    exported = suffix in (".onnx", ".xml")
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
    if exported:
        from .export import load_exported

        name = args.model or load_exported(args.weights).preset
    else:
        name = args.model or read_hparams(args.weights).get("model")
    tune_malloc()
    if name is not None and get_preset(name).task == "segmentation":
        return _predict_segmentation(args)
    from .tasks.base import BoxesFile
    from .tasks.pose.predict import PosePredictor, TorchvisionDetector, run_prediction

    predictor = PosePredictor.from_checkpoint(
        args.weights, model=args.model, keypoints=args.keypoints, input_size=args.input_size,
        decode=args.decode, flip_test=not args.no_flip, device=args.device)
    boxes = BoxesFile(args.boxes, args.box_threshold or 0.0) if args.boxes else None
    detector = None
    if args.detector:
        if not args.detector_weights:
            raise ValueError("--detector needs --detector-weights (no weights are downloaded)")
        threshold = 0.5 if args.box_threshold is None else args.box_threshold
        detector = TorchvisionDetector(args.detector, args.detector_weights, threshold, device=args.device)
    _speed_up(predictor, args)
    target = run_prediction(Path(args.source), Path(args.out), predictor, boxes, detector)
    print(f"wrote {target} and drawn copies in {args.out}")
    return 0


def _speed_up(predictor: Any, args: argparse.Namespace) -> None:
    """``--precision bf16|int8`` / ``--compile`` / ``--backend openvino``: run the predictor's torch model
    through ``inference.prepare`` (int8: calibrated on the first ``--calibration-batches`` model inputs,
    which run in fp32); an ``.xml`` file just takes the precision."""
    from .inference import CalibrateThenInt8, prepare
    from .openvino_backend import OpenVinoModel

    if isinstance(predictor.model, OpenVinoModel):
        predictor.model = predictor.model.with_precision(args.precision)
    elif args.backend == "onnxruntime":
        return
    elif args.precision == "int8":
        predictor.model = CalibrateThenInt8(predictor.model, args.calibration_batches, backend=args.backend)
    elif args.precision != "fp32" or args.compile or args.backend == "openvino":
        predictor.model = prepare(predictor.model, args.precision, compile=args.compile or None, backend=args.backend)


def _predict_segmentation(args: argparse.Namespace) -> int:
    from .tasks.segmentation.predict import SegPredictor, run_seg_prediction

    predictor = SegPredictor.from_checkpoint(
        args.weights, model=args.model, num_classes=args.num_classes, mode=args.mode,
        crop_size=tuple(args.crop) if args.crop else None, stride=tuple(args.stride) if args.stride else None,
        scales=tuple(args.scales), flip=args.flip, device=args.device)
    _speed_up(predictor, args)
    target = run_seg_prediction(Path(args.source), Path(args.out), predictor)
    print(f"wrote {target}, label PNGs and overlays in {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint to ONNX (or OpenVINO) and check onnxruntime (OpenVINO) against PyTorch on a random input."""
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
    if "num_classes" in accepted and "num_classes" not in head and "num_classes" in hparams:
        head["num_classes"] = int(hparams["num_classes"])
    if "num_joints" in accepted and "num_joints" not in head and "keypoints" in hparams:
        from .keypoints.sets import resolve_keypoints

        head["num_joints"] = resolve_keypoints(hparams["keypoints"]).num_joints
    size = tuple(args.input_size or hparams.get("input_size") or preset.input_size)
    model = create_model(name, weights=weights, **head).eval()
    if args.format == "openvino":
        return _export_openvino(model, name, size, Path(args.out or weights.with_suffix(".xml")), hparams, args)
    out = Path(args.out or weights.with_suffix(".onnx"))
    export_onnx(model, out, input_size=size, dynamic_hw=not args.static, opset=args.opset,
                settings=task_settings(hparams))
    onnx_model = OnnxModel(out)
    kind = "dynamic" if onnx_model.metadata.get("dynamic_hw") == "true" else f"static {size[0]}x{size[1]}"
    diff, scale = max_abs_diff(model, onnx_model, torch.randn(1, 3, *size))
    print(f"wrote {out} ({name}, input {size[0]}x{size[1]}, dynamic batch, {kind} H/W)")
    print(f"max abs diff onnxruntime vs PyTorch: {diff:.3g} (max abs output {scale:.3g})")
    return 0


def _export_openvino(model: Any, name: str, size: tuple[int, ...], out: Path, hparams: dict[str, Any],
                     args: argparse.Namespace) -> int:
    """``hrnet export openvino``: an fp32 OpenVINO model (dynamic batch, H and W), read back and compared
    with PyTorch; the precision (fp32/bf16) is chosen when it runs (``hrnet predict --precision``)."""
    from .export import max_abs_diff
    from .openvino_backend import OpenVinoModel
    from .runtime import task_settings

    if args.static or args.opset is not None:
        raise ValueError("--static and --opset apply to `hrnet export onnx`")
    converted = OpenVinoModel.convert(model, "fp32", example=torch.randn(1, 3, *size))
    converted.input_size = (int(size[0]), int(size[1]))
    converted.settings = task_settings(hparams)
    converted.save(out)
    diff, scale = max_abs_diff(model, OpenVinoModel.load(out), torch.randn(1, 3, *size))
    print(f"wrote {out} and {out.with_suffix('.bin')} ({name}, input {size[0]}x{size[1]}, dynamic batch and H/W)")
    print(f"max abs diff OpenVINO fp32 vs PyTorch: {diff:.3g} (max abs output {scale:.3g})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrnet", description="HRNet models, checkpoints and pipelines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in LIGHTNING_COMMANDS.items():  # handled by Lightning's CLI; listed here for --help
        sub.add_parser(name, help=text, add_help=False)

    p = sub.add_parser("models", help="print the model zoo (params, GFLOPs, input size)")
    p.add_argument("--task", choices=sorted({p.task for p in PRESETS.values()}), help="only this task's presets")
    p.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("convert", help="convert a checkpoint between the official/timm layout and ours")
    p.add_argument("src", help="checkpoint file (.pth/.pt/.pth.tar/.ckpt/.safetensors)")
    p.add_argument("dst", help="output file (torch.save)")
    p.add_argument("--to", choices=["ours", "official"], default="ours")
    p.add_argument("--family", choices=sorted({p.family for p in PRESETS.values()}),
                   help="official layout to write (default: that of the closest preset)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("predict", help="pose keypoints or segmentation labels for an image, a folder or a video")
    p.add_argument("source", help="image file, folder of images, or video file (pose)")
    p.add_argument("--weights", required=True, help="checkpoint (ours, Lightning .ckpt, or official)")
    p.add_argument("--model", help="preset name (read from our checkpoints when omitted); picks the task")
    p.add_argument("--num-classes", type=int, help="segmentation: classes of an official checkpoint (default 19)")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole", help="segmentation: inference mode")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="segmentation: sliding-window size")
    p.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="segmentation: sliding-window stride")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="segmentation: test scales")
    p.add_argument("--flip", action="store_true", help="segmentation: flip test")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="bf16: BN folded, channels-last, bf16 autocast where the CPU/GPU has native bf16; int8 (CPU, "
                   "needs torchao, always compiled): calibrated on the first --calibration-batches inputs (see README)")
    p.add_argument("--calibration-batches", type=int, default=8,
                   help="int8: how many model input batches (run in fp32) calibrate the quantization (default 8)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (worth it for many inputs of one size; each new size compiles once)")
    p.add_argument("--keypoints", help="keypoint set: coco, mpii (default: from the checkpoint, else coco)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="model input size")
    p.add_argument("--decode", choices=["argmax", "dark"], help="heatmap decoding (default: from the checkpoint)")
    p.add_argument("--no-flip", action="store_true", help="pose: disable flip test")
    p.add_argument("--boxes", help="person boxes: COCO detection-results JSON (image_id or file_name, bbox, score)")
    p.add_argument("--detector", help="torchvision detection model name, e.g. fasterrcnn_resnet50_fpn")
    p.add_argument("--detector-weights", help="state dict for --detector")
    p.add_argument("--box-threshold", type=float, help="minimum box score (default: 0 for --boxes, 0.5 for --detector)")
    p.add_argument("--backend", choices=["torch", "openvino", "onnxruntime"], default="torch",
                   help="openvino (CPU; pip install openvino, fastest here): a checkpoint, or an .xml file from "
                   "`hrnet export openvino`; onnxruntime: an .onnx file from `hrnet export onnx`")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/predict", help="output folder (default: runs/predict)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="train and evaluate on a generated dataset (about 5 min on 2 CPU cores)")
    p.add_argument("--task", choices=["pose", "segmentation"], default="pose")
    p.add_argument("--out", help="output folder (default: runs/demo, runs/demo_segmentation)")
    p.add_argument("--epochs", type=int, help="training epochs (default: pose 20, segmentation 20)")
    p.add_argument("--train-images", type=int, help="synthetic training images (default: pose 1600, segmentation 400)")
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from .tasks.lightning_cli import run_lightning

        run_lightning(argv)
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        code = args.func(args)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"hrnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    log.info("done in %.1f s", time.perf_counter() - start)
    return code


if __name__ == "__main__":
    sys.exit(main())
