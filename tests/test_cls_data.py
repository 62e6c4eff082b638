"""Classification data: the presets' preprocessing against timm on a real photo, the training crop against
torchvision's, image folders against torchvision's ImageFolder, WebDataset shards split over 2 ranks x 2 workers,
seeded determinism, the DataModule, and the error messages."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrnet.files import IMAGENET_MEAN, IMAGENET_STD
from hrnet.tasks.classification.data import (
    CLASSIFICATION_PRESETS,
    ClassificationDataModule,
    DataConfig,
    ImageFolderClassification,
    WebDatasetClassification,
    data_config,
    decode_image,
    eval_transform,
    random_resized_crop_box,
    shuffle_buffer,
    train_transform,
)

SMALL = DataConfig(input_size=(16, 16), crop_pct=0.875)


# --------------------------------------------------------------------------------------------- helpers
def photo() -> np.ndarray:
    """A real photo shipped with matplotlib (a core dependency): Grace Hopper, 512 x 600 JPEG."""
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_bytes(seed: int, size: tuple[int, int] = (30, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            sub = root / name / ("nested" if i == 0 else "")  # torchvision walks sub-folders too
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"img_{i}.JPEG").write_bytes(jpeg_bytes(10 * c + i))
        (root / name / "notes.txt").write_text("not an image")
    return root


def write_shards(folder: Path, sizes: list[int], classes: list[str] | None = ("a", "b", "c")) -> str:
    """Shards ``shard-000.tar`` ... of ``sizes`` samples each (label = sample number mod 3); ``classes.txt``."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    for s, size in enumerate(sizes):
        with wds.TarWriter(str(folder / f"shard-{s:03d}.tar")) as sink:
            for _ in range(size):
                sink.write({"__key__": f"sample{number:05d}", "jpg": jpeg_bytes(number), "cls": str(number % 3)})
                number += 1
    if classes:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return str(folder / f"shard-{{000..{len(sizes) - 1:03d}}}.tar")


def write_tar(path: Path, files: dict[str, bytes]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


# ------------------------------------------------------------------------------------------ data config
def test_data_config_values_per_preset() -> None:
    timm = pytest.importorskip("timm")
    for preset in CLASSIFICATION_PRESETS:
        cfg = data_config(preset)
        timm_cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(
            f"{preset}.ms_in1k").to_dict())
        assert cfg == DataConfig((224, 224), 0.875, "bilinear", IMAGENET_MEAN, IMAGENET_STD)  # = official valid.py
        assert (cfg.input_size, cfg.crop_pct, cfg.interpolation, cfg.mean, cfg.std) == (
            timm_cfg["input_size"][1:], timm_cfg["crop_pct"], timm_cfg["interpolation"], timm_cfg["mean"],
            timm_cfg["std"])
        assert cfg.resize_size == (256, 256)  # official int(224 / 0.875)
    assert data_config("hrnet_w18_small", "gluon_in1k").interpolation == "bicubic"
    assert data_config("hrnet_w18", "ms_aug_in1k").crop_pct == 0.95


@pytest.mark.parametrize("name, tag", [("hrnet_w18", "ms_aug_in1k"), ("hrnet_w18_small", "gluon_in1k")])
def test_eval_transform_equals_timm_default(name: str, tag: str) -> None:
    """timm's plain model name takes its first tag; the transform of that config is timm's, bit for bit."""
    timm = pytest.importorskip("timm")
    cfg = timm.data.resolve_data_config({}, model=timm.create_model(name, pretrained=False))
    image = photo()
    expected = timm.data.create_transform(**cfg)(Image.fromarray(image))
    ours = eval_transform(data_config(name, tag))(image)
    assert ours.dtype == torch.float32 and ours.shape == (3, 224, 224)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("name", ["hrnet_w18", "hrnet_w18_small"])
def test_eval_transform_equals_timm_official_weights(name: str) -> None:
    timm = pytest.importorskip("timm")
    official = timm.models.get_pretrained_cfg(f"{name}.ms_in1k").to_dict()
    expected = timm.data.create_transform(**timm.data.resolve_data_config({}, pretrained_cfg=official))
    image = photo()
    assert torch.equal(eval_transform(data_config(name))(image), expected(Image.fromarray(image)))


