"""Benchmark image files: what is written decodes back to the array it came from."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odin_monitor.bench.files import encode_images, load_uint8, noise_uint8, write_image_folder


def test_png_files_decode_to_the_same_pixels_and_land_in_order(tmp_path: Path) -> None:
    pixels = noise_uint8(3, (3, 5, 4), seed=1)
    files = encode_images(pixels, "PNG")
    paths = write_image_folder(files, tmp_path / "img", ".png")
    assert [p.name for p in paths] == ["img-00000.png", "img-00001.png", "img-00002.png"]
    for p, expected in zip(paths, pixels, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), expected)


def test_jpeg_files_are_jpeg_at_the_asked_quality() -> None:
    pixels = noise_uint8(2, (3, 16, 16), seed=2)
    small, large = (encode_images(pixels, "JPEG", quality=q)[0] for q in (20, 95))
    assert small[:3] == large[:3] == b"\xff\xd8\xff" and len(small) < len(large)
    assert Image.open(io.BytesIO(small)).format == "JPEG"


def test_bad_format_or_array_is_refused() -> None:
    with pytest.raises(ValueError, match="Expected a format in"):
        encode_images(noise_uint8(1, (3, 2, 2), 0), "GIF")
    with pytest.raises(ValueError, match="Expected uint8 images"):
        encode_images(np.zeros((1, 2, 2, 3), np.float32))


def test_load_uint8_takes_the_first_images(shared_data: Path) -> None:
    images = load_uint8(shared_data, "cifar10_test_lossless.npz", limit=5)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
