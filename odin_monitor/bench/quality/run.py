"""Running the quality benchmark: the grid per depth, the chosen pairs, the test metrics.

The grid is computed with :func:`odin_monitor.scoring.grid_scores` (one backward per
``T``), each validation set's choice is :attr:`odin_monitor.grid.CalibrationGrid.best`,
metrics are :func:`odin_monitor.ood_metrics`: the benchmark measures the library itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from odin_monitor.bench.common import (
    DEPTHS,
    Log,
    Stopwatch,
    command_line,
    load_resnet,
    machine_info,
    pct,
    resolve_data_dir,
)
from odin_monitor.bench.quality.config import (
    NO_OOD,
    PAPER_DEFAULT,
    POOLED_SYNTHETIC,
    QUALITY_QUICK_EPSILONS,
    QUALITY_QUICK_TEMPERATURES,
    SYNTHETIC,
    QualityConfig,
    check_config,
)
from odin_monitor.bench.quality.data import QualityData, load_data
from odin_monitor.bench.quality.plots import draw_plots
from odin_monitor.bench.quality.results import Choice, DepthQuality, QualityResult
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.metrics import ood_metrics
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.scoring import grid_scores, model_logits

__all__ = ["run_quality"]


def _score_pairs(
    model: nn.Module,
    x: torch.Tensor,
    pairs: Sequence[tuple[float, float]],
    cfg: QualityConfig,
) -> dict[tuple[float, float], np.ndarray]:
    """ODIN scores at a few pairs, sharing one backward per distinct ``T``."""
    by_t: dict[float, list[float]] = {}
    for t, e in pairs:
        by_t.setdefault(t, [])
        if e not in by_t[t]:
            by_t[t].append(e)
    out: dict[tuple[float, float], np.ndarray] = {}
    for t, eps in by_t.items():
        s = grid_scores(
            model,
            x,
            temperatures=[t],
            epsilons=eps,
            normalization=CIFAR_RESNET_NORMALIZATION,
            batch_size=cfg.batch_size,
            device=cfg.device,
        ).numpy()
        for j, e in enumerate(eps):
            out[(t, e)] = s[0, j]
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, labels: np.ndarray, cfg: QualityConfig) -> float:
    preds = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], cfg.batch_size):
            xb = x[start : start + cfg.batch_size].to(cfg.device)
            preds.append(model_logits(model, xb, CIFAR_RESNET_NORMALIZATION).argmax(1).cpu())
    return float((torch.cat(preds).numpy() == labels).mean())


def _run_depth(depth: int, data: QualityData, cfg: QualityConfig, log: Log) -> DepthQuality:
    clock = Stopwatch()
    model = load_resnet(depth, cfg.data_dir, cfg.device)
    temps, eps = tuple(float(t) for t in cfg.temperatures), tuple(float(e) for e in cfg.epsilons)
    common: dict[str, Any] = {
        "temperatures": temps,
        "epsilons": eps,
        "normalization": CIFAR_RESNET_NORMALIZATION,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
    }
    n_pairs = len(temps) * len(eps)
    log(f"[{clock}] ResNet-{depth}: {n_pairs}-pair grid on ID validation ({len(data.id_val)})")
    s_id_val = grid_scores(model, data.id_val, **common).numpy()
    s_ood_val: dict[str, np.ndarray] = {}
    for name, x in data.ood_val.items():
        log(f"[{clock}] ResNet-{depth}: grid on {name} validation ({len(x)})")
        s_ood_val[name] = grid_scores(model, x, **common).numpy()
    s_ood_val[POOLED_SYNTHETIC] = np.concatenate([s_ood_val[n] for n in SYNTHETIC], axis=2)

    choices: dict[str, Choice] = {}
    grid_fpr: dict[str, np.ndarray] = {}
    views: dict[str, CalibrationGrid] = {}
    for name, s_ood in s_ood_val.items():
        view = CalibrationGrid.from_scores(s_id_val, s_ood, temps, eps, cfg.tpr_target)
        views[name] = view
        grid_fpr[name] = view.metric_matrix("fpr_at_tpr")
        b = view.best
        choices[name] = Choice(name, b.temperature, b.epsilon, b.metrics["fpr_at_tpr"])
    choices[NO_OOD] = Choice(NO_OOD, *PAPER_DEFAULT, None)
    pairs = sorted({(c.temperature, c.epsilon) for c in choices.values()} | {(1.0, 0.0)})
    log(f"[{clock}] ResNet-{depth}: chosen pairs {pairs}; scoring test sets")

    s_id_test = _score_pairs(model, data.id_test, pairs, cfg)
    msp: dict[str, dict[str, float]] = {}
    odin: dict[str, dict[str, float]] = {}
    transfer: dict[str, dict[str, dict[str, float]]] = {}
    test_scores: dict[str, dict[tuple[float, float], np.ndarray]] = {}
    for name, x in data.ood_test.items():
        s = _score_pairs(model, x, pairs, cfg)
        test_scores[name] = s
        msp[name] = ood_metrics(s_id_test[(1.0, 0.0)], s[(1.0, 0.0)], cfg.tpr_target)
        transfer[name] = {
            col: ood_metrics(
                s_id_test[(c.temperature, c.epsilon)], s[(c.temperature, c.epsilon)], cfg.tpr_target
            )
            for col, c in choices.items()
        }
        odin[name] = transfer[name][name]
    accuracy = _accuracy(model, data.id_test, data.id_test_labels, cfg)
    plots: tuple[Path, ...] = ()
    if cfg.plots_dir is not None:
        plots = draw_plots(depth, cfg, choices, views, s_id_test, test_scores)
    log(f"[{clock}] ResNet-{depth}: done (ID test accuracy {pct(accuracy)}%)")
    return DepthQuality(
        depth=depth,
        id_test_accuracy=accuracy,
        choices=choices,
        msp=msp,
        odin=odin,
        transfer=transfer,
        grid_fpr=grid_fpr,
        seconds=clock.seconds,
        plots=plots,
    )


def run_quality(
    *,
    data_dir: str | Path | None = None,
    depths: Sequence[int] = DEPTHS,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    n_id_val: int = 500,
    n_id_test: int | None = None,
    n_ood_val: int = 1000,
    n_ood_test: int = 2000,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    tpr_target: float = 0.95,
    plots_dir: str | Path | None = None,
    quick: bool = False,
    log: Log | None = None,
) -> QualityResult:
    """Run the quality benchmark (see the module docstring for the protocol).

    Args:
        data_dir: The shared data folder (default: ``$ODIN_SHARED_DATA`` or ``../shared/data``).
        depths: ResNet depths (20, 32, 44, 56).
        temperatures: ``T`` grid (default: the paper's 10 values).
        epsilons: ``ε`` grid in pixel units (default: the paper's 21 values).
        n_id_val: ID validation images out of the 1,000 lossless ones.
        n_id_test: ID test images, disjoint from validation; ``None`` = all the rest.
        n_ood_val: Validation images per OOD source.
        n_ood_test: Test images per OOD source.
        seed: Seed of the splits and the synthetic sets.
        batch_size: Images per chunk.
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``.
        tpr_target: TPR at which FPR and detection error are read.
        plots_dir: Folder for PNG plots (ROC, histograms, grid heatmap per depth); ``None`` = none.
        quick: Smoke mode: ResNet-20 only, a 4×4 grid, 100 validation and 200 test
            images per OOD source (overrides ``depths``, the grid and the OOD sizes).
        log: Called with one line per step (progress); default: silent.

    Returns:
        :class:`QualityResult`; render it with :func:`format_markdown`.
    """
    if quick:
        depths, temperatures, epsilons = (20,), QUALITY_QUICK_TEMPERATURES, QUALITY_QUICK_EPSILONS
        n_ood_val, n_ood_test = 100, 200
    cfg = QualityConfig(
        data_dir=resolve_data_dir(data_dir),
        depths=tuple(int(d) for d in depths),
        temperatures=tuple(float(t) for t in temperatures),
        epsilons=tuple(float(e) for e in epsilons),
        n_id_val=n_id_val,
        n_id_test=n_id_test,
        n_ood_val=n_ood_val,
        n_ood_test=n_ood_test,
        seed=seed,
        batch_size=batch_size,
        device=device,
        tpr_target=tpr_target,
        plots_dir=None if plots_dir is None else Path(plots_dir),
    )
    check_config(cfg)
    sink: Log = log or (lambda _line: None)
    data = load_data(cfg, sink)
    results = tuple(_run_depth(d, data, cfg, sink) for d in cfg.depths)
    return QualityResult(
        config=cfg,
        depths=results,
        machine=machine_info(device),
        command=command_line(),
        n_id_test=int(data.id_test.shape[0]),
        sources=tuple(data.ood_test),
    )
