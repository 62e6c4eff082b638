"""ImageNet-style classification data: the presets' preprocessing, image folders, WebDataset shards, the DataModule.

Preprocessing is torchvision's functional ops on PIL images, as in timm and the official code:

* evaluation (timm ``transforms_imagenet_eval``, official ``tools/valid.py``): resize the short side to
  ``floor(size / crop_pct)`` (224 / 0.875 = 256), centre crop ``input_size``, ``ToTensor``, ``Normalize``;
* training (official ``tools/train.py``): ``RandomResizedCrop(size)`` (scale 0.08-1, ratio 3/4-4/3), horizontal
  flip, ``ToTensor``, ``Normalize``; the random draws come from the sample's numpy generator
  (:class:`~hrnet.seeding.SeededSamples`), so they depend on (seed, epoch, sample) only.

Images are decoded with PIL and converted to RGB, as torchvision's ``ImageFolder`` (``pil_loader``) does for
the official code and timm.

WebDataset shards are dealt to the ``world_size x num_workers`` readers (see :class:`WebDatasetClassification`):
each shard is read by exactly one (rank, DataLoader worker) per pass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from ...seeding import SeededSamples
from ..base import LoaderHooks
from .transforms import (
    CLASSIFICATION_PRESETS,
    DataConfig,
    EvalTransform,
    TrainTransform,
    Transform,
    data_config,
    decode_image,
    eval_transform,
    random_resized_crop_box,
    train_transform,
)

__all__ = [
    "CLASSIFICATION_PRESETS",
    "IMAGE_EXTENSIONS",
    "ClassificationDataModule",
    "DataConfig",
    "EvalTransform",
    "ImageFolderClassification",
    "StreamLoader",
    "TrainTransform",
    "WebDatasetClassification",
    "classes_beside",
    "data_config",
    "decode_image",
    "eval_transform",
    "expand_shards",
    "find_classes",
    "random_resized_crop_box",
    "shuffle_buffer",
    "train_transform",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ``IMG_EXTENSIONS``, matched case-insensitively as its ``ImageFolder`` does."""
SHARD_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


# ------------------------------------------------------------------------------------------ image folder
def find_classes(root: str | Path) -> list[str]:
    """The class folders of ``root/<class>/...``, sorted (torchvision's ``ImageFolder.find_classes``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found (expected <root>/<class>/<image>, "
                                "e.g. data/imagenet/images/train)")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise ValueError(f"image folder {root} has no class folders (expected <root>/<class>/<image>; "
                         "ImageNet's val images must be sorted into class folders)")
    return classes


def _class_images(folder: Path) -> list[Path]:
    """The images under ``folder`` in torchvision's ``make_dataset`` order (sorted walk, sorted names)."""
    images = [Path(d) / name for d, _, names in sorted(os.walk(folder, followlinks=True)) for name in sorted(names)
              if name.lower().endswith(IMAGE_EXTENSIONS)]
    if not images:
        raise ValueError(f"class folder {folder} has no images (expected files ending {', '.join(IMAGE_EXTENSIONS)})")
    return images


class ImageFolderClassification(SeededSamples, Dataset):
    """``root/<class>/**/<image>`` (the official ImageNet layout ``data/imagenet/images/{train,val}``), classes and
    samples in torchvision ``ImageFolder``'s order (label = index in the sorted class folders). Sample ``i``:
    ``{"image": (3, H, W) float32, "label": int64, "index": int64}``; ``transform(image, rng)`` gets the sample's
    generator of ``(seed, epoch, i)``."""

    def __init__(self, root: str | Path, transform: Transform, seed: int | None = 0) -> None:
        self.root = Path(root)
        self.class_names = find_classes(self.root)
        self.samples = [(path, label) for label, name in enumerate(self.class_names)
                        for path in _class_images(self.root / name)]
        self.transform, self.seed = transform, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path, label = self.samples[index]
        image = decode_image(path.read_bytes(), f"image file {path}")
        return {"image": self.transform(image, self.rng_for(index)), "label": torch.tensor(label, dtype=torch.int64),
                "index": torch.tensor(index, dtype=torch.int64)}