@pytest.mark.parametrize("size, interpolation, crop_pct", [((256, 192), "bicubic", 0.9), ((200, 224), "bilinear", 1.0)])
def test_eval_transform_non_square_equals_timm(size: tuple[int, int], interpolation: str, crop_pct: float) -> None:
    pytest.importorskip("timm")
    from timm.data.transforms_factory import transforms_imagenet_eval

    image = photo()
    expected = transforms_imagenet_eval(img_size=size, crop_pct=crop_pct, interpolation=interpolation)(
        Image.fromarray(image))
    assert torch.equal(eval_transform(DataConfig(size, crop_pct, interpolation))(image), expected)


def test_data_config_errors() -> None:
    with pytest.raises(ValueError, match="not a classification preset.*hrnet_w18_small"):
        data_config("pose_hrnet_w32")
    with pytest.raises(ValueError, match="tag 'gluon_in1k' unknown for hrnet_w32; expected one of \\['ms_in1k'\\]"):
        data_config("hrnet_w32", "gluon_in1k")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        DataConfig(interpolation="nearest")
    with pytest.raises(ValueError, match="input_size must be \\(H, W\\)"):
        DataConfig(input_size=(224, 0))
    with pytest.raises(ValueError, match="expected an RGB uint8 \\(H, W, 3\\) image, got float32"):
        eval_transform(SMALL)(np.zeros((8, 8, 3), np.float32))


# ------------------------------------------------------------------------------------------- training
def test_random_resized_crop_box_matches_torchvision_fallback_and_ranges() -> None:
    from torchvision.transforms import RandomResizedCrop

    rng = np.random.default_rng(0)
    for height, width in ((10, 100), (100, 10)):  # whole-image area at a ratio the image lacks: every try fails
        ours = random_resized_crop_box(height, width, rng, scale=(1.0, 1.0))
        theirs = RandomResizedCrop.get_params(torch.zeros(3, height, width), scale=[1.0, 1.0], ratio=[3 / 4, 4 / 3])
        assert ours == tuple(theirs)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(60, 80, rng)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.08 * 4800 * 0.9 <= h * w <= 4800 and 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.2


def test_train_transform_is_seeded_and_augment_hook() -> None:
    image = photo()
    t = train_transform(SMALL)
    a, b = t(image, np.random.default_rng((0, 1, 2))), t(image, np.random.default_rng((0, 1, 2)))
    assert a.shape == (3, 16, 16) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, t(image, np.random.default_rng((0, 2, 2))))
    black = train_transform(SMALL, augment=lambda pil, rng: Image.new("RGB", pil.size))(image, np.random.default_rng(0))
    assert torch.allclose(black[0], torch.full((16, 16), -IMAGENET_MEAN[0] / IMAGENET_STD[0]))


# ----------------------------------------------------------------------------------------- image folder
def test_image_folder_matches_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    root = image_folder(tmp_path / "train", {"n02": 3, "n01": 2, "cat b": 2})
    data = ImageFolderClassification(root, eval_transform(SMALL))
    reference = ImageFolder(str(root))
    assert data.class_names == reference.classes == ["cat b", "n01", "n02"]
    assert [(str(p), label) for p, label in data.samples] == reference.samples
    sample = data[4]
    assert sample["image"].shape == (3, 16, 16) and sample["image"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and int(sample["label"]) == reference.samples[4][1]
    assert sample["index"].dtype == torch.int64 and int(sample["index"]) == 4
    expected = eval_transform(SMALL)(np.asarray(reference[4][0]))  # torchvision's PIL loader
    assert torch.equal(sample["image"], expected)


def test_image_folder_training_is_deterministic_in_seed_and_epoch(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "train", {"a": 2, "b": 2})
    data = ImageFolderClassification(root, train_transform(SMALL), seed=3)
    first = [data[i]["image"] for i in range(4)]
    again = ImageFolderClassification(root, train_transform(SMALL), seed=3)
    assert all(torch.equal(x, again[i]["image"]) for i, x in enumerate(first))
    data.set_epoch(1)
    assert not any(torch.equal(x, data[i]["image"]) for i, x in enumerate(first))
    other_seed = ImageFolderClassification(root, train_transform(SMALL), seed=4)
    assert not torch.equal(first[0], other_seed[0]["image"])


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(f"image folder {tmp_path / 'nope'} not found")):
        ImageFolderClassification(tmp_path / "nope", eval_transform(SMALL))
    flat = tmp_path / "val"
    flat.mkdir()
    (flat / "ILSVRC2012_val_00000001.JPEG").write_bytes(jpeg_bytes(0))
    with pytest.raises(ValueError, match=re.escape(f"image folder {flat} has no class folders")):
        ImageFolderClassification(flat, eval_transform(SMALL))
    root = image_folder(tmp_path / "train", {"a": 1})
    (root / "empty").mkdir()
    (root / "empty" / "readme.md").write_text("")
    with pytest.raises(ValueError, match=re.escape(f"class folder {root / 'empty'} has no images")):
        ImageFolderClassification(root, eval_transform(SMALL))
    (root / "empty" / "cut.jpg").write_bytes(jpeg_bytes(1)[:-200])
    with pytest.raises(ValueError, match=re.escape(f"image file {root / 'empty' / 'cut.jpg'} is truncated")):
        ImageFolderClassification(root, eval_transform(SMALL))[1]
    with pytest.raises(ValueError, match="sample x unreadable"):
        decode_image(b"not an image", "sample x")


