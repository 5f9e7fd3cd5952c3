"""Offline data and training for the demo: digits, real photo crops, a small CNN.

Everything here ships inside installed packages (scikit-learn's ``digits`` and its
two sample photographs), so the demo downloads nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch loads lazily: the CLI imports this module at start
    from torch import nn

__all__ = [
    "QUICK_EPSILONS",
    "QUICK_TEMPERATURES",
    "DemoData",
    "DigitsSplits",
    "calibrate_demo",
    "digits_demo",
    "digits_splits",
    "photo_crops",
    "stream",
    "train_classifier",
]

#: The demo's quick calibration grid (``full_grid=False``): 4 temperatures x 5 ε.
QUICK_TEMPERATURES = (1.0, 10.0, 100.0, 1000.0)
QUICK_EPSILONS = (0.0, 0.0007, 0.0014, 0.0021, 0.0028)


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
    import torch
    import torch.nn.functional as F

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


@dataclass
class DemoData:
    """Images of one demo scenario, float32 ``(N, C, H, W)`` in [0, 1]."""

    name: str
    model: Any
    model_ref: str
    normalization: Any
    x_val: np.ndarray
    x_prod: np.ndarray
    ood_val: dict[str, np.ndarray]
    ood_spike: np.ndarray
    spike_source: str
    notes: list[str] = field(default_factory=list)


def digits_demo(seed: int = 0, progress: Callable[[int], None] | None = None) -> DemoData:
    """The offline demo scenario: a small CNN trained on digits, real photo crops as OOD.

    Validation OOD: Gaussian and uniform noise and photo crops; the production spike:
    other crops of the same photos. ``progress`` is called with 1 after each of the
    15 training epochs.
    """
    import torch

    from odin_monitor.models import small_cnn_digits
    from odin_monitor.synthetic import gaussian_noise, uniform_noise

    splits = digits_splits(seed)
    torch.manual_seed(seed)
    model = train_classifier(
        small_cnn_digits(), splits.x_train, splits.y_train, epochs=15, seed=seed, progress=progress
    )
    with torch.no_grad():
        acc = float(
            (model(torch.from_numpy(splits.x_val)).argmax(1).numpy() == splits.y_val).mean()
        )
    shape = (1, 8, 8)
    return DemoData(
        name="odin-digits",
        model=model,
        model_ref="odin_monitor.models:small_cnn_digits",
        normalization=None,
        x_val=splits.x_val,
        x_prod=splits.x_prod,
        ood_val={
            "gaussian": gaussian_noise(150, shape, seed),
            "uniform": uniform_noise(150, shape, seed + 1),
            "photos": photo_crops(300, (8, 8), 1, seed=seed + 2),
        },
        ood_spike=photo_crops(600, (8, 8), 1, seed=seed + 1000),
        spike_source="crops of scikit-learn's sample photos (other crops than validation)",
        notes=[f"digits classifier validation accuracy {100 * acc:.1f}%"],
    )


def calibrate_demo(
    data: DemoData,
    *,
    full_grid: bool = False,
    progress: Callable[[int], None] | None = None,
    id_name: str | None = None,
) -> Any:
    """Calibrate ODIN on a demo scenario as the demo does; returns the ``CalibrationResult``.

    The quick 4x5 grid (:data:`QUICK_TEMPERATURES` x :data:`QUICK_EPSILONS`) or the
    paper's 10x21 one; ``progress`` is called with the images done
    (``2 * len(x_val) + len(OOD validation)`` in all).
    """
    from odin_monitor import calibrate
    from odin_monitor.calibration import PAPER_EPSILONS, PAPER_TEMPERATURES

    return calibrate(
        data.model,
        data.x_val,
        data.ood_val,
        normalization=data.normalization,
        temperatures=PAPER_TEMPERATURES if full_grid else QUICK_TEMPERATURES,
        epsilons=PAPER_EPSILONS if full_grid else QUICK_EPSILONS,
        batch_size=256,
        progress=progress,
        id_name=id_name or f"{data.name} validation",
    )


def stream(
    data: DemoData, n_batches: int, batch_size: int, spike_from: int, spike_share: float, seed: int
) -> list[np.ndarray]:
    """Production batches: in-distribution images, then a share of OOD from ``spike_from`` on."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        batch = data.x_prod[rng.choice(len(data.x_prod), batch_size, replace=True)].copy()
        if b >= spike_from:
            k = round(spike_share * batch_size)
            batch[:k] = data.ood_spike[rng.choice(len(data.ood_spike), k, replace=False)]
            batch = batch[rng.permutation(batch_size)]
        out.append(batch)
    return out
