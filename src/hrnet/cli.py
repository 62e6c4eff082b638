"""The ``hrnet`` command line: ``models``, ``convert``, ``demo``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .models import PRESETS, CheckpointError, create_model, list_models, read_checkpoint, to_official
from .models.complexity import model_complexity
from .models.convert import guess_preset, to_ours

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
    """Model-library demo: print the zoo, then run one model on an image it generates."""
    from .demo import run_model_demo

    print(format_table(zoo_rows(), markdown=False), end="\n\n")
    run_model_demo(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrnet", description="HRNet models, checkpoints and pipelines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("demo", help="the embedded demo")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
