"""The paper's synthetic OOD sets, made with a seeded generator.

* Gaussian: i.i.d. pixels from N(0.5, 1), clipped to [0, 1];
* Uniform: i.i.d. pixels from U[0, 1].

Both are float32 ``(N, C, H, W)`` in [0, 1], the same layout as every image batch
in this library.
"""

from __future__ import annotations

import numpy as np

from odin_monitor.errors import InputValidationError

__all__ = ["gaussian_noise", "uniform_noise"]


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
