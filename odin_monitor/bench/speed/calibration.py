"""Calibration timing: halving search and full grid against the naive per-pair loop.

Three ways to score the ``T × ε`` grid on the same ID and OOD images, one process:

* **naive**: :func:`odin_monitor.odin_scores` once per pair (one forward, one
  backward, one forward per pair and image: about 650 forward-equivalents per image
  on the paper's 210 pairs);
* **full grid**: :func:`odin_monitor.scoring.grid_scores` (one backward per ``T``,
  one forward per pair: about 213);
* **halving**: :func:`odin_monitor.search.search_grid` with ``search="halving"`` (what
  :func:`odin_monitor.calibrate` runs by default: every pair on a subset, the
  contenders on every image), timed **with** its choice (metrics of the finished
  pairs); the naive loop and the full grid are timed without theirs.

The naive loop and the full grid alternate chunk by chunk (order flipped each time);
the halving runs, whole, at evenly spaced points of that alternation, so background
load falls on all three alike; its figure is the median of its runs. Each score
cube becomes a :class:`~odin_monitor.grid.CalibrationGrid`, whose ``best`` is the
pair chosen; all three must agree.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from odin_monitor.bench.speed.methods import sync
from odin_monitor.bench.speed.results import CalibrationTiming
from odin_monitor.compiled import WARM_UP_SIZES
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.normalization import Normalization
from odin_monitor.scoring import grid_scores, odin_scores
from odin_monitor.search import DEFAULT_MARGIN_Z, DEFAULT_SUBSET_FRACTION, search_grid

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
    chunk: int | None = None,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    margin_z: float = DEFAULT_MARGIN_Z,
    halving_runs: int = 3,
    compiled: bool = False,
) -> CalibrationTiming:
    """Time halving, the full grid and the naive loop over all pairs; compare choices.

    Args:
        model: The classifier.
        x_id: In-distribution images ``(N_in, C, H, W)``.
        x_ood: OOD images ``(N_out, C, H, W)``.
        depth: ResNet depth (for the report).
        temperatures: The ``T`` grid.
        epsilons: The ``ε`` grid.
        normalization: The model's input normalisation.
        batch_size: Images per chunk inside each method.
        device: Where to compute.
        chunk: Images per alternation step of the naive loop and the full grid
            (default ``batch_size``: every method then runs the model on batches of
            at most ``batch_size`` images).
        subset_fraction: Halving's subset share.
        margin_z: Halving's contender margin in binomial standard errors.
        halving_runs: Whole halving runs spread through the alternation (median).
        compiled: Also time the halving search with ``compile=True`` (its perturbed
            forwards on the compiled step), each run right after an eager one; the
            step is compiled before any timing.

    Returns:
        :class:`CalibrationTiming`.
    """
    dev = torch.device(device)
    temps, eps = [float(t) for t in temperatures], [float(e) for e in epsilons]

    # The same settings for all: only the sharing and the sparing of work differ.
    same: dict[str, Any] = {"normalization": normalization, "batch_size": batch_size, "device": dev}

    def run_grid(x: torch.Tensor) -> np.ndarray:
        return grid_scores(model, x, temperatures=temps, epsilons=eps, **same).numpy()

    def run_naive(x: torch.Tensor) -> np.ndarray:
        out = np.empty((len(temps), len(eps), x.shape[0]))
        for i, t in enumerate(temps):
            for j, e in enumerate(eps):
                out[i, j] = odin_scores(model, x, temperature=t, epsilon=e, **same).odin_score
        return out

    def run_halving(
        compile: bool = False,
    ) -> tuple[tuple[float, float], int, tuple[int, int] | None, str]:
        found = search_grid(
            model,
            x_id,
            x_ood,
            temperatures=temps,
            epsilons=eps,
            search="halving",
            subset_fraction=subset_fraction,
            margin_z=margin_z,
            compile=compile,
            **same,
        )
        best = CalibrationGrid.from_scores(
            found.id_pass.scores.numpy(), found.ood_pass.scores.numpy(), temps, eps
        ).best
        return (
            (best.temperature, best.epsilon),
            int(found.finished.sum()),
            found.n_subset,
            found.search,
        )

    chunk = chunk or batch_size
    steps = [(x, s) for x in (x_id, x_ood) for s in range(0, x.shape[0], chunk)]
    # Where the halving runs go: evenly spread, several at one step when steps are few.
    halving_at = [min(len(steps) - 1, int(len(steps) * (r + 0.5) / halving_runs))
                  for r in range(halving_runs)]  # fmt: skip
    t_ours = t_naive = 0.0
    halving_times: list[float] = []
    halving_out: list[tuple[tuple[float, float], int, tuple[int, int] | None, str]] = []
    compiled_times: list[float] = []
    compiled_out: list[tuple[tuple[float, float], int, tuple[int, int] | None, str]] = []
    if compiled:  # compile the plain-forward graphs (2–15 and 16+ images) before timing
        for n in WARM_UP_SIZES:
            odin_scores(model, x_id[:n], temperature=1.0, epsilon=0.0, compile=True, **same)
    ours: list[np.ndarray] = []
    naive: list[np.ndarray] = []
    for k, (x_all, start) in enumerate(steps):
        for _ in range(halving_at.count(k)):
            sync(dev)
            t0 = time.perf_counter()
            halving_out.append(run_halving())
            sync(dev)
            halving_times.append(time.perf_counter() - t0)
            if compiled:
                t0 = time.perf_counter()
                compiled_out.append(run_halving(compile=True))
                sync(dev)
                compiled_times.append(time.perf_counter() - t0)
        # Alternate the two chunked methods (order flipped each time); scores do not
        # depend on the chunking.
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
    choices = {h[0] for h in halving_out}
    choice, finished, n_subset, search = halving_out[0]
    compiled_choices = {h[0] for h in compiled_out}
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
        halving_seconds=statistics.median(halving_times),
        halving_rounds=tuple(halving_times),
        # Every run must choose alike (the search is seeded): a disagreement shows as NaN.
        halving_choice=choice if len(choices) == 1 else (float("nan"), float("nan")),
        halving_finished=finished,
        halving_subset=n_subset,
        halving_search=search,
        subset_fraction=subset_fraction,
        margin_z=margin_z,
        compiled_seconds=statistics.median(compiled_times) if compiled_times else None,
        compiled_rounds=tuple(compiled_times),
        compiled_choice=(
            None
            if not compiled_out
            else compiled_out[0][0]
            if len(compiled_choices) == 1
            else (float("nan"), float("nan"))
        ),
        compiled_finished=compiled_out[0][1] if compiled_out else None,
    )
