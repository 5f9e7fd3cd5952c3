"""Preprocessing: encoded image files → the model's input, one implementation, hostile bytes."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from odin_monitor.data import load_folder
from odin_monitor.preprocess import (
    ImageDecodeError,
    Preprocessing,
    decode_image,
    fit_geometry,
    preprocess_images,
)

SPEC = Preprocessing(size=(8, 8))


def encode(pixels: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **kw)
    return buf.getvalue()


def rgb(h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_at_the_model_size_is_exactly_pixels_over_255():
    pixels = rgb()
    got = preprocess_images([encode(pixels)], SPEC)[0][0]
    np.testing.assert_array_equal(got, pixels.transpose(2, 0, 1).astype(np.float32) / 255)


def test_exact_resize_is_torch_bilinear_antialiased_on_the_decoded_pixels():
    pixels = rgb(20, 12)
    got, resized = preprocess_images([encode(pixels)], SPEC)
    x = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    want = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_array_equal(got[0], want[0].clamp(0, 1).numpy())
    assert resized == {(20, 12): 1}


def test_shorter_side_crop_keeps_the_centre():
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, 4:12] = 255  # a white centre band as wide as the crop
    spec = Preprocessing(size=(8, 8), resize="shorter_side_crop", interpolation="nearest")
    got = preprocess_images([encode(pixels)], spec)[0][0]
    assert got.shape == (3, 8, 8) and got.min() == 1.0


def test_no_resize_refuses_another_size():
    with pytest.raises(ImageDecodeError, match=r"expected a 8x8 image .* got 9x8"):
        preprocess_images([encode(rgb(9, 8))], Preprocessing(size=(8, 8), resize="none"))


def test_every_accepted_format_decodes_to_the_same_lossless_pixels():
    pixels = rgb()
    gif = Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    want_gif = np.asarray(gif.convert("RGB")).transpose(2, 0, 1) / np.float32(255)
    buf = io.BytesIO()
    gif.save(buf, "GIF")
    for data, want in [
        (encode(pixels, "PNG"), pixels.transpose(2, 0, 1) / np.float32(255)),
        (encode(pixels, "BMP"), pixels.transpose(2, 0, 1) / np.float32(255)),
        (encode(pixels, "WEBP", lossless=True), pixels.transpose(2, 0, 1) / np.float32(255)),
        (buf.getvalue(), want_gif),
    ]:
        np.testing.assert_array_equal(preprocess_images([data], SPEC)[0][0], want)
    smooth = np.repeat(np.linspace(0, 255, 8, dtype=np.uint8)[None, :, None], 8, 0).repeat(3, 2)
    jpeg = preprocess_images([encode(smooth, "JPEG", quality=95)], SPEC)[0][0]
    assert np.abs(jpeg - smooth.transpose(2, 0, 1) / 255).max() < 0.05  # lossy, but close


def test_gray_alpha_palette_and_16_bit_follow_the_spec():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    got = preprocess_images([encode(grey)], SPEC)[0][0]
    np.testing.assert_array_equal(got, np.repeat(grey[None] / np.float32(255), 3, axis=0))
    # RGBA: transparent pixels composite onto white by default, black on request.
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0
    assert preprocess_images([encode(rgba)], SPEC)[0].min() == 1.0
    black = Preprocessing(size=(8, 8), alpha="black")
    assert preprocess_images([encode(rgba)], black)[0].max() == 0.0
    with pytest.raises(ImageDecodeError, match="transparency"):
        preprocess_images([encode(rgba)], Preprocessing(size=(8, 8), alpha="refuse"))
    # 16-bit grey: divided by 65535, never clipped to 8 bits.
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    got = preprocess_images([encode(deep)], Preprocessing(size=(8, 8), mode="L"))[0][0, 0]
    np.testing.assert_allclose(got, deep / 65535, atol=1e-7)
    with pytest.raises(ImageDecodeError, match="16-bit"):
        preprocess_images([encode(deep)], Preprocessing(size=(8, 8), high_bit_depth="refuse"))


def test_exif_orientation_is_applied():
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255  # left half white
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=100)
    out = decode_image(buf.getvalue(), Preprocessing(size=(8, 4)))
    assert out.shape == (8, 4, 3)  # portrait after rotation
    assert out[:4].mean() > 0.9 and out[4:].mean() < 0.1  # the white half is on top


def test_bad_rows_are_all_named_and_nothing_is_scored():
    good = encode(rgb())
    with pytest.raises(ImageDecodeError) as info:
        preprocess_images([good, b"", b"hello", good[:40], "%%%"], SPEC)
    message = str(info.value)
    assert message.startswith("4 of 5 images cannot be used, nothing was scored")
    for row in (
        "row 1: expected an encoded image, but got 0 bytes",
        "row 2: expected an image file",
        "row 3: the PNG file is truncated or corrupt",
        "row 4: expected the image file's bytes or their base64",
    ):
        assert row in message
    with pytest.raises(ImageDecodeError, match="the image column is empty"):
        preprocess_images([], SPEC)


def test_limits_are_checked_before_decoding():
    with pytest.raises(ImageDecodeError, match="at most 100 bytes"):
        preprocess_images([encode(rgb())], Preprocessing(size=(8, 8), max_bytes=100))
    # A valid PNG header declaring 100,000 x 100,000 pixels: refused without decoding.
    import zlib

    big = encode(np.zeros((1, 1, 3), np.uint8))
    at = big.index(b"IHDR")
    body = b"IHDR" + (100_000).to_bytes(4, "big") * 2 + big[at + 12 : at + 17]
    forged = big[: at - 4] + (13).to_bytes(4, "big") + body
    forged += zlib.crc32(body).to_bytes(4, "big") + big[at + 21 :]
    with pytest.raises(ImageDecodeError, match=r"decompression bomb|at most 40,000,000 pixels"):
        preprocess_images([forged], SPEC)


def test_unsupported_formats_are_refused():
    tiff = io.BytesIO()
    Image.fromarray(rgb()).save(tiff, "TIFF")
    with pytest.raises(ImageDecodeError, match="expected an image file"):
        preprocess_images([tiff.getvalue()], SPEC)


def test_base64_text_decodes_like_bytes():
    import base64

    data = encode(rgb())
    a = preprocess_images([data], SPEC)[0]
    b = preprocess_images([base64.b64encode(data).decode()], SPEC)[0]
    np.testing.assert_array_equal(a, b)


def test_folder_and_bytes_give_the_same_tensor_bit_for_bit(tmp_path):
    spec = Preprocessing(size=(8, 8), interpolation="bicubic")
    files = []
    for i, (h, w) in enumerate([(8, 8), (20, 13), (5, 30)]):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encode(rgb(h, w, seed=i)))
        files.append(path)
    lines: list[str] = []
    from_folder = load_folder(tmp_path, preprocessing=spec, report=lines.append)
    from_bytes, _ = preprocess_images([f.read_bytes() for f in files], spec)
    assert from_folder.dtype == from_bytes.dtype == np.float32
    np.testing.assert_array_equal(from_folder, from_bytes)
    assert lines and "resized 2 of 3 images" in lines[0] and "20x13: 1" in lines[0]


def test_spec_round_trips_and_refuses_hostile_values():
    spec = Preprocessing(size=(32, 32), interpolation="area", antialias=False, alpha="black")
    assert Preprocessing.from_dict(spec.to_dict()) == spec
    for bad in [
        {"size": [32, 32], "interpolation": "lanczos"},
        {"size": [32, 32], "code": "__import__('os')"},
        {"size": [0, 32]},
        {"size": [True, 32]},
        {"size": [32, 32], "max_pixels": 2**40},
        {"size": [32, 32], "antialias": "yes"},
    ]:
        with pytest.raises(ValueError):
            Preprocessing.from_dict(bad)


def test_fit_geometry_never_leaves_the_unit_interval():
    x = np.zeros((9, 9, 1), np.float32)
    x[::2, ::2] = 1.0  # a checkerboard: bicubic overshoots without the clip
    out = fit_geometry(x, Preprocessing(size=(4, 4), mode="L", interpolation="bicubic"))
    assert out.min() >= 0.0 and out.max() <= 1.0


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip, insert, delete or truncate a few bytes (header bytes included)."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        op = int(rng.integers(0, 4))
        pos = int(rng.integers(0, len(buf))) if buf else 0
        if op == 0 and buf:
            buf[pos] = int(rng.integers(0, 256))
        elif op == 1:
            buf[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8))
        elif op == 2 and buf:
            del buf[pos : pos + int(rng.integers(1, 8))]
        elif buf:
            del buf[pos:]
    return bytes(buf)


def test_fuzz_mutated_jpeg_and_png_never_crash_or_hang():
    """1,200 mutated files: each decodes to a valid tensor or raises ImageDecodeError."""
    rng = np.random.default_rng(2026)
    seeds = [encode(rgb(16, 16, 1), "PNG"), encode(rgb(16, 16, 2), "JPEG", quality=80),
             encode(rgb(12, 20, 3).mean(axis=2).astype(np.uint8), "PNG")]  # fmt: skip
    outcomes = {"ok": 0, "refused": 0}
    slowest = 0.0
    for i in range(1200):
        data = mutate(seeds[i % len(seeds)], rng)
        t0 = time.perf_counter()
        try:
            x, _ = preprocess_images([data], SPEC)
        except ImageDecodeError:
            outcomes["refused"] += 1
        else:
            assert x.shape == (1, 3, 8, 8) and np.isfinite(x).all()
            assert x.min() >= 0.0 and x.max() <= 1.0
            outcomes["ok"] += 1
        slowest = max(slowest, time.perf_counter() - t0)
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes
    assert slowest < 10.0, f"one file took {slowest:.1f} s: a hang"