# -------------------------------------------------------------------------------------------- webdataset
def expand_shards(shards: str | Sequence[str]) -> list[str]:
    """Shard URLs from a brace pattern (``train-{0000..1023}.tar``; ``::`` joins patterns, as webdataset) or a
    list of them. Local files must exist (``FileNotFoundError`` naming the first one missing)."""
    from webdataset.shardlists import expand_urls

    patterns = [shards] if isinstance(shards, str) else list(shards)
    urls = [url for pattern in patterns for url in expand_urls(pattern)]
    if not urls:
        raise ValueError(f"shards {shards!r}: no shard names (expected a brace pattern or a list of .tar files)")
    for url in urls:
        if _is_local(url) and not Path(url).is_file():
            raise FileNotFoundError(f"shard {url} not found (from shards {shards!r})")
    return urls


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def classes_beside(url: str) -> list[str] | None:
    """The class names (label order, one a line) of the ``classes.txt`` beside local shard ``url``, or ``None``."""
    path = Path(url).parent / "classes.txt"
    if not (_is_local(url) and path.is_file()):
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"classes file {path} is empty (expected one class name a line, in label order)")
    return names


T = TypeVar("T")


def shuffle_buffer(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """``items`` shuffled through a buffer of ``size`` (webdataset's ``shuffle``): each new item replaces a random
    one, which is handed out; the rest leave in random order at the end."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


class WebDatasetClassification(SeededSamples, IterableDataset):
    """WebDataset tar shards of ``<key>.jpg`` (or ``.jpeg`` / ``.png`` / ``.webp``) and ``<key>.cls`` (the integer
    label as text), streamed. Samples are dicts as :class:`ImageFolderClassification`'s; ``index`` is
    ``shard << 32 | position in shard`` (unique, in shard order). ``class_names``: ``classes`` or the lines of a
    ``classes.txt`` beside the first shard (else ``None``); labels are checked against them.

    Splitting: the pass's shard order (evaluation: as given; training: permuted by ``(seed, epoch)``, the same on
    every rank) is dealt round-robin to ``world_size x workers`` slots, slot ``rank * workers + worker``, so each
    shard is read by exactly one (rank, DataLoader worker). Evaluation reads every sample exactly once across the
    ranks; with shards not dividing evenly, ranks get different counts (some none), which is fine because
    predictions are gathered. Training needs ``samples_per_worker``: every slot hands out exactly that many
    samples, cycling through its shards (re-permuted each cycle) when they hold fewer and stopping early when they
    hold more, so all ranks run the same number of batches (DDP would hang otherwise); it needs at least one shard
    per slot. Training samples pass a ``shuffle_buffer`` seeded by ``(seed, epoch, slot)``; the augmentation
    generator is ``(seed, epoch, cycle, shard, position)``, independent of the split. Mid-epoch resume is not
    supported: a resumed run restarts the interrupted epoch.
    """

    def __init__(self, shards: str | Sequence[str], transform: Transform, *, train: bool = False,
                 classes: Sequence[str] | None = None, seed: int = 0, shuffle_buffer: int = 1000,
                 samples_per_worker: int | None = None, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0) -> None:
        self.urls = expand_shards(shards)
        self.class_names = list(classes) if classes is not None else classes_beside(self.urls[0])
        self.transform, self.train, self.seed, self.buffer = transform, train, int(seed), shuffle_buffer
        self.samples_per_worker, self.rank, self.world_size = samples_per_worker, rank, world_size
        self.num_workers = num_workers
        slots = world_size * max(1, num_workers)
        if train and world_size > 1 and samples_per_worker is None:
            raise ValueError(f"training on {world_size} ranks needs samples_per_worker (equal batches per rank)")
        if train and len(self.urls) < slots:
            raise ValueError(f"{len(self.urls)} shards cannot feed {world_size} ranks x {max(1, num_workers)} "
                             f"workers: each shard is read by one worker; write at least {slots} shards")

    def __len__(self) -> int:
        """Samples per rank in a training pass; ``TypeError`` (no length) when ``samples_per_worker`` is unset."""
        if self.samples_per_worker is None:
            raise TypeError("WebDatasetClassification has no length without samples_per_worker")
        return self.samples_per_worker * max(1, self.num_workers)

    def shards_for(self, worker: int = 0, workers: int = 1) -> list[int]:
        """The shard indices slot ``(rank, worker)`` reads this pass."""
        n = len(self.urls)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(n) if self.train else np.arange(n)
        slot, slots = self.rank * workers + worker, self.world_size * workers
        return [int(s) for s in order[slot::slots]]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.samples_per_worker is not None and workers != max(1, self.num_workers):
            raise ValueError(f"dataset built for num_workers={self.num_workers}, loaded with {workers} workers")
        return self.stream(worker, workers)

    def stream(self, worker: int = 0, workers: int = 1) -> Iterator[dict[str, Tensor]]:
        """The samples slot ``(rank, worker)`` of ``world_size x workers`` hands out this pass."""
        shards = self.shards_for(worker, workers)
        records: Iterable[tuple[int, int, int, dict[str, Any]]] = self._records(shards, worker, workers)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, self.rank * workers + worker))
            records = shuffle_buffer(records, self.buffer, rng)
        for cycle, shard, position, raw in records:
            yield self._sample(cycle, shard, position, raw)

    def _records(self, shards: list[int], worker: int, workers: int) -> Iterator[tuple[int, int, int, dict]]:
        """(cycle, shard, position, raw sample): one pass over ``shards``, or with ``samples_per_worker`` exactly
        that many, cycling through them (re-permuted per cycle)."""
        if self.samples_per_worker is None:
            for shard in shards:
                yield from ((0, shard, pos, raw) for pos, raw in enumerate(self._read(shard)))
            return
        left, cycle = self.samples_per_worker, 0
        while left > 0:
            rng = np.random.default_rng((self.seed, self.epoch, self.rank * workers + worker, cycle))
            before = left
            for shard in rng.permutation(shards) if cycle else shards:
                for pos, raw in enumerate(self._read(int(shard))):
                    if left == 0:
                        return
                    left -= 1
                    yield cycle, int(shard), pos, raw
            if left == before:
                raise ValueError(f"shards {[self.urls[s] for s in shards]} hold no samples")
            cycle += 1

    def _read(self, shard: int) -> Iterator[dict[str, Any]]:
        from webdataset.tariterators import tarfile_samples

        return tarfile_samples([{"url": self.urls[shard]}])

    def _sample(self, cycle: int, shard: int, position: int, raw: dict[str, Any]) -> dict[str, Tensor]:
        where = f"shard {self.urls[shard]} sample {raw['__key__']}"
        image_key = next((k for k in SHARD_IMAGE_KEYS if k in raw), None)
        if image_key is None or "cls" not in raw:
            found = sorted(k for k in raw if not k.startswith("__"))
            raise ValueError(f"{where}: expected .jpg (or .jpeg/.png/.webp) and .cls files, found {found}")
        label = self._label(raw["cls"], where)
        rng = np.random.default_rng((self.seed, self.epoch, cycle, shard, position)) if self.train else None
        image = self.transform(decode_image(raw[image_key], where), rng)
        return {"image": image, "label": torch.tensor(label, dtype=torch.int64),
                "index": torch.tensor(shard << 32 | position, dtype=torch.int64)}

    def _label(self, data: bytes, where: str) -> int:
        text = data.decode("utf-8", "replace").strip()
        if not text.lstrip("-").isdigit():
            raise ValueError(f"{where}: .cls holds {text[:20]!r}, expected an integer label")
        label = int(text)
        k = len(self.class_names) if self.class_names is not None else None
        if label < 0 or (k is not None and label >= k):
            expected = f"0..{k - 1} ({k} classes)" if k is not None else "a non-negative label"
            raise ValueError(f"{where}: label {label}, expected {expected}")
        return label


class StreamLoader(DataLoader):
    """A ``DataLoader`` over a :class:`WebDatasetClassification` that gives it ``epoch()`` before each pass
    (Lightning sets the epoch on samplers, which an ``IterableDataset`` has none of)."""

    def __init__(self, dataset: WebDatasetClassification, epoch: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._epoch_of = epoch

    def __iter__(self) -> Iterator[Any]:
        self.dataset.set_epoch(self._epoch_of())
        return super().__iter__()


# -------------------------------------------------------------------------------------------- DataModule
class ClassificationDataModule(LoaderHooks, L.LightningDataModule):
    """Classification data: ``folder`` (``train_dir`` / ``val_dir`` of class folders; official ImageNet:
    ``data/imagenet/images/{train,val}``) or ``webdataset`` (``train_shards`` / ``val_shards``: brace patterns or
    lists; ``train_samples`` sets the epoch length, e.g. ImageNet's 1281167; ``classes`` or a ``classes.txt`` beside
    the shards names the classes).

    Preprocessing: :func:`data_config` of preset ``model`` (the CLI links it to ``model.model``) and timm tag ``tag``
    (``model=None``: the official 224 / 0.875 / bilinear), each of ``input_size``, ``crop_pct``, ``interpolation``,
    ``mean``, ``std`` overriding it when set; training crops are ``RandomResizedCrop(scale=crop_scale)`` (official
    0.08-1) and a flip. Folders train in :class:`~hrnet.seeding.SeededOrder` with mid-epoch
    resume; shards as :class:`WebDatasetClassification` says, each (rank, worker) reading
    ``train_samples // (ranks x workers)`` samples rounded down to whole batches.
    """

    def __init__(
        self,
        dataset: str = "folder",
        train_dir: str = "data/imagenet/images/train",
        val_dir: str = "data/imagenet/images/val",
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        classes: list[str] | None = None,
        train_samples: int | None = None,
        shuffle_buffer: int = 1000,
        model: str | None = "hrnet_w18",
        tag: str = "ms_in1k",
        input_size: tuple[int, int] | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in ("folder", "webdataset"):
            raise ValueError(f"data.dataset must be 'folder' or 'webdataset', got {dataset!r}")
        self.save_hyperparameters()
        self.data_config = self._resolve_config()
        self._class_names: list[str] | None = None

    def _resolve_config(self) -> DataConfig:
        h = self.hparams
        base = data_config(h.model, h.tag) if h.model else DataConfig()
        fields = {key: tuple(h[key]) if isinstance(h[key], (list, tuple)) else h[key]
                  for key in ("input_size", "crop_pct", "interpolation", "mean", "std") if h[key] is not None}
        return dataclasses.replace(base, **fields)

    @property
    def class_names(self) -> list[str]:
        """The class names (label order): the training folder's (the validation folder's when there is no training
        folder), or for shards ``classes`` / ``classes.txt``. Read without building the datasets."""
        if self._class_names is None:
            self._class_names = self._read_class_names()
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _read_class_names(self) -> list[str]:
        h = self.hparams
        if h.dataset == "folder":
            only_val = not Path(h.train_dir).is_dir() and Path(h.val_dir).is_dir()
            return find_classes(h.val_dir if only_val else h.train_dir)
        if h.classes:
            return list(h.classes)
        for shards in (h.train_shards, h.val_shards):
            names = classes_beside(expand_shards(shards)[0]) if shards else None
            if names:
                return names
        raise ValueError("data.dataset 'webdataset' needs class names: set data.classes or put a classes.txt "
                         "(one name a line) beside the shards")

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(train=True)
        if stage in ("fit", "validate", "test") and self.val_set is None:
            self.val_set = self._dataset(train=False)

    def _dataset(self, train: bool) -> Dataset:
        h = self.hparams
        transform = train_transform(self.data_config, tuple(self.hparams.crop_scale)) if train else \
            eval_transform(self.data_config)
        if h.dataset == "folder":
            data = ImageFolderClassification(h.train_dir if train else h.val_dir, transform, seed=h.seed)
            if data.class_names != self.class_names:
                raise ValueError(f"class folders of {data.root} differ from {h.train_dir}'s "
                                 f"({len(data.class_names)} vs {self.num_classes}); expected the same classes")
            return data
        shards = h.train_shards if train else h.val_shards
        if not shards:
            raise ValueError(f"data.dataset 'webdataset' needs data.{'train' if train else 'val'}_shards")
        world, rank = self._ranks()
        return WebDatasetClassification(shards, transform, train=train, classes=self.class_names, seed=h.seed,
                                        shuffle_buffer=h.shuffle_buffer, rank=rank, world_size=world,
                                        samples_per_worker=self._samples_per_worker(world) if train else None,
                                        num_workers=h.num_workers)

    def _samples_per_worker(self, world: int) -> int:
        h = self.hparams
        if not h.train_samples:
            raise ValueError("data.train_samples (the training set's size; ImageNet: 1281167) is needed with "
                             "dataset 'webdataset': it sets the epoch length of each rank and worker")
        slots = world * max(1, h.num_workers)
        per_worker = h.train_samples // slots // h.batch_size * h.batch_size
        if per_worker == 0:
            raise ValueError(f"data.train_samples {h.train_samples} is too few for {world} ranks x "
                             f"{max(1, h.num_workers)} workers x batch_size {h.batch_size}")
        return per_worker

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        if not isinstance(self.train_set, WebDatasetClassification):
            return super().train_dataloader()
        return StreamLoader(self.train_set, self._epoch, batch_size=self.hparams.batch_size, drop_last=True,
                            **self._loader_options())

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        if not isinstance(dataset, WebDatasetClassification):
            return super()._eval_loader(dataset)
        return StreamLoader(dataset, self._epoch, batch_size=self.hparams.eval_batch_size or self.hparams.batch_size,
                            **self._loader_options())