# ------------------------------------------------------------------------------------------- webdataset
def test_webdataset_reads_samples_and_classes(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path / "shards", [3, 2])
    data = WebDatasetClassification(pattern, eval_transform(SMALL))
    samples = list(data)
    assert data.class_names == ["a", "b", "c"]
    assert [int(s["label"]) for s in samples] == [0, 1, 2, 0, 1]
    assert [int(s["index"]) for s in samples] == [0, 1, 2, 1 << 32, (1 << 32) + 1]
    expected = eval_transform(SMALL)(decode_image(jpeg_bytes(3), "x"))
    assert torch.equal(samples[3]["image"], expected) and samples[3]["image"].shape == (3, 16, 16)
    listed = WebDatasetClassification([str(tmp_path / "shards" / "shard-001.tar")], eval_transform(SMALL),
                                      classes=["x", "y", "z"])
    assert listed.class_names == ["x", "y", "z"] and len(list(listed)) == 2


def test_webdataset_evaluation_split_covers_every_sample_once(tmp_path: Path) -> None:
    """5 uneven shards over 2 ranks x 2 workers: each shard read by one slot, every sample once."""
    pattern = write_shards(tmp_path / "shards", [4, 3, 5, 2, 3])
    seen: list[int] = []
    shards_read: list[int] = []
    for rank in range(2):
        data = WebDatasetClassification(pattern, eval_transform(SMALL), rank=rank, world_size=2, num_workers=2)
        for worker in range(2):
            shards_read += data.shards_for(worker, 2)
            seen += [int(s["index"]) for s in data.stream(worker, 2)]
    assert sorted(shards_read) == [0, 1, 2, 3, 4]
    assert len(seen) == len(set(seen)) == 17
    assert Counter(i >> 32 for i in seen) == {0: 4, 1: 3, 2: 5, 3: 2, 4: 3}


