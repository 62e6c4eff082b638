"""The plumbing every task shares, once: batching and loaders, evaluation hooks, gathering across ranks,
checkpoint settings, COCO detection-results files, and the :class:`Predictor` base behind ``hrnet predict``.

Nothing here imports Lightning: the hooks are mixins for the tasks' ``LightningModule`` /
``LightningDataModule`` classes, so prediction starts without loading the training framework.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..export import load_exported
from ..files import (
    is_number_list,
    iter_inputs,
    read_json,
    write_atomic,
)
from ..keypoints.drawing import draw_skeleton
from ..models import create_model, load_checkpoint
from ..models.convert import torch_load
from ..openvino_backend import ConversionCache, OpenVinoModel
from ..seeding import EvaluationShard, ResumableLoader, SeededOrder
from .pipeline import ERRORS, PredictLoop, first_line, is_video

log = logging.getLogger(__name__)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep everything else (file names, sizes) as lists."""
    batch: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(value, Tensor) else values
    return batch


def loss_precision(tensor: Tensor) -> Tensor:
    """``tensor`` in at least float32: half / bfloat16 outputs (mixed precision) are upcast for the loss,
    float64 (``precision: 64-true``) stays float64."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


class EvaluationHooks:
    """Lightning hooks shared by the task modules: validation and test batches go to
    ``_evaluate_batch(batch)``, epoch ends to ``_finish_evaluation(stage)``; a training loss is checked
    by :meth:`_checked_loss`."""

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def _checked_loss(self, loss: Tensor, batch_idx: int) -> Tensor | None:
        """``loss`` when finite. A NaN/inf loss stops training with a one-line error naming the step, the value
        and the last checkpoint written, or, with ``hparams.nonfinite == "skip"``, skips the batch (Lightning
        skips the optimizer step when ``training_step`` returns ``None``) with a warning."""
        if torch.isfinite(loss).all():
            return loss
        where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.hparams.nonfinite == "skip":
            log.warning("training loss is %s at %s: batch skipped (nonfinite: skip)", loss.item(), where)
            return None
        callback = getattr(self.trainer, "checkpoint_callback", None)
        last = (getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")) or "none yet"
        raise ValueError(f"training loss is {loss.item()} at {where}; stopped (last checkpoint: {last}). Lower the "
                         "learning rate or check that batch's data; model.nonfinite: skip skips such batches")


def build_task_model(name: str, pretrained: str | None, grad_checkpointing: bool, channels_last: bool,
                     **head_args: Any) -> tuple[nn.Module, torch.memory_format]:
    """A preset for a task: optional ImageNet backbone (loaded ``strict=False``: the head is new),
    gradient checkpointing, memory format. Returns the model and the format inputs must follow."""
    model = create_model(name, **head_args)
    if pretrained:
        report = load_checkpoint(model, pretrained, strict=False)
        log.info("backbone from %s: %d tensors loaded, %d new", pretrained, len(report.loaded), len(report.missing))
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=memory_format), memory_format


class LoaderHooks:
    """``LightningDataModule`` loaders shared by the tasks: ``train_set`` in the :class:`SeededOrder` of
    ``hparams.seed`` (last partial batch dropped; a :class:`ResumableLoader`, so mid-epoch checkpoints resume
    exactly), ``val_set`` and ``test_set`` (the validation set when there is no test set) sharded over the
    ranks without repeats, batched by ``hparams.batch_size`` and ``hparams.eval_batch_size`` (default:
    ``batch_size``) per process, with ``collate_fn`` (:func:`collate` unless the DataModule sets its own)."""

    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None
    collate_fn = staticmethod(collate)

    def _ranks(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader_options(self) -> dict[str, Any]:
        return {"num_workers": self.hparams.num_workers, "collate_fn": self.collate_fn, "persistent_workers": False,
                "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self) -> DataLoader:
        world, rank = self._ranks()
        order = SeededOrder(self.train_set, self.hparams.seed, num_replicas=world, rank=rank)
        return ResumableLoader(self.train_set, order, self.hparams.batch_size, **self._loader_options())

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        world, rank = self._ranks()
        return DataLoader(dataset, batch_size=self.hparams.eval_batch_size or self.hparams.batch_size,
                          sampler=EvaluationShard(dataset, num_replicas=world, rank=rank), **self._loader_options())

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.val_set) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set if self.test_set is not None else self.val_set)


def gather_to_all(items: list[Any], world_size: int) -> list[Any]:
    """Every rank's ``items`` concatenated in rank order, on every rank (no-op on one process)."""
    if world_size <= 1:
        return items
    gathered: list[list[Any]] = [[] for _ in range(world_size)]
    torch.distributed.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def broadcast_from_zero(value: Any, world_size: int) -> Any:
    """Rank 0's ``value`` on every rank (no-op on one process)."""
    if world_size <= 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def check_coco_images(data: Any, where: str) -> set[int]:
    """The image ids of a COCO-format ``data`` (keypoints or instances), after checking its ``images`` records
    field by field (integer ``id``, string ``file_name``, positive ``width``/``height``); a wrong record is a
    one-line error naming ``where`` and the record."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{where}: missing 'images' list")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise ValueError(f"{where}: images[{i}] is not an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise ValueError(f"{where}: image id {img.get('id', '?')} has no {key!r} field")
        if not isinstance(img["id"], int) or isinstance(img["id"], bool):
            raise ValueError(f"{where}: images[{i}] id {img['id']!r} is not an integer")
        if not isinstance(img["file_name"], str):
            raise ValueError(f"{where}: image id {img['id']} file_name {img['file_name']!r} is not a string")
        if not is_number_list([img["width"], img["height"]], 2) or min(img["width"], img["height"]) <= 0:
            raise ValueError(f"{where}: image id {img['id']} width/height {img['width']!r}, {img['height']!r} "
                             "are not positive numbers")
    return {img["id"] for img in data["images"]}


def read_hparams(path: str | Path) -> dict[str, Any]:
    """The ``hyper_parameters`` a Lightning checkpoint stores (model name, input size ...); ``{}``
    for plain state-dict files or anything unreadable (the weights loader reports real problems)."""
    try:
        ckpt = torch_load(Path(path))
    except Exception:  # noqa: BLE001 - see docstring
        return {}
    return dict(ckpt.get("hyper_parameters", {})) if isinstance(ckpt, dict) else {}


Stored = tuple[Any | None, dict[str, Any]]
"""An exported model (or ``None`` for a checkpoint) and the settings stored with the weights."""


def checkpoint_settings(weights: str | Path) -> Stored:
    """What prediction needs to know of ``weights`` besides the tensors: for an exported file (``.onnx`` /
    ``.xml``) the loaded model and its stored preset, input size and task settings; for a checkpoint
    ``None`` and its hyper-parameters (``{}`` for plain state dicts)."""
    exported = load_exported(weights)
    if exported is None:
        return None, read_hparams(weights)
    return exported, {"model": exported.preset, "input_size": exported.input_size, **exported.settings}


@dataclass(frozen=True)
class Detection:
    """One entry of a COCO detection-results file: ``bbox`` is ``[x, y, w, h]`` in image pixels."""

    bbox: tuple[float, float, float, float]
    score: float
    image_id: int | None = None
    file_name: str | None = None
    category_id: int | None = None


def read_detections(path: str | Path, require: Sequence[str] = ()) -> list[Detection]:
    """A COCO detection-results JSON (``[{image_id, category_id, bbox, score}]``; ``file_name`` may stand in
    for ``image_id``). Each entry needs ``bbox``, the keys in ``require`` and ``image_id`` or ``file_name``; a
    missing ``score`` is 1. A bad file or entry is a one-line error naming the file and the entry."""
    where = f"boxes file {path}"
    require = ("bbox", *(k for k in require if k != "bbox"))
    entries = read_json(path, "boxes file")
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected a JSON list of {{image_id, category_id, bbox, score}} "
                         f"(COCO results format), got {type(entries).__name__}")
    detections = []
    for i, e in enumerate(entries):
        named = isinstance(e, dict) and ("image_id" in e or "file_name" in e)
        if not named or any(k not in e for k in require):
            raise ValueError(f"{where}: entry {i} needs {', '.join(require)} and image_id (or file_name), got {e!r}")
        bbox, score = e["bbox"], e.get("score", 1.0)
        if not is_number_list(bbox, 4) or not is_number_list([score], 1):
            raise ValueError(f"{where}: entry {i} has bbox {bbox!r} / score {score!r}; expected [x, y, w, h] and a "
                             "number")
        detections.append(Detection(tuple(float(v) for v in bbox), float(score), e.get("image_id"),
                                    e.get("file_name"), e.get("category_id")))
    return detections


Box = tuple[float, float, float, float, float]  # x, y, w, h, score


TOP_DOWN_FLAGS: dict[str, dict[str, Any]] = {
    "--keypoints": {"help": "keypoint set: coco, mpii; face landmarks: wflw, 300w, cofw, aflw (default: from the "
                            "checkpoint)"},
    "--input-size": {"type": int, "nargs": 2, "metavar": ("H", "W"), "help": "model input size"},
    "--decode": {"choices": ["argmax", "dark", "official"],
                 "help": "heatmap decoding (default: from the checkpoint; official: face models only)"},
    "--no-flip": {"action": "store_true", "help": "disable flip test"},
    "--boxes": {"help": "person / face boxes: COCO detection-results JSON (image_id or file_name, bbox, score)"},
    "--box-threshold": {"type": float, "help": "minimum box score (default: 0 for --boxes, 0.5 for --detector, "
                                               "0.9 for --face-detector)"},
}
"""The ``hrnet predict`` flags of the top-down keypoint tasks (pose, face): one definition, added once."""


def add_top_down_arguments(group: argparse._ArgumentGroup) -> None:
    """Add :data:`TOP_DOWN_FLAGS` to ``group`` unless another task's group of the same parser already did."""
    for flag, kwargs in TOP_DOWN_FLAGS.items():
        if flag not in group._option_string_actions:
            group.add_argument(flag, **kwargs)


