"""Peak memory of one segmentation training step, with and without gradient checkpointing.

    python benchmarks/seg_memory.py [--model seg_hrnet_w48] [--size 512 1024] [--batch 1]

Each setting runs in a fresh process (one forward + backward + SGD step of the train-mode model on
a random batch with random labels). On CUDA it reports ``torch.cuda.max_memory_allocated``; on CPU
the process's peak resident memory (``ru_maxrss``) and its growth over the step (activations,
gradients, optimizer state), since CPU tensors have no allocator statistics.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def child(model_name: str, size: tuple[int, int], batch: int, stages: list[int], device: str) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from hrnet import create_model

    torch.manual_seed(0)
    model = create_model(model_name).train().to(device)
    if stages:
        model.set_grad_checkpointing(stages)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *size, device=device)
    target = torch.randint(0, 19, (batch, *size), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = model(x)
    out = out[-1] if isinstance(out, list) else out
    loss = F.cross_entropy(F.interpolate(out, size=size, mode="bilinear", align_corners=False), target)
    loss.backward()
    opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": round(seconds, 1), "peak_rss_gib": round(peak_kb / 2**20, 2),
              "step_growth_gib": round((peak_kb - before_kb) / 2**20, 2)}
    if device == "cuda":
        result["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seg_hrnet_w48")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        stages = [int(s) for s in args.child.split(",") if s]
        print(json.dumps(child(args.model, tuple(args.size), args.batch, stages, args.device)))
        return
    rows = []
    for label, stages in (("off", ""), ("stages 2-4", "2,3,4"), ("all stages", "1,2,3,4")):
        cmd = [sys.executable, __file__, "--model", args.model, "--size", *map(str, args.size),
               "--batch", str(args.batch), "--device", args.device, "--child", stages]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append((label, json.loads(out)))
    print(f"{args.model}, training step at {args.size[0]}x{args.size[1]}, batch {args.batch}, {args.device} "
          f"({platform.processor() or platform.machine()}), fp32")
    key = "cuda_peak_gib" if args.device == "cuda" else "step_growth_gib"
    print(f"| gradient checkpointing | {'CUDA peak' if args.device == 'cuda' else 'memory added by the step'} (GiB) "
          "| peak process RSS (GiB) | step time (s) |")
    print("| --- | --- | --- | --- |")
    for label, r in rows:
        print(f"| {label} | {r[key]} | {r['peak_rss_gib']} | {r['seconds']} |")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
