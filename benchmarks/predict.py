"""End-to-end speed of ``hrnet predict`` next to the model alone, and how long a run takes to start.

    python benchmarks/predict.py [--task pose|seg|bottomup|all] [--backend openvino|torch]
                                 [--precision fp32|bf16] [--images N] [--no-start] [--bottomup-weights CKPT]

For each task it writes a synthetic dataset in the real on-disk format (COCO keypoints with person boxes
in COCO results format; Cityscapes-style street scenes), a checkpoint of random weights (speed does not
depend on them) and then measures, in one process:

- **end to end**: ``Predictor.run`` over the folder (decode, crop, network, decode keypoints, draw, write
  pictures and the results file), as ``hrnet predict DIR`` runs it, and over the same images as the frames
  of an mp4 video (each frame one whole-frame person, the video written with the drawings), after one warm-up pass over the same
  folder so that every input shape is compiled (steady state); images/s and persons/s;
- **model only**: the same network, backend and batches on the same inputs already decoded, cropped and
  normalised (pose: every person crop in the predictor's batches, with the flip test; segmentation: each
  image tensor); the ratio end-to-end / model-only says what the work around the model costs;
- **bottom-up** (HigherHRNet, no boxes: the official test at input 512, flip test, grouping on maps projected
  to the input, then ``--no-project2image``): the same people images, a quarter of them; model only is the
  network on the resized image and its mirror; the post-processing (merge, group, map back) is timed alone
  on the stored outputs. With random weights (default ``higher_hrnet_w32``) the maps are noise and the
  grouping finds up to 30 people of nonsense per image; ``--bottomup-weights`` takes a trained checkpoint
  (e.g. the demo's ``runs/demo_bottomup/checkpoints/last.ckpt``, at its own input size);
- **start** (``--no-start`` skips it): wall time of ``hrnet predict one.jpg`` in a fresh process, first with
  an empty conversion cache (cold) and then again (warm), and with ``--backend torch``.

The CPU (name, bf16/int8 flags) is printed with the tables, and the ISA paths the network's kernels took
(:mod:`hrnet.cpu`: the compiled OpenVINO graphs' kernels, or oneDNN's log for the torch backend).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from hrnet import create_model
from hrnet.cli import build_parser, predictor_from_args
from hrnet.cpu import (
    cpu_flags,
    cpu_name,
    describe,
    isa_paths,
    onednn_kernels,
    openvino_kernels,
)
from hrnet.files import iter_inputs, normalize_image, read_image
from hrnet.keypoints.geometry import box_to_center_scale, crop_image
from hrnet.keypoints.topdown import predict_heatmaps
from hrnet.synthetic.people import make_synthetic_coco_keypoints
from hrnet.synthetic.streets import make_synthetic_cityscapes
from hrnet.tasks.base import checkpoint_settings

POSE_MODEL, SEG_MODEL, BOTTOMUP_MODEL = "pose_hrnet_w32", "seg_hrnet_w18_small_v2", "higher_hrnet_w32"


def write_checkpoint(path: Path, name: str, **hparams: Any) -> Path:
    torch.manual_seed(0)
    model = create_model(name)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": name, **hparams}}, path)
    return path


def pose_data(root: Path, images: int) -> tuple[Path, Path, int]:
    """COCO-format people at 480x640 and their boxes as a detector's results file: (folder, boxes, persons)."""
    ann = make_synthetic_coco_keypoints(root, split="val", num_images=images, image_size=(480, 640),
                                        persons_per_image=(4, 12), seed=1)
    coco = json.loads(Path(ann).read_text())
    boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
             for a in coco["annotations"] if not a["iscrowd"]]
    (root / "boxes.json").write_text(json.dumps(boxes))
    return root / "val", root / "boxes.json", len(boxes)


def seg_data(root: Path, images: int) -> Path:
    make_synthetic_cityscapes(root, split="val", num_images=images, image_size=(512, 1024), seed=1)
    folder = root / "images"
    folder.mkdir()
    for i, path in enumerate(sorted((root / "leftImg8bit" / "val").rglob("*.png"))):
        path.rename(folder / f"{i:04d}.png")
    return folder


def predictor_for(argv: list[str]) -> Any:
    return predictor_from_args(build_parser().parse_args(["predict", *argv]))


def timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def pose_model_only(predictor: Any, folder: Path) -> float:
    """Seconds of the network alone on every person crop (already cut and normalised), in the predictor's
    batches, flip test included."""
    h, w = predictor.codec.input_size
    crops = []
    for path in iter_inputs(folder):
        image = read_image(str(path))
        for x, y, bw, bh, _ in predictor.boxes.boxes_for(path):
            center, scale = box_to_center_scale((x, y, bw, bh), w / h)
            crops.append(normalize_image(crop_image(image, center, scale, 0.0, (w, h))[0]))
    flip = predictor.keypoints.flip_index if predictor.flip_test else None
    parts = torch.from_numpy(np.stack(crops)).split(predictor.batch_size)
    with torch.inference_mode():
        for part in parts:  # every shape compiled before timing
            predict_heatmaps(predictor.model, part, flip)
        return timed(lambda: [predict_heatmaps(predictor.model, part, flip) for part in parts])


