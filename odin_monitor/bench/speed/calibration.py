"""Calibration timing: the shared-work grid against the naive per-pair loop, same choice."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from odin_monitor.bench.speed.methods import sync
from odin_monitor.bench.speed.results import CalibrationTiming
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.normalization import Normalization
from odin_monitor.scoring import grid_scores, odin_scores

__all__ = ["time_calibration"]


def time_calibration(
    model: nn.Module,
    x_id: torch.Tensor,
    x_ood: torch.Tensor,
    *,
    depth: int,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    normalization: Normalization | None = CIFAR_RESNET_NORMALIZATION,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    chunk: int = 32,
) -> CalibrationTiming:
    """Time the shared-work grid against the naive loop over all pairs; compare choices.

    Both runs score the same ID and OOD images, ``chunk`` images at a time, the two
    methods alternating; each score cube becomes a
    :class:`~odin_monitor.grid.CalibrationGrid`, whose ``best`` is the pair chosen.
    """
    dev = torch.device(device)
    temps, eps = [float(t) for t in temperatures], [float(e) for e in epsilons]

    # The same settings for both: only the sharing of work differs.
    same: dict[str, Any] = {"normalization": normalization, "batch_size": batch_size, "device": dev}

    def run_grid(x: torch.Tensor) -> np.ndarray:
        return grid_scores(model, x, temperatures=temps, epsilons=eps, **same).numpy()

    def run_naive(x: torch.Tensor) -> np.ndarray:
        out = np.empty((len(temps), len(eps), x.shape[0]))
        for i, t in enumerate(temps):
            for j, e in enumerate(eps):
                out[i, j] = odin_scores(model, x, temperature=t, epsilon=e, **same).odin_score
        return out

    # Alternate the two methods chunk by chunk (order flipped each time), so that
    # background load falls on both alike; scores do not depend on the chunking.
    t_ours = t_naive = 0.0
    ours: list[np.ndarray] = []
    naive: list[np.ndarray] = []
    for k, (x_all, start) in enumerate(
        (x, s) for x in (x_id, x_ood) for s in range(0, x.shape[0], chunk)
    ):
        xc = x_all[start : start + chunk]
        order = [(run_grid, ours), (run_naive, naive)]
        for fn, sink in order if k % 2 == 0 else order[::-1]:
            sync(dev)
            t0 = time.perf_counter()
            sink.append(fn(xc))
            sync(dev)
            if fn is run_grid:
                t_ours += time.perf_counter() - t0
            else:
                t_naive += time.perf_counter() - t0
    n_id_chunks = -(-x_id.shape[0] // chunk)
    ours = [np.concatenate(ours[:n_id_chunks], axis=2), np.concatenate(ours[n_id_chunks:], axis=2)]
    naive = [
        np.concatenate(naive[:n_id_chunks], axis=2),
        np.concatenate(naive[n_id_chunks:], axis=2),
    ]
    best_ours = CalibrationGrid.from_scores(ours[0], ours[1], temps, eps).best
    best_naive = CalibrationGrid.from_scores(naive[0], naive[1], temps, eps).best
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, naive, strict=True))
    return CalibrationTiming(
        depth=depth,
        n_id=int(x_id.shape[0]),
        n_ood=int(x_ood.shape[0]),
        n_pairs=len(temps) * len(eps),
        ours_seconds=t_ours,
        naive_seconds=t_naive,
        ours_choice=(best_ours.temperature, best_ours.epsilon),
        naive_choice=(best_naive.temperature, best_naive.epsilon),
        max_abs_score_diff=diff,
    )
