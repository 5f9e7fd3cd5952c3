"""Figures people would rather look at than read.

The calibration grid, ROC curves and score histograms. Built on
``matplotlib.figure.Figure`` (no pyplot state, safe in servers and threads); save
with :func:`save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from odin_monitor.metrics import as_score_array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from odin_monitor.calibration import CalibrationResult

__all__ = ["plot_grid_heatmap", "plot_roc", "plot_score_histograms", "save_figure"]


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_grid_heatmap(result: CalibrationResult, metric: str = "fpr_at_tpr") -> Figure:
    """Heatmap of a validation metric over the ``T × ε`` grid; the chosen pair is boxed.

    Args:
        result: What :func:`odin_monitor.calibrate` returned.
        metric: ``"fpr_at_tpr"``, ``"auroc"``, ``"detection_error"``, ``"aupr_in"``
            or ``"aupr_out"``.

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.patches import Rectangle

    values = result.metric_matrix(metric)
    fig = _figure(9.0, 4.8)
    ax = fig.add_subplot()
    cmap = "viridis_r" if metric in ("fpr_at_tpr", "detection_error") else "viridis"
    im = ax.imshow(100 * values, aspect="auto", cmap=cmap, origin="lower")
    ax.set_xticks(range(len(result.epsilons)))
    ax.set_xticklabels([f"{e:.4f}" for e in result.epsilons], rotation=90, fontsize=7)
    ax.set_yticks(range(len(result.temperatures)))
    ax.set_yticklabels([f"{t:g}" for t in result.temperatures])
    ax.set_xlabel("ε (pixel units)")
    ax.set_ylabel("temperature T")
    best = result.best
    i, j = result.temperatures.index(best.temperature), result.epsilons.index(best.epsilon)
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_title(
        f"validation {metric} (%) — chosen T={best.temperature:g}, ε={best.epsilon:g}: "
        f"{100 * best.metrics[metric]:.2f}"
    )
    fig.colorbar(im, ax=ax, label=f"{metric} (%)")
    return fig


def plot_roc(
    curves: Mapping[str, tuple[Any, Any]], title: str = "ROC (in-distribution positive)"
) -> Figure:
    """ROC curves, one per ``name: (scores_in, scores_out)``, with AUROC in the legend.

    Example:
        >>> fig = plot_roc({"ODIN": ([0.9, 0.8], [0.1, 0.85])})
        >>> len(fig.axes)
        1
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure()
    ax = fig.add_subplot()
    for name, (s_in, s_out) in curves.items():
        a = as_score_array(s_in, f"{name} scores_in")
        b = as_score_array(s_out, f"{name} scores_out")
        y = np.r_[np.ones(a.size), np.zeros(b.size)]
        fpr, tpr, _ = roc_curve(y, np.r_[a, b])
        ax.plot(fpr, tpr, label=f"{name} (AUROC {100 * roc_auc_score(y, np.r_[a, b]):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1, label="TPR 95%")
    ax.set_xlabel("FPR (OOD accepted)")
    ax.set_ylabel("TPR (in-distribution kept)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig


def plot_score_histograms(
    scores_in: Any,
    scores_out: Mapping[str, Any] | Any,
    *,
    threshold: float | None = None,
    xlabel: str = "score (higher = more in-distribution)",
    title: str = "score histograms",
    bins: int = 60,
) -> Figure:
    """Overlaid density histograms of in-distribution vs OOD scores, δ marked.

    Args:
        scores_in: In-distribution scores ``(N,)``.
        scores_out: OOD scores ``(M,)``, or ``{name: scores}`` for several sets.
        threshold: δ, drawn as a vertical line.
        xlabel: Axis label (say which score: ODIN, spread, MSP).
        title: Figure title.
        bins: Number of shared bins.

    Returns:
        A matplotlib Figure.
    """
    outs = dict(scores_out) if isinstance(scores_out, Mapping) else {"OOD": scores_out}
    a = as_score_array(scores_in, "scores_in")
    arrays = {k: as_score_array(v, f"scores_out[{k!r}]") for k, v in outs.items()}
    lo = min([a.min(), *(v.min() for v in arrays.values())])
    hi = max([a.max(), *(v.max() for v in arrays.values())])
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1).tolist()
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(a, bins=edges, density=True, alpha=0.5, label="in-distribution")
    for name, v in arrays.items():
        ax.hist(v, bins=edges, density=True, alpha=0.5, label=name)
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"δ = {threshold:.6g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure (format from the suffix, e.g. ``.png``) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    return p
