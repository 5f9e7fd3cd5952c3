"""Image loading: arrays, folders (resize / crop), torchvision roots and bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from odin_monitor import DataLoadError, InputValidationError
from odin_monitor.data import load_folder, load_images, load_torchvision, to_float_nchw
from odin_monitor.synthetic import gaussian_noise, uniform_noise


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


def test_synthetic_sets_follow_the_paper():
    g = gaussian_noise(200, (3, 16, 16), seed=0)
    u = uniform_noise(200, (3, 16, 16), seed=0)
    # N(0.5, 1) clipped: P(x <= 0) = P(x >= 1) = Φ(-0.5) ≈ 0.3085.
    assert np.mean(g == 0.0) == pytest.approx(0.3085, abs=0.005)
    assert np.mean(g == 1.0) == pytest.approx(0.3085, abs=0.005)
    assert g.mean() == pytest.approx(0.5, abs=0.005)
    assert u.min() >= 0 and u.max() <= 1 and u.mean() == pytest.approx(0.5, abs=0.005)
    assert np.mean(u < 0.25) == pytest.approx(0.25, abs=0.005)
    np.testing.assert_array_equal(g, gaussian_noise(200, (3, 16, 16), seed=0))
    assert not np.array_equal(g, gaussian_noise(200, (3, 16, 16), seed=1))
    with pytest.raises(InputValidationError):
        uniform_noise(0, (3, 4, 4))