def test_webdataset_with_real_dataloader_workers(tmp_path: Path) -> None:
    """Run in its own process: DataLoader worker processes leave this one (torch's SIGCHLD handling) where a later
    OpenVINO test crashes."""
    pattern = write_shards(tmp_path / "shards", [2, 3, 1, 2])
    script = f"""
import json
from torch.utils.data import DataLoader
from hrnet.tasks.base import collate
from hrnet.tasks.classification.data import WebDatasetClassification, data_config, eval_transform
indices = []
for rank in range(2):
    data = WebDatasetClassification({pattern!r}, eval_transform(data_config("hrnet_w18_small")), rank=rank,
                                    world_size=2, num_workers=2)
    indices += [int(i) for batch in DataLoader(data, batch_size=2, num_workers=2, collate_fn=collate)
                for i in batch["index"]]
print(json.dumps(indices))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    indices = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(indices) == len(set(indices)) == 8


def test_webdataset_training_equal_length_and_seeded(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path / "shards", [4, 3, 5, 2, 3])

    def run(rank: int, epoch: int, seed: int = 0) -> list[list[torch.Tensor]]:
        data = WebDatasetClassification(pattern, train_transform(SMALL), train=True, seed=seed, shuffle_buffer=4,
                                        samples_per_worker=6, rank=rank, world_size=2, num_workers=2)
        data.set_epoch(epoch)
        return [[s["image"] for s in data.stream(worker, 2)] for worker in range(2)]

    def shards(rank: int, epoch: int) -> list[list[int]]:
        data = WebDatasetClassification(pattern, train_transform(SMALL), train=True, samples_per_worker=6, rank=rank,
                                        world_size=2, num_workers=2)
        data.set_epoch(epoch)
        return [data.shards_for(worker, 2) for worker in range(2)]

    for epoch in (0, 1):
        dealt = shards(0, epoch) + shards(1, epoch)
        assert sorted(s for slot in dealt for s in slot) == [0, 1, 2, 3, 4]  # one permutation shared by the ranks
    assert shards(0, 0) + shards(1, 0) != shards(0, 1) + shards(1, 1)
    first = run(0, 0)
    assert [len(w) for w in first + run(1, 0)] == [6, 6, 6, 6]  # equal per (rank, worker), shards repeated

    def same(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
        flat_a, flat_b = [x for w in a for x in w], [x for w in b for x in w]
        return len(flat_a) == len(flat_b) and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b, strict=True))

    assert same(first, run(0, 0)) and not same(first, run(0, 1)) and not same(first, run(0, 0, seed=1))


def test_shuffle_buffer_keeps_every_item() -> None:
    out = list(shuffle_buffer(range(50), 8, np.random.default_rng(0)))
    assert sorted(out) == list(range(50)) and out != list(range(50))


def test_webdataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shard .*shard-000.tar not found"):
        WebDatasetClassification(str(tmp_path / "shard-{000..001}.tar"), eval_transform(SMALL))
    pattern = write_shards(tmp_path / "ok", [2, 2])
    with pytest.raises(ValueError, match="2 shards cannot feed 2 ranks x 2 workers.*at least 4 shards"):
        WebDatasetClassification(pattern, train_transform(SMALL), train=True, samples_per_worker=2, world_size=2,
                                 num_workers=2)
    with pytest.raises(ValueError, match="training on 2 ranks needs samples_per_worker"):
        WebDatasetClassification(pattern, train_transform(SMALL), train=True, world_size=2)
    with pytest.raises(ValueError, match="label 2, expected 0..1 \\(2 classes\\)"):
        list(WebDatasetClassification(pattern, eval_transform(SMALL), classes=["a", "b"]))
    bad_label = write_tar(tmp_path / "bad" / "label.tar", {"k1.jpg": jpeg_bytes(0), "k1.cls": b"one"})
    with pytest.raises(ValueError, match="label.tar sample k1: .cls holds 'one', expected an integer label"):
        list(WebDatasetClassification(bad_label, eval_transform(SMALL)))
    no_label = write_tar(tmp_path / "bad" / "nolabel.tar", {"k2.jpg": jpeg_bytes(1)})
    with pytest.raises(ValueError, match="sample k2: expected .jpg .* and .cls files, found \\['jpg'\\]"):
        list(WebDatasetClassification(no_label, eval_transform(SMALL)))

# -------------------------------------------------------------------------------------------- DataModule
def test_datamodule_folder(tmp_path: Path) -> None:
    train = image_folder(tmp_path / "images" / "train", {"a": 3, "b": 3})
    val = image_folder(tmp_path / "images" / "val", {"a": 1, "b": 2})
    dm = ClassificationDataModule(train_dir=str(train), val_dir=str(val), input_size=[16, 16], batch_size=2,
                                  num_workers=0, seed=1)
    assert dm.num_classes == 2 and dm.class_names == ["a", "b"]
    assert dm.data_config == DataConfig((16, 16), 0.875, "bilinear")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["label"].dtype == torch.int64
    labels = [int(x) for b in dm.val_dataloader() for x in b["label"]]
    assert labels == [0, 1, 1]
    other = image_folder(tmp_path / "other", {"a": 1, "c": 1})
    with pytest.raises(ValueError, match="class folders of .*other differ"):
        ClassificationDataModule(train_dir=str(train), val_dir=str(other), num_workers=0).setup("validate")


def test_datamodule_webdataset(tmp_path: Path) -> None:
    train = write_shards(tmp_path / "train", [4, 3, 5])
    val = write_shards(tmp_path / "val", [2, 3], classes=None)
    dm = ClassificationDataModule(dataset="webdataset", train_shards=train, val_shards=[val], train_samples=12,
                                  model="hrnet_w18_small", tag="gluon_in1k", input_size=(16, 16), batch_size=2,
                                  num_workers=0, shuffle_buffer=3)
    assert dm.num_classes == 3 and dm.data_config.interpolation == "bicubic"
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 6 and batches[0]["image"].shape == (2, 3, 16, 16)
    assert sorted(int(i) for b in dm.val_dataloader() for i in b["index"]) == [0, 1, 1 << 32, (1 << 32) + 1,
                                                                                (1 << 32) + 2]
    with pytest.raises(ValueError, match="data.train_samples .* is needed"):
        ClassificationDataModule(dataset="webdataset", train_shards=train, num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="needs class names"):
        _ = ClassificationDataModule(dataset="webdataset", val_shards=val).num_classes
    with pytest.raises(ValueError, match="data.dataset must be 'folder' or 'webdataset'"):
        ClassificationDataModule(dataset="imagenet")