class BoxesFile:
    """Boxes of one category from a COCO detection-results JSON (:func:`read_detections`), looked up by
    file name or by image id (a file whose stem is the id)."""

    def __init__(self, path: str | Path, threshold: float = 0.0, category_id: int = 1) -> None:
        self.by_key: dict[Any, list[Box]] = {}
        for d in read_detections(path):
            if (d.category_id if d.category_id is not None else category_id) != category_id or d.score < threshold:
                continue
            key = d.file_name if d.file_name is not None else d.image_id
            self.by_key.setdefault(key, []).append((*d.bbox, d.score))

    def boxes_for(self, path: Path) -> list[Box]:
        if path.name in self.by_key:
            return self.by_key[path.name]
        return self.by_key.get(int(path.stem), []) if path.stem.isdigit() else []


@dataclass(frozen=True)
class RunReport:
    """What :meth:`Predictor.run` did: the results file, how many inputs it predicted and kept from an
    earlier run (``skip_existing``), and the inputs that failed with why."""

    results: Path
    predicted: int
    kept: int
    failed: list[tuple[str, str]]


def make_palette(num_classes: int, fixed: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """(num_classes, 3) uint8 RGB colours: ``fixed`` (e.g. Cityscapes' own) when it has one per class, otherwise
    well-separated generated hues."""
    if fixed is not None and len(fixed) == num_classes:
        return np.asarray(fixed, dtype=np.uint8)
    hues = (np.arange(num_classes) * 0.618034) % 1.0
    hsv = np.stack([hues * 179, np.full(num_classes, 200), np.full(num_classes, 230)], axis=1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def coco_class_names() -> list[str]:
    """The 80 COCO category names in id order (torchvision ships them with its weights' metadata; no download)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    names = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    return [n for n in names if n not in ("__background__", "N/A")]


def load_detector(weights: str | Path, name: str | None = None, num_classes: int | None = None,
                  stored: Stored | None = None) -> tuple[nn.Module, list[str]]:
    """A detection preset with ``weights`` and its K class names (label k is ``names[k - 1]``): the preset, class
    count (background included) and sizes from our checkpoints, else ``name`` and ``num_classes`` (COCO's 81 and
    names by default). Used by ``hrnet predict`` for detection and for top-down pose's ``--detector``."""
    exported, hparams = stored or checkpoint_settings(weights)
    if exported is not None:
        raise ValueError(f"{weights}: detectors run from checkpoints (exported detector files are not supported)")
    name = name or hparams.get("model")
    if name is None:
        raise ValueError(f"{weights}: no model name stored in the checkpoint; pass --model (e.g. maskrcnn_hrnetv2p_w32)")
    k = num_classes or hparams.get("num_classes", 81)
    names = hparams.get("class_names") or (coco_class_names() if k == 81 else [f"class_{i}" for i in range(1, k)])
    sizes = {key: hparams[key] for key in ("min_size", "max_size", "neck_channels", "head_channels")
             if hparams.get(key) is not None}
    model = create_model(name, weights=weights, num_classes=k, **sizes, **(hparams.get("detector_args") or {}))
    return model, list(names)


@dataclass(frozen=True)
class OpenVinoConversion:
    """A checkpoint to run in OpenVINO (``hrnet predict --backend openvino``), passed where an exported model
    would be (:data:`Stored`): converted once, then read back from ``cache`` under the file's digest with
    the preset and head (:meth:`ConversionCache.file_key`), so a repeated run builds no PyTorch model."""

    cache: ConversionCache

    def network(self, weights: str | Path, name: str, head_args: dict[str, Any]) -> OpenVinoModel:
        from ..inference import prepare

        key = self.cache.file_key(weights, name, head_args)
        cached = self.cache.load(key, "fp32")
        if cached is not None:
            return cached
        converted = prepare(create_model(name, weights=weights, **head_args), backend="openvino", cache=False)
        self.cache.store(key, converted)
        return converted


class KeypointPeople:
    """Drawing, records and header of a predictor whose results are people with keypoints (``[{keypoints (K, 3),
    box, score}]``: top-down and bottom-up pose); it needs ``keypoints`` (a keypoint set) and ``threshold``."""

    keypoints: Any
    threshold: float

    def draw(self, image: np.ndarray, result: list[dict[str, Any]]) -> np.ndarray:
        drawn = image.copy()
        for person in result:
            draw_skeleton(drawn, person["keypoints"], self.keypoints, self.threshold)
        return drawn

    def record(self, result: list[dict[str, Any]], out: Path, stem: str) -> dict[str, Any]:
        return {"persons": [{"keypoints": [round(float(v), 2) for v in p["keypoints"].reshape(-1)],
                             "box": [round(v, 2) for v in p["box"]], "score": round(p["score"], 4)} for p in result]}

    def header(self) -> dict[str, Any]:
        return {"keypoints": list(self.keypoints.joint_names)}


class Predictor:
    """A task's network with its test-time settings, from a checkpoint or an exported file.

    ``predictor(image)`` gives the task's result for one RGB uint8 (H, W, 3) image; :meth:`run` walks an
    image, a folder of images or a video and writes one JSON file (``results_file``: the :meth:`header`
    plus one record per image or frame) and drawn copies (``<stem>_<picture>.jpg``, videos
    ``<stem>_<picture>.mp4``); bad files are skipped and reported (:class:`RunReport`). :meth:`accelerate`
    swaps in a fast path (``hrnet.inference.prepare``).

    Subclasses implement ``__call__``, :meth:`draw`, :meth:`record` and :meth:`header`, and for the CLI
    :meth:`add_arguments` / :meth:`from_args`; :meth:`predict` may use the file an image came from.
    """

    results_file: ClassVar[str] = "predictions.json"
    picture: ClassVar[str] = "pred"

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = device

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        """The task's ``hrnet predict`` flags."""

    @classmethod
    def from_args(cls, args: argparse.Namespace, stored: Stored | None = None) -> Predictor:
        """The predictor ``hrnet predict`` flags describe; ``stored`` is what :func:`checkpoint_settings`
        already read of ``args.weights`` (read again when ``None``)."""
        raise NotImplementedError

    @staticmethod
    def network(weights: str | Path, name: str, exported: Any | None, **head_args: Any) -> Any:
        """The exported model when there is one, else preset ``name`` with ``weights`` loaded (strictly); an
        :class:`OpenVinoConversion` in place of the exported model gives that checkpoint converted (or cached)."""
        if isinstance(exported, OpenVinoConversion):
            return exported.network(weights, name, head_args)
        return exported if exported is not None else create_model(name, weights=weights, **head_args)

    def __call__(self, image: np.ndarray) -> Any:
        raise NotImplementedError

    def predict(self, image: np.ndarray, source: Path | None) -> Any:
        """The result for ``image`` read from file ``source`` (``None`` for a video frame)."""
        return self(image)

    def predict_many(self, images: Sequence[np.ndarray], sources: Sequence[Path | None]) -> list[Any]:
        """:meth:`predict` of several images; tasks that run crops override it to batch them across images."""
        return [self.predict(image, source) for image, source in zip(images, sources)]

    def draw(self, image: np.ndarray, result: Any) -> np.ndarray:
        """``result`` drawn on a copy of ``image`` (RGB uint8)."""
        raise NotImplementedError

    def record(self, result: Any, out: Path, stem: str) -> dict[str, Any]:
        """The JSON record of ``result``; may write files named after ``stem`` into ``out``."""
        raise NotImplementedError

    def header(self) -> dict[str, Any]:
        """What the results file states once (class or keypoint names)."""
        return {}

    def accelerate(self, precision: str = "fp32", compile: bool = False, backend: str = "torch",
                   calibration_batches: int = 8, cache: str | Path | bool = True) -> None:
        """Run the network through ``hrnet.inference.prepare`` (bf16 / int8 / torch.compile / OpenVINO, whose
        conversions ``cache`` keeps: see ``prepare``); int8 calibrates on the first ``calibration_batches``
        inputs, run in fp32. An OpenVINO file just takes the precision; an onnxruntime file runs as it is."""
        from ..inference import CalibrateThenInt8, prepare

        if isinstance(self.model, OpenVinoModel):
            self.model = self.model.with_precision(precision)
        elif backend == "onnxruntime":
            return
        elif precision == "int8":
            self.model = CalibrateThenInt8(self.model, calibration_batches, backend=backend, cache=cache)
        elif precision != "fp32" or compile or backend == "openvino":
            self.model = prepare(self.model, precision, compile=compile or None, backend=backend, cache=cache)

    def run(self, source: Path, out: Path, skip_existing: bool = False) -> RunReport:
        """Predict every image (or video frame) of ``source``; write the results file and drawn copies into
        ``out``, each file atomically. A file that cannot be read is logged, counted and skipped; the rest go
        on. With ``skip_existing``, inputs whose picture and records an earlier run left in ``out`` are kept
        as they are, so a stopped run continues where it stopped."""
        out.mkdir(parents=True, exist_ok=True)
        target = out / self.results_file
        previous = self._previous_records(target) if skip_existing else {}
        inputs = list(iter_inputs(source))
        loop = PredictLoop(self, out)
        records: list[dict[str, Any]] = []
        images: list[tuple[Path, Path]] = []
        reused = 0
        with tqdm(total=len(inputs), desc="predict", unit="file", disable=None, leave=False) as bar:
            for path in inputs:
                picture = out / f"{path.stem}_{self.picture}{'.mp4' if is_video(path) else '.jpg'}"
                if path.name in previous and picture.exists() or is_video(path):
                    records += loop.images(images, bar)
                    images = []
                if path.name in previous and picture.exists():
                    records += previous[path.name]
                    reused += 1
                    bar.update()
                elif is_video(path):
                    try:
                        records += loop.video(path, picture)
                    except ERRORS as err:
                        loop.failed.append((path.name, first_line(err)))
                        log.warning("skipping %s: %s", path, err)
                    bar.update()
                else:
                    images.append((path, picture))
            records += loop.images(images, bar)
        write_atomic(target, json.dumps({**self.header(), "images": records}))
        return RunReport(target, len(inputs) - reused - len(loop.failed), reused, loop.failed)

    @staticmethod
    def _previous_records(target: Path) -> dict[str, list[dict[str, Any]]]:
        """An earlier run's records by input file name (``{}`` when there is no readable results file)."""
        try:
            images = json.loads(target.read_text())["images"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        by_file: dict[str, list[dict[str, Any]]] = {}
        for record in images:
            by_file.setdefault(record["file"], []).append(record)
        return by_file