def write_video(folder: Path, path: Path, fps: float = 25.0) -> int:
    """The folder's images as the frames of an mp4 video; returns the frame count."""
    frames = [cv2.imread(str(p)) for p in iter_inputs(folder)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return len(frames)


def video_model_only(predictor: Any, video: Path) -> float:
    """Seconds of the network alone on every frame as one whole-frame person crop, in the loop's frame groups."""
    from hrnet.tasks.pipeline import GROUP

    h, w = predictor.codec.input_size
    capture, crops = cv2.VideoCapture(str(video)), []
    while (frame := capture.read())[0]:
        image = cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB)
        center, scale = box_to_center_scale((0.0, 0.0, float(image.shape[1]), float(image.shape[0])), w / h)
        crops.append(normalize_image(crop_image(image, center, scale, 0.0, (w, h))[0]))
    flip = predictor.keypoints.flip_index if predictor.flip_test else None
    parts = torch.from_numpy(np.stack(crops)).split(GROUP)
    with torch.inference_mode():
        for part in parts:
            predict_heatmaps(predictor.model, part, flip)
        return timed(lambda: [predict_heatmaps(predictor.model, part, flip) for part in parts])


def seg_model_only(predictor: Any, folder: Path) -> float:
    tensors = [torch.from_numpy(normalize_image(read_image(str(p))))[None] for p in iter_inputs(folder)]
    with torch.inference_mode():
        predictor.model(tensors[0])
        return timed(lambda: [predictor.model(x) for x in tensors])


def bottomup_inputs(predictor: Any, folder: Path) -> list[Any]:
    from hrnet.tasks.bottomup.decode import scaled_inputs

    return [scaled_inputs(read_image(str(p)), predictor.input_size, predictor.scales) for p in iter_inputs(folder)]


def bottomup_model_only(predictor: Any, inputs: list[Any]) -> float:
    """Seconds of the network alone on every image's resized input and its mirror (flip test), all scales."""
    tensors = [torch.from_numpy(x)[None] for one in inputs for x in one.images]
    flip = predictor.flip_test
    with torch.inference_mode():
        predictor.model(tensors[0])
        return timed(lambda: [(predictor.model(x), flip and predictor.model(torch.flip(x, dims=[3])))
                              for x in tensors])


def bottomup_post_ms(predictor: Any, inputs: list[Any], project2image: bool) -> tuple[float, int]:
    """Median ms of the post-processing alone (outputs merged, grouped, mapped back: ``find_people`` with the
    network's outputs replayed) over the images, and the people found."""
    from hrnet.tasks.bottomup.decode import find_people

    flip_index = predictor.keypoints.flip_index if predictor.flip_test else None
    times, people = [], 0
    with torch.inference_mode():
        for one in inputs:
            calls = []
            find_people(lambda x: calls.append(predictor.model(x)) or calls[-1], one, predictor.keypoints.num_joints,
                        predictor.params, flip_index, project2image=project2image)
            for _ in range(3):
                replay = iter(calls)
                start = time.perf_counter()
                keypoints, _ = find_people(lambda x: next(replay), one, predictor.keypoints.num_joints,
                                           predictor.params, flip_index, project2image=project2image)
                times.append(time.perf_counter() - start)
            people += len(keypoints)
    return 1e3 * float(np.median(times)), people


def start_times(one: Path, weights: Path, backend: list[str], cache: Path) -> dict[str, float]:
    """Wall seconds of ``hrnet predict one.jpg`` in fresh processes: cold cache, warm cache, torch backend."""
    def run(*extra: str) -> float:
        cmd = [sys.executable, "-m", "hrnet.cli", "predict", str(one), "--weights", str(weights),
               "--out", str(cache.parent / "start_out"), *extra]
        return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))

    chosen = [*backend, "--cache-dir", str(cache)]
    return {"cold": run(*chosen), "warm": run(*chosen), "torch": run("--backend", "torch")}


def kernels_of(predictor: Any, x: torch.Tensor) -> str:
    """The ISA families and kernels the predictor's network ran on (OpenVINO's compiled graphs, else oneDNN's log)."""
    compiled = getattr(predictor.model, "compiled_models", None)
    with torch.inference_mode():
        used = openvino_kernels(compiled()) if compiled else onednn_kernels(lambda: predictor.model(x))
    return f"{' + '.join(isa_paths(used)) or 'PyTorch kernels'} ({describe(used)})"


