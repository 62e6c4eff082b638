"""Image reading (files.read_image): the formats real folders hold, and files cut short."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hrnet.files import read_image, truncation


def _rgb(seed: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_grey_rgba_palette_and_16_bit_images_read_as_rgb(tmp_path: Path) -> None:
    rgb = _rgb()
    grey = rgb[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    assert np.array_equal(read_image(str(tmp_path / "grey.png")), np.stack([grey] * 3, axis=-1))
    alpha = np.full(grey.shape, 7, np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(str(tmp_path / "rgba.png")), rgb)  # alpha dropped, colours kept
    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], np.uint8)
    index = (grey % 3).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.reshape(-1).tolist())
    image.save(tmp_path / "palette.png")
    assert np.array_equal(read_image(str(tmp_path / "palette.png")), palette[index])
    deep = (grey.astype(np.uint16) << 8) | 0xAB  # 16-bit: the high byte is what 8 bits keep
    cv2.imwrite(str(tmp_path / "deep.png"), np.stack([deep] * 3, axis=-1))
    assert np.array_equal(read_image(str(tmp_path / "deep.png")), np.stack([grey] * 3, axis=-1))


@pytest.mark.parametrize("suffix, progressive", [(".jpg", False), (".jpg", True), (".png", False)])
def test_truncated_files_are_named_not_half_decoded(tmp_path: Path, suffix: str, progressive: bool) -> None:
    path = tmp_path / f"photo{suffix}"
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    cv2.imwrite(str(path), _rgb(shape=(120, 160)), params)
    whole = path.read_bytes()
    assert truncation(whole) is None and read_image(str(path)).shape == (120, 160, 3)
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ValueError, match=f"image file {path} is truncated"):
        read_image(str(path))


def test_what_opencv_alone_would_do_with_a_truncated_jpeg(tmp_path: Path) -> None:
    """The reason for the check: OpenCV returns a full-size image for a JPEG cut in half."""
    path = tmp_path / "cut.jpg"
    cv2.imwrite(str(path), _rgb(shape=(120, 160)))
    path.write_bytes(path.read_bytes()[:-600])
    assert cv2.imread(str(path)).shape == (120, 160, 3)
    assert truncation(path.read_bytes()) == "JPEG without its end-of-image marker"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file .*nope.jpg not found"):
        read_image(str(tmp_path / "nope.jpg"))
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="text.jpg unreadable"):
        read_image(str(tmp_path / "text.jpg"))


def test_exif_orientation_is_ignored_as_by_the_official_loaders(tmp_path: Path) -> None:
    """A JPEG tagged "rotate 90" (EXIF orientation 6) is read in its stored pixel frame, the frame COCO and MPII
    annotations are in (the official loaders pass ``cv2.IMREAD_IGNORE_ORIENTATION``); PIL's ``exif_transpose``
    would turn it."""
    from PIL import ImageOps

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    image = read_image(str(tmp_path / "phone.jpg"))
    assert image.shape == (20, 40, 3) and image[:, :10].mean() > 200 and image[:, 20:].mean() < 50
    assert np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "phone.jpg"))).shape == (40, 20, 3)
