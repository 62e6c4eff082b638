"""CPU inference speed of the HRNetV2p detectors next to torchvision's ``fasterrcnn_resnet50_fpn``, same run, same
image, same thresholds; and what ``hrnet.inference.prepare`` on the backbone + neck does to speed and to box AP.

    python benchmarks/detection.py [--size 800 1333] [--rounds 3] [--demo runs/demo_detection [--demo-only]]

Every detector gets one 800x1333 image (random weights: the RPN still hands 1,000 proposals to the RoI heads,
so the heads do their full work; torchvision's resize is a no-op at that size) with torchvision's defaults
(score 0.05, NMS 0.5, 100 detections). The models take turns in interleaved rounds; ms/image is the median over
rounds. "% of GEMM peak" counts 2 x the backbone + neck multiply-adds (the part whose cost does not depend on the
proposals) over the fp32 or bf16 peak of large matmuls measured in the same run. With ``--demo``, the demo's
trained model is evaluated (pycocotools box and mask AP on its held-out split) eager fp32 and with ``prepare``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from inference import gemm_peak

from hrnet import create_model
from hrnet.inference import bf16_supported, prepare
from hrnet.models.complexity import count_macs


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def prepared(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """``model`` with its backbone + neck through ``prepare`` (BN folded, channels-last, ``precision``)."""
    import copy

    fast = copy.deepcopy(model)
    fast.backbone = prepare(fast.backbone, precision)
    fast.backbone.out_channels = model.backbone.out_channels
    return fast


def timings(models: dict[str, torch.nn.Module], image: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median seconds per image of each model over ``rounds`` interleaved rounds (2 calls each, after a warm-up)."""
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model([image])
        for _ in range(rounds):
            for name, model in models.items():
                times = []
                for _ in range(2):
                    start = time.perf_counter()
                    model([image])
                    times.append(time.perf_counter() - start)
                samples[name].append(min(times))
    return {name: statistics.median(s) for name, s in samples.items()}


def demo_quality(folder: Path) -> None:
    """Box / mask AP of the demo's checkpoint, eager fp32 against prepare(fp32 / bf16) on the backbone + neck."""
    import lightning as L

    from hrnet.tasks.detection.data import DetectionDataModule
    from hrnet.tasks.detection.module import Detection

    task = Detection.load_from_checkpoint(folder / "checkpoints" / "last.ckpt", map_location="cpu")
    data = folder / "data"
    dm = DetectionDataModule(val_ann=str(data / "annotations/instances_val.json"), val_images=str(data / "val"),
                             batch_size=4, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    eager = task.model
    precisions = ["fp32", "bf16"] if bf16_supported(torch.device("cpu")) else ["fp32"]
    print("\n| demo model | box AP | mask AP |\n| --- | --- | --- |")
    for name, model in [("eager fp32", eager)] + [(f"prepare {p}", prepared(eager, p)) for p in precisions]:
        task.model = model
        trainer.validate(task, datamodule=dm, verbose=False)
        print(f"| {name} | {task.last_metrics['box_AP']:.3f} | {task.last_metrics.get('mask_AP', float('nan')):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--demo", type=Path, help="a detection demo folder: also measure prepare's effect on AP")
    parser.add_argument("--demo-only", action="store_true", help="with --demo: only the AP effect, no speed runs")
    args = parser.parse_args()
    if args.demo_only:
        if args.demo is None:
            parser.error("--demo-only needs --demo")
        demo_quality(args.demo)
        return
    torch.manual_seed(0)
    peak32, peak16 = gemm_peak(torch.float32), gemm_peak(torch.bfloat16)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; GEMM peak fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s")
    import torchvision

    image = torch.rand(3, *args.size)
    reference = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    models: dict[str, torch.nn.Module] = {"torchvision fasterrcnn_resnet50_fpn": reference}
    flops: dict[str, float] = {"torchvision fasterrcnn_resnet50_fpn": 2 * count_macs(reference.backbone, tuple(args.size))}
    precisions = ["fp32", "bf16"] if bf16_supported(torch.device("cpu")) else ["fp32"]
    for width in (18, 32):
        name = f"fasterrcnn_hrnetv2p_w{width}"
        ours = create_model(name).eval()
        models[name] = ours
        flops[name] = 2 * count_macs(ours.backbone, tuple(args.size))
        for precision in precisions:
            models[f"{name} + prepare {precision}"] = prepared(ours, precision)
            flops[f"{name} + prepare {precision}"] = flops[name]
    seconds = timings(models, image, args.rounds)
    base = seconds["torchvision fasterrcnn_resnet50_fpn"]
    print(f"\n| detector at {args.size[0]}x{args.size[1]} | ms/image | x torchvision R50-FPN | backbone+neck % of GEMM peak |")
    print("| --- | --- | --- | --- |")
    for name, sec in seconds.items():
        peak = peak16 if "bf16" in name else peak32
        print(f"| {name} | {1000 * sec:.0f} | {base / sec:.2f} | {100 * flops[name] / sec / peak:.0f}% |")
    if args.demo:
        demo_quality(args.demo)


if __name__ == "__main__":
    main()
