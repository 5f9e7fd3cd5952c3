"""The no-OOD benchmark's data: the study's seeded splits of the shared files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from odin_monitor.bench.common import data_file
from odin_monitor.bench.no_ood.config import NoOodConfig
from odin_monitor.bench.quality.config import ID_FILE, OOD_FILES
from odin_monitor.calibration import JIGSAW_GRID, JIGSAW_SEED
from odin_monitor.data import to_float_nchw
from odin_monitor.errors import InputValidationError
from odin_monitor.synthetic import jigsaw

__all__ = ["NoOodData", "load_data", "readme_noise"]

#: Seeds of the protocol: ID split, TIN rows, noise test, noise validation.
ID_SEED, TIN_SEED, NOISE_TEST_SEED, NOISE_VAL_SEED = 0, 12, 0, 1


@dataclass(frozen=True)
class NoOodData:
    """Float32 ``(N, C, H, W)`` image sets in [0, 1], by the protocol's names.

    ``val``: ``id_val``, ``crop_val`` (REF), ``noise_val`` (R0), ``jigsaw_val`` (R4);
    ``test``: ``id_test`` and the five OOD test sets of
    :data:`~odin_monitor.bench.no_ood.config.TEST_SETS`.
    """

    val: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]


def readme_noise(
    seed: int, n_gauss: int, n_unif: int, hw: tuple[int, int] = (32, 32)
) -> np.ndarray:
    """The data README's noise recipe: one ``RandomState(seed)``, Gaussian then Uniform.

    Gaussian = ``clip(N(0.5, 1), 0, 1)``, Uniform = ``U[0, 1]``, both ×255 rounded to uint8,
    ``(n_gauss + n_unif, H, W, 3)``. (The library's ``gaussian_noise``/``uniform_noise``
    draw floats from numpy's ``default_rng``: same distributions, other draws.)

    Example:
        >>> readme_noise(0, 2, 1, (4, 4)).shape
        (3, 4, 4, 3)
    """
    rng = np.random.RandomState(seed)
    g = np.clip(rng.normal(0.5, 1.0, (n_gauss, *hw, 3)), 0, 1)
    u = rng.uniform(0, 1, (n_unif, *hw, 3))
    return np.round(np.concatenate([g, u]) * 255).astype(np.uint8)


def _tensor(u8: np.ndarray, name: str) -> torch.Tensor:
    return torch.from_numpy(to_float_nchw(u8, name))


def load_data(cfg: NoOodConfig, data_dir: Path) -> NoOodData:
    """Load and split the shared files as the protocol says.

    Raises:
        DataLoadError: A file is missing.
        InputValidationError: The sizes asked for exceed the files.
    """
    with np.load(data_file(data_dir, ID_FILE)) as npz:
        idd = npz["images"]
    if cfg.n_id_val + cfg.n_id_test > idd.shape[0]:
        raise InputValidationError(
            f"Expected n_id_val + n_id_test <= {idd.shape[0]} (the ID images), but got "
            f"{cfg.n_id_val} + {cfg.n_id_test}."
        )
    perm = np.random.RandomState(ID_SEED).permutation(idd.shape[0])
    id_val = _tensor(idd[perm[: cfg.n_id_val]], ID_FILE)
    id_test = _tensor(idd[perm[cfg.n_id_val : cfg.n_id_val + cfg.n_id_test]], ID_FILE)
    tin: dict[str, np.ndarray] = {}
    for key, fname in zip(("crop", "resize", "resize_odin"), OOD_FILES.values(), strict=True):
        with np.load(data_file(data_dir, fname)) as npz:
            tin[key] = npz["images"]
    n_rows = tin["crop"].shape[0]
    if cfg.n_tin_val + cfg.n_tin_test > n_rows:
        raise InputValidationError(
            f"Expected n_tin_val + n_tin_test <= {n_rows} (Tiny ImageNet rows), but got "
            f"{cfg.n_tin_val} + {cfg.n_tin_test}."
        )
    rows = np.random.RandomState(TIN_SEED).permutation(n_rows)
    val_rows = np.sort(rows[: cfg.n_tin_val])
    test_rows = np.sort(rows[cfg.n_tin_val : cfg.n_tin_val + cfg.n_tin_test])
    hw = (int(idd.shape[1]), int(idd.shape[2]))
    half = cfg.n_noise_val // 2
    noise_val = readme_noise(NOISE_VAL_SEED, half, cfg.n_noise_val - half, hw)
    noise_test = readme_noise(NOISE_TEST_SEED, cfg.n_noise_test, cfg.n_noise_test, hw)
    jig = jigsaw(id_val[: cfg.n_jigsaw].numpy(), grid=JIGSAW_GRID, seed=JIGSAW_SEED)
    return NoOodData(
        val={
            "id_val": id_val,
            "crop_val": _tensor(tin["crop"][val_rows], "crop"),
            "noise_val": _tensor(noise_val, "noise"),
            "jigsaw_val": torch.from_numpy(jig),
        },
        test={
            "id_test": id_test,
            "crop_test": _tensor(tin["crop"][test_rows], "crop"),
            "resize_test": _tensor(tin["resize"][test_rows], "resize"),
            "resize_odin_test": _tensor(tin["resize_odin"][test_rows], "resize_odin"),
            "gauss_test": _tensor(noise_test[: cfg.n_noise_test], "noise"),
            "unif_test": _tensor(noise_test[cfg.n_noise_test :], "noise"),
        },
    )
