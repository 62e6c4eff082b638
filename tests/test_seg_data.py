"""Segmentation data: Cityscapes label mapping against hand-checked ids, the Cityscapes / folder / list
datasets on tiny fixtures written to tmp_path, the official augmentation (alignment, sizes, padding,
determinism), error messages, and the synthetic street-scene generator."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hrnet.files import IMAGENET_MEAN, IMAGENET_STD
from hrnet.synthetic.streets import SYNTHETIC_LABEL_IDS, make_synthetic_cityscapes, preview_grid
from hrnet.tasks.segmentation.datasets import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN,
    CITYSCAPES_PALETTE,
    CITYSCAPES_TRAIN_TO_LABEL,
    CityscapesSegmentation,
    FolderSegmentation,
    ListSegmentation,
    SegmentationDataset,
    colorize_mask,
    official_scale_range,
)


# --------------------------------------------------------------------------------------------- helpers
def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)
    return path


def write_mask(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8), "L").save(path)
    return path


def cityscapes_fixture(root: Path) -> dict[str, np.ndarray]:
    """2 cities, 3 frames of 16x32 with label-id masks; returns the label-id mask of each stem."""
    rng = np.random.default_rng(0)
    masks = {}
    for city, frames in (("aachen", 2), ("bochum", 1)):
        for f in range(frames):
            stem = f"{city}_000000_{f:06d}"
            lab = np.zeros((16, 32), np.uint8)  # 0 unlabeled
            lab[8:, :] = 7  # road
            lab[8:, 24:] = 8  # sidewalk
            lab[:4, :] = 23  # sky
            lab[4:8, :10] = 26  # car
            lab[4:8, 10:12] = 9  # parking (ignored)
            lab[4:8, 20:22] = 33  # bicycle
            write_rgb(root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png",
                      rng.integers(0, 256, (16, 32, 3)))
            write_mask(root / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png", lab)
            masks[stem] = lab
    return masks


# -------------------------------------------------------------------------------------------- constants
def test_cityscapes_label_mapping_hand_checked():
    hand = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
            27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    for label_id in range(34):
        assert CITYSCAPES_LABEL_TO_TRAIN[label_id] == hand.get(label_id, 255), label_id
    assert CITYSCAPES_LABEL_TO_TRAIN[-1] == 255  # license plate
    assert len(CITYSCAPES_CLASSES) == 19 and len(CITYSCAPES_PALETTE) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[13] == "car" and CITYSCAPES_CLASSES[18] == "bicycle"
    assert CITYSCAPES_PALETTE[0] == (128, 64, 128) and CITYSCAPES_PALETTE[13] == (0, 0, 142)
    assert CITYSCAPES_PALETTE[10] == (70, 130, 180) and CITYSCAPES_PALETTE[11] == (220, 20, 60)
    assert all(CITYSCAPES_LABEL_TO_TRAIN[lid] == t for t, lid in enumerate(CITYSCAPES_TRAIN_TO_LABEL))
    assert official_scale_range(16) == (0.5, 2.1)


def test_colorize_mask():
    out = colorize_mask(np.array([[0, 13], [255, 18]]))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == (128, 64, 128) and tuple(out[0, 1]) == (0, 0, 142)
    assert tuple(out[1, 0]) == (0, 0, 0) and tuple(out[1, 1]) == (119, 11, 32)


# ------------------------------------------------------------------------------------------ Cityscapes
def test_cityscapes_layout_and_mapping(tmp_path):
    masks = cityscapes_fixture(tmp_path)
    ds = CityscapesSegmentation(tmp_path, "train", train=False)
    assert len(ds) == 3
    assert [it.name for it in ds.items] == ["aachen_000000_000000", "aachen_000000_000001", "bochum_000000_000000"]
    assert ds.num_classes == 19 and ds.classes == CITYSCAPES_CLASSES
    s = ds[2]
    assert set(s) >= {"image", "mask", "name", "size", "index"}
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 16, 32)
    assert s["mask"].dtype == torch.int64 and s["mask"].shape == (16, 32)
    assert s["name"] == "bochum_000000_000000" and s["size"].tolist() == [16, 32]
    expected = np.vectorize(lambda v: CITYSCAPES_LABEL_TO_TRAIN[int(v)])(masks["bochum_000000_000000"])
    np.testing.assert_array_equal(s["mask"].numpy(), expected)
    m = s["mask"].numpy()
    assert m[10, 0] == 0 and m[10, 30] == 1 and m[0, 0] == 10 and m[5, 0] == 13 and m[5, 10] == 255
    assert m[5, 20] == 18 and m[5, 15] == 255  # bicycle; unlabeled -> ignore
    # RGB + ImageNet normalisation, checked on one pixel
    rgb = np.asarray(Image.open(ds.items[2].image))
    want = (rgb[3, 5] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(s["image"][:, 3, 5].numpy(), want, rtol=1e-5, atol=1e-5)
    # city filter and the test split without masks
    assert len(CityscapesSegmentation(tmp_path, "train", train=False, cities=["bochum"])) == 1
    no_masks = CityscapesSegmentation(tmp_path, "train", train=False, with_masks=False)
    assert "mask" not in no_masks[0]


def test_eval_whole_image_and_eval_long_side(tmp_path):
    cityscapes_fixture(tmp_path)
    s = CityscapesSegmentation(tmp_path, "train", train=False, eval_long_side=64)[0]
    assert s["image"].shape == (3, 32, 64)  # image resized, long side 64
    assert s["mask"].shape == (16, 32)  # mask kept at the original resolution
    assert s["size"].tolist() == [16, 32]


def test_training_batches_collate(tmp_path):
    cityscapes_fixture(tmp_path)
    ds = CityscapesSegmentation(tmp_path, "train", train=True, crop_size=(24, 40), base_size=32, seed=0)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 24, 40) and batch["mask"].shape == (3, 24, 40)
    assert batch["mask"].dtype == torch.int64 and batch["size"].tolist() == [[16, 32]] * 3


# ---------------------------------------------------------------------------------------- augmentation
COLOURS = np.array([(230, 20, 20), (20, 200, 30), (30, 40, 220), (240, 240, 40), (200, 30, 220)], np.uint8)


def blocky_pair(tmp_path: Path, h: int = 60, w: int = 100, seed: int = 0) -> FolderSegmentation:
    """An image whose colour encodes the class of 10x10 blocks (plus one ignore block)."""
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.repeat(rng.integers(0, 5, (h // 10, w // 10)), 10, 0), 10, 1)
    cls[:10, :10] = 255
    rgb = np.where(cls[..., None] == 255, 128, COLOURS[np.minimum(cls, 4)])
    write_rgb(tmp_path / "img" / "a.png", rgb)
    write_mask(tmp_path / "ann" / "a.png", cls)
    return tmp_path


def test_augmentation_keeps_image_and_mask_aligned(tmp_path):
    blocky_pair(tmp_path)
    ds = FolderSegmentation(tmp_path / "img", tmp_path / "ann", [f"c{i}" for i in range(5)], train=True,
                            crop_size=(48, 80), base_size=100, seed=3)
    scales, flips, checked = set(), set(), 0
    for epoch in range(24):
        ds.set_epoch(epoch)
        s = ds.load_sample(0)
        img, mask = s["image"], s["mask"]
        assert img.shape == (48, 80, 3) and mask.shape == (48, 80)
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 4, 255}  # nearest: no blended labels
        scales.add(round(s["params"]["scale"], 3))
        flips.add(s["params"]["flipped"])
        # pixels whose 5x5 neighbourhood has one class: the image colour must be that class' colour
        valid = mask < 5
        lo = cv2.erode(np.where(valid, mask, 99).astype(np.uint8), np.ones((5, 5), np.uint8))
        hi = cv2.dilate(np.where(valid, mask, 99).astype(np.uint8), np.ones((5, 5), np.uint8))
        inner = valid & (lo == hi)
        inner[:2] = inner[-2:] = False  # the crop border cuts neighbourhoods short
        inner[:, :2] = inner[:, -2:] = False
        diff = np.abs(img.astype(int) - COLOURS[np.minimum(mask, 4)].astype(int)).max(-1)
        assert (diff[inner] <= 3).all(), (epoch, s["params"])
        checked += int(inner.sum())
        # at block borders too, every label must have its colour within 2 pixels in the image
        for c in range(5):
            near = cv2.dilate((np.abs(img.astype(int) - COLOURS[c]).max(-1) <= 3).astype(np.uint8),
                              np.ones((5, 5), np.uint8))
            assert near[2:-2, 2:-2][mask[2:-2, 2:-2] == c].all(), (epoch, c, s["params"])
        # padding (when the rescaled image is smaller than the crop) is black with ignore labels
        pad = mask == 255
        padded = pad & (img.max(-1) == 0)
        assert not (img[pad & ~padded] == 0).all(-1).any()
    assert flips == {False, True} and len(scales) >= 5 and checked > 10000
    assert scales <= {round(0.5 + k / 10, 3) for k in range(17)}


def test_crop_size_padding_and_official_resize(tmp_path):
    write_rgb(tmp_path / "img" / "a.png", np.full((40, 80, 3), 200, np.uint8))
    write_mask(tmp_path / "ann" / "a.png", np.zeros((40, 80), np.uint8))
    ds = FolderSegmentation(tmp_path / "img", tmp_path / "ann", ["a", "b"], train=True, crop_size=(200, 240),
                            base_size=75, flip=False, seed=0)
    seen = set()
    for epoch in range(30):
        ds.set_epoch(epoch)
        s = ds.load_sample(0)
        scale = s["params"]["scale"]
        long = int(75 * scale + 0.5)  # official: long side = int(base_size * scale + 0.5)
        short = int(40 * long / 80 + 0.5)  # and the short side int(short * long / long_side + 0.5)
        m = s["mask"]
        assert m.shape == (200, 240)
        # the crop is smaller than the padded image nowhere: everything sits at the top left
        assert (m[:short, :long] == 0).all() and (m[short:] == 255).all() and (m[:, long:] == 255).all()
        assert (s["image"][short:] == 0).all() and (s["image"][:short, :long] == 200).all()
        seen.add(long)
    assert len(seen) >= 5
    t = ds[0]
    pad_value = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(t["image"][:, -1, -1].numpy(), pad_value, rtol=1e-5)
    assert t["mask"][-1, -1] == 255
    # the official long-side rule on Cityscapes' size: scale 0.7 -> 1434 x 717
    assert SegmentationDataset.resized_shape(1024, 2048, int(2048 * 0.7 + 0.5)) == (717, 1434)
    assert SegmentationDataset.resized_shape(300, 200, 150) == (150, 100)
    assert SegmentationDataset.resized_shape(300, 199, 150) == (150, 100)  # 99.5 rounds up
    assert SegmentationDataset.resized_shape(199, 300, 150) == (100, 150)


def test_random_crop_positions_cover_the_image(tmp_path):
    yy, xx = np.mgrid[0:30, 0:50]
    rgb = np.dstack([xx * 5, yy * 8, np.full_like(xx, 7)]).astype(np.uint8)  # pixel colour encodes (x, y)
    write_rgb(tmp_path / "img" / "a.png", rgb)
    write_mask(tmp_path / "ann" / "a.png", (xx % 2).astype(np.uint8))
    ds = FolderSegmentation(tmp_path / "img", tmp_path / "ann", ["even", "odd"], train=True, crop_size=(20, 32),
                            scale_range=None, flip=False, seed=1)
    xs, ys = set(), set()
    for epoch in range(300):
        ds.set_epoch(epoch)
        s = ds.load_sample(0)
        x, y = int(s["image"][0, 0, 0]) // 5, int(s["image"][0, 0, 1]) // 8
        np.testing.assert_array_equal(s["image"], rgb[y:y + 20, x:x + 32])
        np.testing.assert_array_equal(s["mask"], xx[y:y + 20, x:x + 32] % 2)
        xs.add(x)
        ys.add(y)
    assert xs == set(range(19)) and ys == set(range(11))  # uniform over all positions, both ends included


def test_official_scale_draw_and_crop_positions():
    ds = SegmentationDataset([], classes=["a"], train=True)
    rng = np.random.default_rng(0)
    draws = {ds.draw_scale(rng) for _ in range(2000)}
    assert draws == {0.5 + k / 10.0 for k in range(17)}  # 0.5 + randint(0, 16) / 10, both ends included
    cont = SegmentationDataset([], classes=["a"], train=True, scale_range=(0.75, 1.25), scale_step=None)
    vals = [cont.draw_scale(rng) for _ in range(200)]
    assert min(vals) >= 0.75 and max(vals) <= 1.25 and len(set(vals)) == 200


def test_determinism_seed_and_epoch(tmp_path):
    blocky_pair(tmp_path)
    kw = dict(train=True, crop_size=(32, 48), base_size=100)
    a = FolderSegmentation(tmp_path / "img", tmp_path / "ann", list("abcde"), seed=11, **kw)
    b = FolderSegmentation(tmp_path / "img", tmp_path / "ann", list("abcde"), seed=11, **kw)
    c = FolderSegmentation(tmp_path / "img", tmp_path / "ann", list("abcde"), seed=12, **kw)
    sa, sb = a[0], b[0]
    assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["mask"], sb["mask"])
    assert a.load_sample(0)["params"] == b.load_sample(0)["params"]
    assert any(a.rng_for(0).integers(1 << 30) != c.rng_for(0).integers(1 << 30) for _ in range(1))
    assert not torch.equal(sa["image"], c[0]["image"])  # another seed, another augmentation
    params = []
    for e in range(4):
        a.set_epoch(e)
        params.append(a.load_sample(0)["params"])
    assert len({repr(p) for p in params}) > 1  # each epoch draws afresh
    a.set_epoch(0)
    assert torch.equal(a[0]["mask"], sa["mask"])


# -------------------------------------------------------------------------------------- folder / list
def test_folder_dataset_matches_stems_and_label_map(tmp_path):
    for stem in ("x1", "x2"):
        write_rgb(tmp_path / "images" / f"{stem}.jpg", np.zeros((8, 12, 3), np.uint8))
        write_mask(tmp_path / "masks" / f"{stem}_mask.png", np.array([[10, 20, 255, 10] * 3] * 8))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    ds = FolderSegmentation(tmp_path / "images", tmp_path / "masks", ["bg", "fg"], mask_suffix="_mask",
                            label_map={10: 0, 20: 1}, train=False)
    assert len(ds) == 2 and [it.name for it in ds.items] == ["x1", "x2"]
    assert ds[0]["mask"][0, :4].tolist() == [0, 1, 255, 0]
    no_masks = FolderSegmentation(tmp_path / "images", None, ["bg", "fg"], train=False)
    assert "mask" not in no_masks[1] and no_masks[1]["name"] == "x2"


def test_list_dataset_cityscapes_default_and_custom(tmp_path):
    cityscapes_fixture(tmp_path)
    lines = ["# image label", "leftImg8bit/train/aachen/aachen_000000_000000_leftImg8bit.png "
             "gtFine/train/aachen/aachen_000000_000000_gtFine_labelIds.png", "",
             "leftImg8bit/train/bochum/bochum_000000_000000_leftImg8bit.png\t"
             "gtFine/train/bochum/bochum_000000_000000_gtFine_labelIds.png"]
    (tmp_path / "train.lst").write_text("\n".join(lines) + "\n")
    ds = ListSegmentation(tmp_path, "train.lst", train=False)  # relative to root
    assert len(ds) == 2 and ds.classes == CITYSCAPES_CLASSES
    assert ds[1]["mask"][10, 0] == 0 and ds[1]["mask"][5, 0] == 13  # label ids mapped
    test_list = tmp_path / "test.lst"
    test_list.write_text("leftImg8bit/train/aachen/aachen_000000_000001_leftImg8bit.png\n")
    t = ListSegmentation(tmp_path, test_list, train=False)
    assert "mask" not in t[0] and t[0]["image"].shape == (3, 16, 32)
    # own classes: no mapping, the raw values must already be class indices
    write_mask(tmp_path / "own" / "m.png", np.array([[0, 1], [2, 255]]))
    write_rgb(tmp_path / "own" / "i.png", np.zeros((2, 2, 3)))
    (tmp_path / "own.lst").write_text("own/i.png own/m.png\n")
    own = ListSegmentation(tmp_path, tmp_path / "own.lst", classes=["a", "b", "c"], train=False)
    assert own[0]["mask"].tolist() == [[0, 1], [2, 255]]


# --------------------------------------------------------------------------------------------- errors
def test_errors_name_the_file(tmp_path):
    cityscapes_fixture(tmp_path)
    gone = tmp_path / "gtFine" / "train" / "bochum" / "bochum_000000_000000_gtFine_labelIds.png"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(gone))):
        CityscapesSegmentation(tmp_path, "train", train=False)
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        CityscapesSegmentation(tmp_path, "val", train=False)

    root = tmp_path / "f"
    classes = [f"c{i}" for i in range(19)]
    write_rgb(root / "img" / "a.png", np.zeros((4, 6, 3)))
    write_mask(root / "ann" / "a.png", np.array([[0, 18, 255, 42, 3, 3]] * 4))
    ds = FolderSegmentation(root / "img", root / "ann", classes, train=False)
    msg = f"mask {root / 'ann' / 'a.png'} has value 42, expected 0..18 or 255"
    with pytest.raises(ValueError, match=re.escape(msg)):
        ds[0]
    # Cityscapes label ids stop at 33
    write_mask(root / "ann" / "a.png", np.array([[7, 40, 7, 7, 7, 7]] * 4))
    cs = FolderSegmentation(root / "img", root / "ann", CITYSCAPES_CLASSES, label_map="cityscapes", train=False)
    with pytest.raises(ValueError, match=r"a\.png has value 40, expected one of 0\.\.33, 255"):
        cs[0]
    # size mismatch names both files
    write_mask(root / "ann" / "a.png", np.zeros((5, 6)))
    with pytest.raises(ValueError, match=r"img/a\.png is 4x6 but mask .*ann/a\.png is 5x6"):
        ds[0]
    # a colour mask
    write_rgb(root / "ann" / "a.png", np.dstack([np.zeros((4, 6)), np.ones((4, 6)), np.zeros((4, 6))]))
    with pytest.raises(ValueError, match=r"a\.png is a colour image"):
        ds[0]
    # unreadable image and mask
    (root / "img" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=re.escape(str(root / "img" / "a.png"))):
        ds[0]
    write_rgb(root / "img" / "a.png", np.zeros((4, 6, 3)))
    (root / "ann" / "a.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=re.escape(f"mask file {root / 'ann' / 'a.png'} unreadable")):
        ds[0]
    # missing mask for an image, empty and missing folders
    write_rgb(root / "img" / "b.png", np.zeros((4, 6, 3)))
    with pytest.raises(FileNotFoundError, match=re.escape(f"mask file {root / 'ann' / 'b.png'} not found")):
        FolderSegmentation(root / "img", root / "ann", classes, train=False)
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"image folder {root / 'empty'} holds no images")):
        FolderSegmentation(root / "empty", root / "ann", classes, train=False)
    with pytest.raises(FileNotFoundError, match="mask folder .*nowhere not found"):
        FolderSegmentation(root / "img", root / "nowhere", classes, train=False)


def test_list_file_errors(tmp_path):
    write_rgb(tmp_path / "i.png", np.zeros((2, 2, 3)))
    write_mask(tmp_path / "m.png", np.zeros((2, 2)))
    bad = tmp_path / "bad.lst"
    bad.write_text("i.png m.png\ni.png m.png extra\n")
    with pytest.raises(ValueError, match=re.escape(f"list file {bad} line 2: expected")):
        ListSegmentation(tmp_path, bad, train=False)
    bad.write_text("i.png m.png\ni.png\n")
    with pytest.raises(ValueError, match="line 2: mixes lines"):
        ListSegmentation(tmp_path, bad, train=False)
    bad.write_text("i.png missing.png\n")
    with pytest.raises(FileNotFoundError, match=re.escape(f"mask file {tmp_path / 'missing.png'} not found")):
        ListSegmentation(tmp_path, bad, train=False)
    bad.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="lists no samples"):
        ListSegmentation(tmp_path, bad, train=False)
    with pytest.raises(FileNotFoundError, match="list file nope.lst not found"):
        ListSegmentation(tmp_path, "nope.lst", train=False)


# ------------------------------------------------------------------------------------------ synthetic
def read_dir(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(root.rglob("*.png"))}


def test_synthetic_cityscapes_layout_mapping_and_seeds(tmp_path):
    a = make_synthetic_cityscapes(tmp_path / "a", split="train", num_images=6, image_size=(64, 128), seed=0)
    files = read_dir(a)
    assert len(files) == 12
    pattern = re.compile(r"(leftImg8bit|gtFine)/train/(\w+)/\2_000000_\d{6}_(leftImg8bit|gtFine_labelIds)\.png")
    assert all(pattern.fullmatch(k) for k in files), sorted(files)
    assert len({k.split("/")[2] for k in files}) == 3  # three cities
    labels = np.concatenate([v.ravel() for k, v in files.items() if k.startswith("gtFine")])
    assert set(np.unique(labels).tolist()) <= set(SYNTHETIC_LABEL_IDS) | {1}
    assert {7, 11, 26}.issubset(set(np.unique(labels).tolist()))
    ds = CityscapesSegmentation(a, "train", train=True, crop_size=(48, 96), base_size=128, seed=0)
    assert len(ds) == 6
    s = ds[0]
    assert s["image"].shape == (3, 48, 96)
    assert set(torch.unique(s["mask"]).tolist()) <= {0, 1, 2, 5, 7, 8, 10, 11, 13, 255}
    full = CityscapesSegmentation(a, "train", train=False)[1]
    assert full["mask"].shape == (64, 128) and (full["mask"] != 255).float().mean() > 0.7
    # reproducible by seed; another seed or split gives other scenes
    again = read_dir(make_synthetic_cityscapes(tmp_path / "b", split="train", num_images=6, image_size=(64, 128)))
    assert files.keys() == again.keys() and all(np.array_equal(files[k], again[k]) for k in files)
    other = read_dir(make_synthetic_cityscapes(tmp_path / "c", split="train", num_images=6, image_size=(64, 128),
                                               seed=1))
    assert not any(np.array_equal(files[k], other[k]) for k in files if "leftImg8bit" in k)
    val = make_synthetic_cityscapes(tmp_path / "a", split="val", num_images=2, image_size=(64, 128))
    assert len(CityscapesSegmentation(val, "val", train=False)) == 2
    out = preview_grid(a, "train", tmp_path / "preview.png", n=4)
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] >= 2 * 64 and grid.shape[1] >= 2 * 2 * 128


def test_synthetic_scene_content_statistics():
    from hrnet.synthetic.streets import render_street_scene

    counts = np.zeros(256)
    present = np.zeros(256)
    for i in range(12):
        img, lab = render_street_scene(np.random.default_rng((5, i)), (96, 192))
        assert img.shape == (96, 192, 3) and img.dtype == np.uint8 and lab.shape == (96, 192)
        b = np.bincount(lab.ravel(), minlength=256)
        counts += b
        present += b > 0
    frac = counts / counts.sum()
    for label_id in (7, 11, 26):  # road, building, car in (almost) every scene, with large areas
        assert present[label_id] >= 10 and frac[label_id] > 0.08
    for label_id in (8, 17, 20, 21, 23, 24):  # sidewalk, pole, sign, vegetation, sky, person: common
        assert present[label_id] >= 5, label_id
    # not one colour per class: the pixels of a class spread over many colours
    img, lab = render_street_scene(np.random.default_rng(3), (96, 192))
    road = img[lab == 7].astype(float)
    assert road.std(0).mean() > 4
