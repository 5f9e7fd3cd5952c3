"""Calibration timing: grid searches and the full grid against the naive per-pair loop.

Ways to score the ``T × ε`` grid on the same ID and OOD images, one process:

* **naive**: :func:`odin_monitor.odin_scores` once per pair (one forward, one
  backward, one forward per pair and image: about 650 forward-equivalents per image
  on the paper's 210 pairs);
* **full grid**: :func:`odin_monitor.scoring.grid_scores` (one backward per ``T``,
  one forward per pair: about 213);
* **searches**: :func:`odin_monitor.search.search_grid` with ``search="coarse-to-fine"``
  (what :func:`odin_monitor.calibrate` runs by default: every ``T`` at coarse ε, the
  rest estimated, the pairs that could win finished) and ``"halving"`` (every pair on
  a subset, the contenders on every image), each timed **with** its choice (metrics
  of the finished pairs); the naive loop and the full grid are timed without theirs.

The naive loop and the full grid alternate chunk by chunk (order flipped each time);
the searches run, whole and one after another, at evenly spaced points of that
alternation, so background load falls on all alike; each figure is the median of
its runs. Each score cube becomes a :class:`~odin_monitor.grid.CalibrationGrid`,
whose ``best`` is the pair chosen; all must agree.
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
from odin_monitor.bench.speed.results import CalibrationTiming, SearchTiming
from odin_monitor.compiled import WARM_UP_SIZES
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.normalization import Normalization
from odin_monitor.scoring import grid_scores, odin_scores
from odin_monitor.search import (
    DEFAULT_MARGIN_Z,
    DEFAULT_SEARCH,
    DEFAULT_SUBSET_FRACTION,
    Search,
    SearchResult,
    search_grid,
)

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
    searches: Sequence[Search] = (DEFAULT_SEARCH, "halving"),
    search_runs: int = 3,
    compiled: bool = False,
) -> CalibrationTiming:
    """Time grid searches, the full grid and the naive loop over all pairs; compare choices.

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
        searches: The searches timed whole (the first is reported as calibrate's).
        search_runs: Whole runs of each search spread through the alternation (median).
        compiled: Also time the first search with ``compile=True`` (its perturbed
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

    def run_search(
        search: Search, compile: bool = False
    ) -> tuple[tuple[float, float], SearchResult]:
        found = search_grid(
            model,
            x_id,
            x_ood,
            temperatures=temps,
            epsilons=eps,
            search=search,
            subset_fraction=subset_fraction,
            margin_z=margin_z,
            compile=compile,
            **same,
        )
        best = CalibrationGrid.from_scores(
            found.id_pass.scores.numpy(), found.ood_pass.scores.numpy(), temps, eps
        ).best
        return (best.temperature, best.epsilon), found

    # What is timed whole: each search eager, and the first compiled right after it.
    plan = [(name, False) for name in searches]
    if compiled and searches:
        plan.insert(1, (searches[0], True))
    times: dict[tuple[Search, bool], list[float]] = {key: [] for key in plan}
    outs: dict[tuple[Search, bool], list[tuple[tuple[float, float], SearchResult]]] = {
        key: [] for key in plan
    }
    chunk = chunk or batch_size
    steps = [(x, s) for x in (x_id, x_ood) for s in range(0, x.shape[0], chunk)]
    # Where the search runs go: evenly spread, several at one step when steps are few.
    run_at = [min(len(steps) - 1, int(len(steps) * (r + 0.5) / search_runs))
              for r in range(search_runs)]  # fmt: skip
    t_ours = t_naive = 0.0
    if compiled:  # compile the plain-forward graphs (2–15 and 16+ images) before timing
        for n in WARM_UP_SIZES:
            odin_scores(model, x_id[:n], temperature=1.0, epsilon=0.0, compile=True, **same)
    ours: list[np.ndarray] = []
    naive: list[np.ndarray] = []
    for k, (x_all, start) in enumerate(steps):
        for _ in range(run_at.count(k)):
            for key in plan:
                sync(dev)
                t0 = time.perf_counter()
                outs[key].append(run_search(*key))
                sync(dev)
                times[key].append(time.perf_counter() - t0)
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
    timed = []
    for name, comp in plan:
        runs = outs[(name, comp)]
        choices = {r[0] for r in runs}
        found = runs[0][1]
        timed.append(
            SearchTiming(
                search=name,
                compiled=comp,
                seconds=statistics.median(times[(name, comp)]),
                rounds=tuple(times[(name, comp)]),
                # Every run must choose alike (the searches are deterministic): else NaN.
                choice=runs[0][0] if len(choices) == 1 else (float("nan"), float("nan")),
                finished=int(found.finished.sum()),
                ran=found.search,
                detail=found.describe(margin_z),
            )
        )
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
        searches=tuple(timed),
    )
