"""Held-out AP of a trained bottom-up checkpoint with the maps projected to the input size (official
``TEST.PROJECT2IMAGE``, the default) and without (``--no-project2image``), and the evaluation's wall time.

    python benchmarks/bottomup_project2image.py [--weights runs/demo_bottomup/checkpoints/last.ckpt]
                                                [--data runs/demo_bottomup/data]

Defaults: the checkpoint and the held-out split that ``hrnet demo --task bottomup`` leaves behind.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L

from hrnet.cpu import cpu_name
from hrnet.tasks.bottomup.data import BottomUpDataModule
from hrnet.tasks.bottomup.module import BottomUpPose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="runs/demo_bottomup/checkpoints/last.ckpt")
    parser.add_argument("--data", default="runs/demo_bottomup/data")
    args = parser.parse_args()
    for path in (args.weights, f"{args.data}/annotations/person_keypoints_val.json"):
        if not Path(path).is_file():
            parser.error(f"{path}: file not found (run `hrnet demo --task bottomup` first, or pass --weights/--data)")
    print(f"CPU: {cpu_name()}; {args.weights} on {args.data}/val")
    for project in (True, False):
        model = BottomUpPose.load_from_checkpoint(args.weights, project2image=project)
        data = BottomUpDataModule(val_ann=f"{args.data}/annotations/person_keypoints_val.json",
                                  val_images=f"{args.data}/val", input_size=tuple(model.hparams.input_size),
                                  num_workers=0)
        start = time.perf_counter()
        L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).validate(
            model, data, verbose=False)
        metrics = model.last_metrics
        print(f"project2image {'on ' if project else 'off'}: AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f}, "
              f"AR {metrics['AR']:.3f}; evaluation {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
