"""What the face task's clean default (float crop, flip test, DARK decoding) gains over the official evaluation
arithmetic (official crop with its contrast stretch, argmax + quarter offset + integer back-projection, no flip
test), on the same trained weights: the face demo's model on its held-out split.

    python benchmarks/face_decoding.py [--demo runs/demo_face]

Trains the demo first when ``--demo`` holds no finished run. Each row is one ``trainer.validate`` with the
settings named; NME is inter-ocular (300W: outer eye corners), FR and AUC at 0.10.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch

from hrnet.demos.face import FaceDemoConfig, run_face_demo
from hrnet.tasks.face.data import FaceDataModule
from hrnet.tasks.face.module import FaceLandmarkDetection

SETTINGS = [  # (name, crop, decode, flip test)
    ("official: official crop, argmax + integer back-projection, no flip", "official", "official", False),
    ("float crop, official decoding, no flip", "float", "official", False),
    ("float crop, argmax (float back-projection), no flip", "float", "argmax", False),
    ("float crop, DARK, no flip", "float", "dark", False),
    ("clean default: float crop, DARK, flip test", "float", "dark", True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo_face"))
    args = parser.parse_args()
    cfg = FaceDemoConfig()
    ckpt = args.demo / "checkpoints" / "last.ckpt"
    if not (args.demo / "metrics.json").is_file():
        run_face_demo(args.demo, cfg)
    data = args.demo / "data"
    print(f"face demo model {cfg.model} at {cfg.input_size[0]}x{cfg.input_size[1]}, {cfg.val_images} held-out faces")
    print("| evaluation | NME (%) | FR@0.10 (%) | AUC@0.10 |\n| --- | --- | --- | --- |")
    for name, crop, decode, flip in SETTINGS:
        task = FaceLandmarkDetection.load_from_checkpoint(ckpt, map_location="cpu", decode=decode, flip_test=flip)
        dm = FaceDataModule(keypoints="300w", val_list=str(data / "face_landmarks_300w_val.csv"), image_root=str(data),
                            input_size=cfg.input_size, sigma=cfg.sigma, crop=crop, num_workers=0)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        with torch.no_grad():
            trainer.validate(task, datamodule=dm, verbose=False)
        m = task.last_metrics
        print(f"| {name} | {100 * m['nme']:.2f} | {100 * m['fr_0.10']:.1f} | {m['auc_0.10']:.3f} |")


if __name__ == "__main__":
    main()
