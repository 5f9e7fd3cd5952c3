"""Synthetic OOD sets, made with a seeded generator.

* Gaussian: i.i.d. pixels from N(0.5, 1), clipped to [0, 1] (the paper's);
* Uniform: i.i.d. pixels from U[0, 1] (the paper's);
* Jigsaw: in-distribution images cut into a grid of patches and shuffled — natural
  colours and textures, but no object: the pseudo-OOD set of the ``"jigsaw"``
  calibration strategy (:func:`odin_monitor.calibrate`), which transfers to real
  OOD images where noise does not (docs/RESULTS.md, "Calibration without OOD data").

Both are float32 ``(N, C, H, W)`` in [0, 1], the same layout as every image batch
in this library.
"""

from __future__ import annotations

import numpy as np

from odin_monitor.errors import InputValidationError

__all__ = ["gaussian_noise", "jigsaw", "uniform_noise"]


def _check(n: int, shape: tuple[int, int, int]) -> None:
    if n < 1 or len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise InputValidationError(
            f"Expected n >= 1 images of shape (C, H, W), but got n={n}, shape={shape}."
        )


def gaussian_noise(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``n`` images of N(0.5, 1) noise clipped to [0, 1].

    Example:
        >>> x = gaussian_noise(4, (3, 8, 8), seed=1)
        >>> x.shape, x.dtype, float(x.min()) >= 0.0, float(x.max()) <= 1.0
        ((4, 3, 8, 8), dtype('float32'), True, True)
    """
    _check(n, shape)
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.5, 1.0, (n, *shape)), 0.0, 1.0).astype(np.float32)


def uniform_noise(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``n`` images of U[0, 1] noise.

    Example:
        >>> uniform_noise(2, (1, 4, 4)).shape
        (2, 1, 4, 4)
    """
    _check(n, shape)
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


def jigsaw(images: np.ndarray, grid: int = 4, seed: int = 3) -> np.ndarray:
    """Each image cut into ``grid × grid`` patches, shuffled by a non-identity permutation.

    A border that does not fill a whole patch (``H`` or ``W`` not divisible by ``grid``)
    stays in place. One permutation per image, from ``numpy.random.RandomState(seed)``.

    Args:
        images: float ``(N, C, H, W)`` in [0, 1] (in-distribution images).
        grid: Patches per side (4: 8x8 patches of a 32x32 image).
        seed: Seed of the permutations.

    Returns:
        float32 ``(N, C, H, W)``, the same pixels rearranged.

    Example:
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> y = jigsaw(x, grid=2, seed=0)
        >>> sorted(y.ravel().tolist()) == sorted(x.ravel().tolist()), bool((y != x).any())
        (True, True)
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or grid < 2 or x.shape[2] < grid or x.shape[3] < grid:
        raise InputValidationError(
            f"Expected images (N, C, H, W) with H, W >= grid >= 2, but got shape {x.shape} "
            f"and grid={grid}."
        )
    n, c, h, w = x.shape
    ph, pw = h // grid, w // grid
    out = x.copy()
    rng = np.random.RandomState(seed)
    identity = np.arange(grid * grid)
    for i in range(n):
        core = x[i, :, : ph * grid, : pw * grid]
        patches = (
            core.reshape(c, grid, ph, grid, pw).transpose(1, 3, 0, 2, 4).reshape(-1, c, ph, pw)
        )
        perm = rng.permutation(grid * grid)
        while (perm == identity).all():
            perm = rng.permutation(grid * grid)
        shuffled = patches[perm].reshape(grid, grid, c, ph, pw).transpose(2, 0, 3, 1, 4)
        out[i, :, : ph * grid, : pw * grid] = shuffled.reshape(c, ph * grid, pw * grid)
    return out
