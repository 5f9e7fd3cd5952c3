"""Image loading: arrays, folders (resize / crop), torchvision roots and bad files."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from odin_monitor import DataLoadError, InputValidationError
from odin_monitor.data import (
    load_folder,
    load_images,
    load_torchvision,
    read_array,
    to_float_nchw,
)


def test_uint8_nhwc_npz_and_float_nchw_npy(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=raw, labels=np.arange(4))
    x = load_images(tmp_path / "a.npz")
    assert x.shape == (4, 3, 5, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[1, 2, 3, 4], raw[1, 3, 4, 2] / 255.0, rtol=1e-6)
    np.save(tmp_path / "b.npy", x)
    np.testing.assert_array_equal(load_images(tmp_path / "b.npy", limit=2), x[:2])


def test_npz_key_choice(tmp_path):
    np.savez(
        tmp_path / "two.npz", a=np.zeros((1, 2, 2, 3), np.uint8), b=np.zeros((1, 2, 2, 3), np.uint8)
    )
    with pytest.raises(DataLoadError, match=r"holds \['a', 'b'\].*key="):
        load_images(tmp_path / "two.npz")
    assert load_images(tmp_path / "two.npz", key="b").shape == (1, 3, 2, 2)


def test_folder_resize_and_crop(tmp_path):
    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 50), (20, 16), (32, 32)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(tmp_path / "gray.jpg")
    resized = load_folder(tmp_path, size=(32, 32), fit="resize")
    assert resized.shape == (4, 3, 32, 32)
    cropped = load_images(tmp_path, size=(32, 32), fit="crop", seed=1)
    assert cropped.shape == (4, 3, 32, 32)
    # The 32x32 image is taken as is by both.
    np.testing.assert_array_equal(resized[2], cropped[2])
    # A crop is a window of the original pixels.
    big = np.asarray(Image.open(tmp_path / "0.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    windows = [big[:, t : t + 32, s : s + 32] for t in range(40 - 31) for s in range(50 - 31)]
    assert any(np.array_equal(w, cropped[0]) for w in windows)
    np.testing.assert_array_equal(cropped, load_images(tmp_path, size=(32, 32), fit="crop", seed=1))


def test_folder_errors(tmp_path):
    with pytest.raises(DataLoadError, match="found none"):
        load_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataLoadError, match=r"broken\.png"):
        load_folder(tmp_path)
    with pytest.raises(InputValidationError, match="fit="):
        load_folder(tmp_path, fit="stretch")


def test_file_errors(tmp_path):
    with pytest.raises(DataLoadError, match="nothing is there"):
        load_images(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataLoadError, match=r"\.npz or \.npy"):
        load_images(tmp_path / "x.txt")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataLoadError, match="Cannot read"):
        load_images(tmp_path / "bad.npz")
    np.save(tmp_path / "big.npy", np.full((2, 3, 4, 4), 2.0, np.float32))
    with pytest.raises(DataLoadError, match="image 0"):
        load_images(tmp_path / "big.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 4, 4), np.float32))
    with pytest.raises(DataLoadError, match="holds none"):
        load_images(tmp_path / "empty.npy")
    np.save(tmp_path / "int.npy", np.zeros((1, 3, 4, 4), np.int32))
    with pytest.raises(DataLoadError, match="dtype int32"):
        load_images(tmp_path / "int.npy")


def test_to_float_nchw_rank_errors():
    assert to_float_nchw(np.zeros((2, 4, 4), np.uint8)).shape == (2, 1, 4, 4)
    with pytest.raises(InputValidationError, match=r"\(N, C, H, W\)"):
        to_float_nchw(np.zeros((4, 4), np.float32))


def test_torchvision_root_without_data_says_how(tmp_path):
    with pytest.raises(DataLoadError, match="download=True"):
        load_torchvision("CIFAR10", tmp_path)
    with pytest.raises(DataLoadError, match="torchvision dataset name"):
        load_torchvision("NoSuchSet", tmp_path)


def _forged_npy_bytes(n_images: int) -> bytes:
    """A .npy whose header declares ``n_images`` uint8 8x8x3 images, followed by 100 bytes."""
    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (n_images, 8, 8, 3)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + bytes(100)


def test_truncated_npz_is_a_data_load_error(tmp_path):
    np.savez_compressed(tmp_path / "ok.npz", images=np.zeros((50, 8, 8, 3), np.uint8))
    data = (tmp_path / "ok.npz").read_bytes()
    for cut in (1, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(DataLoadError, match=r"cut\.npz.*truncated or corrupt"):
            load_images(tmp_path / "cut.npz")
    # Central directory intact, compressed data damaged: a CRC/zlib error, same class.
    start = data.index(b"images.npy") + 200
    damaged = data[:start] + bytes(b ^ 0xFF for b in data[start : start + 20]) + data[start + 20 :]
    (tmp_path / "damaged.npz").write_bytes(damaged)
    with pytest.raises(DataLoadError, match=r"damaged\.npz"):
        load_images(tmp_path / "damaged.npz")


@pytest.mark.parametrize("name", ["zero.npz", "zero.npy"])
def test_zero_byte_file_is_a_data_load_error_not_eof(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataLoadError, match=r"empty \(0 bytes\)"):
        load_images(tmp_path / name)


def test_header_declaring_1e11_images_is_refused_before_allocating(tmp_path):
    (tmp_path / "huge.npy").write_bytes(_forged_npy_bytes(10**11))
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("images.npy", _forged_npy_bytes(10**11))
    for name in ("huge.npy", "huge.npz"):
        with pytest.raises(DataLoadError, match=r"19,200,000,000,000 bytes.*only 100 follow"):
            load_images(tmp_path / name)


def test_declared_size_is_checked_exactly_against_the_data(tmp_path):
    # 100 data bytes hold 100 // 192 = 0 full images: one image is already too many...
    (tmp_path / "one.npy").write_bytes(_forged_npy_bytes(1))
    with pytest.raises(DataLoadError, match=r"192 bytes.*only 100 follow"):
        read_array(tmp_path / "one.npy")
    # ...while a genuine file is read as numpy reads it.
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "ok.npy", x)
    np.testing.assert_array_equal(read_array(tmp_path / "ok.npy"), np.load(tmp_path / "ok.npy"))


def test_size_cap_counts_float32_bytes(tmp_path):
    np.save(tmp_path / "ten.npy", np.zeros((10,), np.uint8))
    assert read_array(tmp_path / "ten.npy", max_bytes=40).shape == (10,)
    with pytest.raises(DataLoadError, match=r"at most 39 bytes.*needs 40.*Split"):
        read_array(tmp_path / "ten.npy", max_bytes=39)


def test_pickled_arrays_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", images=np.array([{"a": 1}], dtype=object))
    for name in ("obj.npy", "obj.npz"):
        with pytest.raises(DataLoadError, match="Python objects"):
            load_images(tmp_path / name)


def test_unreadable_file_is_a_data_load_error(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.zeros((1, 4, 4, 3), np.uint8))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.npy"))

    monkeypatch.setattr("builtins.open", denied)  # chmod cannot stop root
    with pytest.raises(DataLoadError, match=r"Cannot read .*x\.npy.*Permission denied"):
        load_images(tmp_path / "x.npy")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height 8-bit gray pixels, with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(1 + width) * 4)  # a few rows; the rest would be a bomb
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_decompression_bomb_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))  # 10^10 pixels
    with pytest.raises(DataLoadError, match=r"bomb\.png: .*decompression bomb"):
        load_folder(tmp_path)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global is read, never changed


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [40, 50])  # 1600 px: Pillow only warns; 2500 px: it raises
def test_image_over_max_image_pixels_is_refused_not_only_warned(tmp_path, monkeypatch, side):
    from PIL import Image

    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    size = rf"({side}x{side}|{side**2})"
    with pytest.raises(DataLoadError, match=rf"big\.png: .*(bomb|at most 1,000 pixels).*{size}"):
        load_folder(tmp_path)


def _gradient16(h: int = 16, w: int = 16) -> np.ndarray:
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_maps_to_value_over_65535_not_clipped(tmp_path, channels):
    from PIL import Image

    g = _gradient16()
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = load_folder(tmp_path, channels=channels)
    assert x.shape == (1, channels, 16, 16) and x.dtype == np.float32
    expected = g.astype(np.float64) / 65535.0  # independent of the loader
    for c in range(channels):
        np.testing.assert_allclose(x[0, c], expected, rtol=0, atol=1e-7)


def test_16bit_png_resized_matches_its_8bit_twin(tmp_path):
    from PIL import Image

    g = _gradient16(32, 32)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(g).save(tmp_path / "a" / "g16.png")
    Image.fromarray((g.astype(np.float64) / 257).round().astype(np.uint8)).save(
        tmp_path / "b" / "g8.png"
    )
    x16 = load_folder(tmp_path / "a", size=(8, 8))
    x8 = load_folder(tmp_path / "b", size=(8, 8))
    np.testing.assert_allclose(x16, x8, atol=2 / 255)
    cropped = load_folder(tmp_path / "a", size=(8, 8), fit="crop", seed=3)
    windows = [g[t : t + 8, s : s + 8] / 65535.0 for t in range(25) for s in range(25)]
    assert any(np.allclose(w, cropped[0, 0], atol=1e-7) for w in windows)


def test_8bit_folder_pixels_unchanged_by_the_16bit_path(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(_gradient16(6, 5)).save(tmp_path / "b.png")
    x = load_folder(tmp_path)
    np.testing.assert_array_equal(x[0], to_float_nchw(rgb[None])[0])
    np.testing.assert_allclose(x[1, 0], _gradient16(6, 5) / 65535.0, atol=1e-7)


def test_16bit_colour_png_keeps_its_scale(tmp_path):
    # Pillow cannot write 16-bit RGB, so the PNG is assembled by hand (colour type 2).
    px = np.array([[[65535, 0, 32768], [1000, 20000, 50000]]], dtype=">u2")

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + px[0].tobytes())
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    (tmp_path / "rgb16.png").write_bytes(png)
    x = load_folder(tmp_path)
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), px / 65535.0, atol=1 / 255)
