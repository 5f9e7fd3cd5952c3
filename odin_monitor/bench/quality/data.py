"""The quality benchmark's data: seeded, disjoint ID and OOD splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odin_monitor.bench.common import Log, data_file
from odin_monitor.bench.quality.config import (
    ID_FILE,
    IMAGE_SHAPE,
    OOD_FILES,
    SYNTHETIC,
    QualityConfig,
)
from odin_monitor.data import load_images, to_float_nchw
from odin_monitor.errors import InputValidationError
from odin_monitor.synthetic import gaussian_noise, uniform_noise

__all__ = ["QualityData", "load_data"]


@dataclass(frozen=True)
class QualityData:
    """ID validation/test images (with the test labels), OOD validation/test per source."""

    id_val: torch.Tensor
    id_test: torch.Tensor
    id_test_labels: np.ndarray
    ood_val: dict[str, torch.Tensor]
    ood_test: dict[str, torch.Tensor]


def load_data(cfg: QualityConfig, log: Log) -> QualityData:
    """Load and split the data folder's files as the protocol says.

    Raises:
        DataLoadError: A file is missing.
        InputValidationError: The sizes asked for exceed the files.
    """
    id_path = data_file(cfg.data_dir, ID_FILE)
    x_id = load_images(id_path)
    labels = np.load(id_path)["labels"]
    n_id = x_id.shape[0]
    if not 1 <= cfg.n_id_val < n_id:
        raise InputValidationError(
            f"Expected 1 <= n_id_val < {n_id} (the ID images), but got {cfg.n_id_val}."
        )
    n_test = n_id - cfg.n_id_val if cfg.n_id_test is None else cfg.n_id_test
    if not 1 <= n_test <= n_id - cfg.n_id_val:
        raise InputValidationError(
            f"Expected 1 <= n_id_test <= {n_id - cfg.n_id_val} (ID images left after "
            f"validation), but got {cfg.n_id_test}."
        )
    perm = np.random.default_rng(cfg.seed).permutation(n_id)
    val_idx = np.sort(perm[: cfg.n_id_val])
    test_idx = np.sort(perm[cfg.n_id_val : cfg.n_id_val + n_test])
    ood_val: dict[str, torch.Tensor] = {}
    ood_test: dict[str, torch.Tensor] = {}
    n_need = cfg.n_ood_val + cfg.n_ood_test
    tin_split: tuple[np.ndarray, np.ndarray] | None = None
    for name, fname in OOD_FILES.items():
        path = data_file(cfg.data_dir, fname)
        with np.load(path, allow_pickle=False) as npz:
            raw = npz["images"]  # uint8 (N, 32, 32, 3); converted to float after indexing
        if tin_split is None:
            if n_need > raw.shape[0]:
                raise InputValidationError(
                    f"Expected n_ood_val + n_ood_test <= {raw.shape[0]} (images in {fname}), "
                    f"but got {cfg.n_ood_val} + {cfg.n_ood_test}."
                )
            # One split of the 10,000 Tiny ImageNet source images, shared by all three files.
            p = np.random.default_rng(cfg.seed + 1).permutation(raw.shape[0])
            tin_split = (np.sort(p[: cfg.n_ood_val]), np.sort(p[cfg.n_ood_val : n_need]))
        ood_val[name] = torch.from_numpy(to_float_nchw(raw[tin_split[0]], fname))
        ood_test[name] = torch.from_numpy(to_float_nchw(raw[tin_split[1]], fname))
    for k, (name, make) in enumerate(zip(SYNTHETIC, (gaussian_noise, uniform_noise), strict=True)):
        x = make(n_need, IMAGE_SHAPE, seed=cfg.seed + 100 + k)
        ood_val[name] = torch.from_numpy(x[: cfg.n_ood_val])
        ood_test[name] = torch.from_numpy(x[cfg.n_ood_val :])
    log(
        f"data: ID {n_id} -> val {len(val_idx)} / test {len(test_idx)}; "
        f"OOD per source: val {cfg.n_ood_val} / test {cfg.n_ood_test}"
    )
    return QualityData(
        id_val=torch.from_numpy(x_id[val_idx]),
        id_test=torch.from_numpy(x_id[test_idx]),
        id_test_labels=labels[test_idx],
        ood_val=ood_val,
        ood_test=ood_test,
    )
