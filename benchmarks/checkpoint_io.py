"""Cost of crash-safe checkpoint writing (temporary file + fsync + rename, ``AtomicCheckpointIO``) against
Lightning's default local save, on a pose_hrnet_w32 training checkpoint (weights + Adam state).

    python benchmarks/checkpoint_io.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

import hrnet
from hrnet.tasks.checkpoints import AtomicCheckpointIO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model = hrnet.create_model("pose_hrnet_w32")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    adam = {k: (torch.randn_like(v), torch.rand_like(v)) for k, v in state.items() if v.is_floating_point()}
    checkpoint = {"state_dict": state, "optimizer_states": [adam], "epoch": 1, "global_step": 4682}
    times: dict[str, list[float]] = {"lightning default": [], "atomic (fsync + rename)": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):  # interleaved, so drift of the disk hits both alike
            for name, io in (("lightning default", TorchCheckpointIO()),
                             ("atomic (fsync + rename)", AtomicCheckpointIO())):
                start = time.perf_counter()
                io.save_checkpoint(checkpoint, Path(folder) / "last.ckpt")
                times[name].append(time.perf_counter() - start)
        size = (Path(folder) / "last.ckpt").stat().st_size
    print(f"pose_hrnet_w32 checkpoint with Adam state: {size / 2**20:.0f} MiB, {args.rounds} rounds, median")
    base = statistics.median(times["lightning default"])
    for name, values in times.items():
        print(f"  {name:26s} {statistics.median(values):.3f} s  ({statistics.median(values) / base:.2f}x)")


if __name__ == "__main__":
    main()