def row(task: str, images: int, persons: int | None, e2e: float, model: float) -> str:
    per = (f"{persons / e2e:.1f} | {persons / model:.1f}" if persons else "- | -")
    return (f"| {task} | {images} | {persons or '-'} | {images / e2e:.2f} | {images / model:.2f} | {per} | "
            f"{model / e2e:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["pose", "seg", "bottomup", "all"], default="all")
    parser.add_argument("--backend", choices=["openvino", "torch"], default="openvino")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--images", type=int, default=40, help="images per task (segmentation: a quarter)")
    parser.add_argument("--no-start", action="store_true", help="skip the start-time measurements")
    parser.add_argument("--bottomup-weights", help="a trained bottom-up checkpoint (default: random "
                        f"{BOTTOMUP_MODEL} weights)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    backend = ["--backend", args.backend, "--precision", args.precision]
    print(f"CPU: {cpu_name()} ({', '.join(cpu_flags()) or 'no bf16/int8 flags'}), {torch.get_num_threads()} threads; "
          f"{args.backend} {args.precision}")
    lines = ["| task | images | persons | e2e images/s | model-only images/s | e2e persons/s | model-only persons/s "
             "| e2e / model-only |", "|---|---|---|---|---|---|---|---|"]
    starts: dict[str, dict[str, float]] = {}
    kernels: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        if args.task in ("pose", "all"):
            folder, boxes, persons = pose_data(root / "coco", args.images)
            weights = write_checkpoint(root / "pose.ckpt", POSE_MODEL, keypoints="coco", input_size=[256, 192])
            predictor = predictor_for([str(folder), "--weights", str(weights), "--boxes", str(boxes), *backend,
                                       "--cache-dir", str(cache)])
            predictor.run(folder, root / "warm")
            kernels["pose"] = kernels_of(predictor, torch.zeros(1, 3, 256, 192))
            e2e = timed(lambda: predictor.run(folder, root / "pose_out"))
            lines.append(row(f"pose {POSE_MODEL} 256x192, flip, boxes given", args.images, persons, e2e,
                             pose_model_only(predictor, folder)))
            video = root / "clip.mp4"
            frames = write_video(folder, video)
            predictor.boxes = None  # a video frame is one person, the whole frame
            predictor.run(video, root / "warm_video")
            e2e = timed(lambda: predictor.run(video, root / "video_out"))
            lines.append(row(f"pose {POSE_MODEL} on a 480x640 video, whole frame, flip", frames, frames, e2e,
                             video_model_only(predictor, video)))
            if not args.no_start:
                one = root / "one.jpg"
                cv2.imwrite(str(one), cv2.imread(str(next(iter_inputs(folder)))))
                starts["pose"] = start_times(one, weights, backend, root / "start_cache")
        if args.task in ("seg", "all"):
            images = max(2, args.images // 4)
            folder = seg_data(root / "city", images)
            weights = write_checkpoint(root / "seg.ckpt", SEG_MODEL, num_classes=19)
            predictor = predictor_for([str(folder), "--weights", str(weights), *backend, "--cache-dir", str(cache)])
            predictor.run(folder, root / "warm_seg")
            kernels["segmentation"] = kernels_of(predictor, torch.zeros(1, 3, 512, 1024))
            e2e = timed(lambda: predictor.run(folder, root / "seg_out"))
            lines.append(row(f"segmentation {SEG_MODEL} 512x1024", images, None, e2e,
                             seg_model_only(predictor, folder)))
        if args.task in ("bottomup", "all"):
            images = max(2, args.images // 4)
            folder, _, _ = pose_data(root / "people", images)
            weights = Path(args.bottomup_weights) if args.bottomup_weights else write_checkpoint(
                root / "bottomup.ckpt", BOTTOMUP_MODEL, keypoints="coco", input_size=[512, 512])
            for project in (True, False):
                flags = [] if project else ["--no-project2image"]
                predictor = predictor_for([str(folder), "--weights", str(weights), *backend, *flags,
                                           "--cache-dir", str(cache)])
                predictor.run(folder, root / "warm_bottomup")
                e2e = timed(lambda: predictor.run(folder, root / "bottomup_out"))
                inputs = bottomup_inputs(predictor, folder)
                post, people = bottomup_post_ms(predictor, inputs, project)
                name = checkpoint_settings(weights)[1].get("model", weights.name)
                lines.append(row(f"bottom-up {name} at {predictor.input_size}, flip, project2image "
                                 f"{'on' if project else 'off'}: post-processing {post:.0f} ms/image", images,
                                 people, e2e, bottomup_model_only(predictor, inputs)))
            kernels["bottom-up"] = kernels_of(predictor, torch.from_numpy(inputs[0].images[0])[None])
    print("\n".join(lines))
    for task, used in kernels.items():
        print(f"ISA paths, {task}: {used}")
    for task, times in starts.items():
        print(f"start, hrnet predict one.jpg ({task}, {POSE_MODEL}): {args.backend} {args.precision} cold cache "
              f"{times['cold']:.1f} s, warm cache {times['warm']:.1f} s; torch fp32 {times['torch']:.1f} s")


if __name__ == "__main__":
    main()
