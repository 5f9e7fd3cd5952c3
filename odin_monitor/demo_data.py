"""Offline data and training for the demo: digits, real photo crops, a small CNN.

Everything here ships inside installed packages (scikit-learn's ``digits`` and its
two sample photographs), so the demo downloads nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsSplits", "digits_splits", "photo_crops", "train_classifier"]


@dataclass(frozen=True)
class DigitsSplits:
    """scikit-learn's 8x8 digits as float32 ``(N, 1, 8, 8)`` in [0, 1], split three ways."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_prod: np.ndarray
    y_prod: np.ndarray


def digits_splits(seed: int = 0, n_train: int = 1000, n_val: int = 400) -> DigitsSplits:
    """Shuffle the 1,797 digits and split them into train, validation and "production".

    Example:
        >>> s = digits_splits()
        >>> s.x_train.shape, s.x_val.shape, s.x_prod.shape
        ((1000, 1, 8, 8), (400, 1, 8, 8), (397, 1, 8, 8))
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    a, b = n_train, n_train + n_val
    return DigitsSplits(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


def photo_crops(
    n: int, size: tuple[int, int] = (8, 8), channels: int = 1, seed: int = 0, scale: int = 4
) -> np.ndarray:
    """Random crops of scikit-learn's two sample photographs (a temple, a flower).

    The photos are downscaled ``scale`` times first, so a crop holds a recognisable
    patch of a real scene rather than a few flat pixels.

    Args:
        n: Number of crops.
        size: ``(H, W)`` of each crop.
        channels: 1 (luminance) or 3 (RGB).
        seed: Seed of the crop positions.
        scale: Downscaling factor of the photos before cropping.

    Returns:
        float32 ``(n, channels, H, W)`` in [0, 1].
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = []
    for img in load_sample_images().images:
        pil = Image.fromarray(img)
        pil = pil.resize((pil.width // scale, pil.height // scale), Image.Resampling.BILINEAR)
        if channels == 1:
            pil = pil.convert("L")
        arr = np.asarray(pil, dtype=np.float32) / 255.0
        photos.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    rng = np.random.default_rng(seed)
    h, w = size
    out = np.empty((n, channels, h, w), dtype=np.float32)
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        top = int(rng.integers(0, photo.shape[1] - h + 1))
        left = int(rng.integers(0, photo.shape[2] - w + 1))
        out[i] = photo[:, top : top + h, left : left + w]
    return out


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train a classifier with Adam and cross-entropy; returns it in eval mode.

    Args:
        model: The classifier.
        x: Images ``(N, C, H, W)`` in [0, 1].
        y: Labels ``(N,)``.
        epochs: Passes over the data.
        batch_size: Images per step.
        lr: Adam's learning rate.
        seed: Seed of the shuffling and initial weights' use.
        progress: Called with 1 after each epoch.

    Returns:
        The trained model, in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        if progress is not None:
            progress(1)
    return model.eval()
