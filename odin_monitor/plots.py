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

    from odin_monitor.grid import CalibrationGrid

__all__ = ["plot_grid_heatmap", "plot_roc", "plot_score_histograms", "save_figure"]


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_grid_heatmap(
    grid: CalibrationGrid,
    metric: str = "fpr_at_tpr",
    chosen: tuple[float, float] | None = None,
) -> Figure:
    """Heatmap of a validation metric over the ``T × ε`` grid, values in the cells.

    The chosen pair is boxed in red, the MSP baseline (``T = 1``, ``ε = 0``) in white;
    a pair the search did not finish (NaN) shows a dot and no colour.

    Args:
        grid: The :class:`~odin_monitor.grid.CalibrationGrid` (``result.grid``).
        metric: ``"fpr_at_tpr"``, ``"auroc"``, ``"detection_error"``, ``"aupr_in"``
            or ``"aupr_out"``.
        chosen: The pair to box; default ``grid.best``.

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.patches import Rectangle

    values = 100 * grid.metric_matrix(metric)
    n_t, n_e = values.shape
    fig = _figure(max(7.0, 0.55 * n_e + 2.5), max(3.5, 0.42 * n_t + 1.8))
    ax = fig.add_subplot()
    cmap = "viridis_r" if metric in ("fpr_at_tpr", "detection_error") else "viridis"
    im = ax.imshow(values, aspect="auto", cmap=cmap, origin="lower")
    if n_t * n_e <= 400:
        mid = (np.nanmax(values) + np.nanmin(values)) / 2 if np.isfinite(values).any() else 0.0
        bright_is_high = cmap == "viridis"
        for i in range(n_t):
            for j in range(n_e):
                if not np.isfinite(values[i, j]):
                    ax.text(j, i, "·", ha="center", va="center", fontsize=6, color="gray")
                    continue
                dark = (values[i, j] < mid) if bright_is_high else (values[i, j] > mid)
                ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(n_e))
    # ε in units of 10⁻⁴ reads as short integers-ish labels (0, 2, 4, ... for the paper's grid).
    ax.set_xticklabels([f"{1e4 * e:g}" for e in grid.epsilons], rotation=0, fontsize=7)
    ax.set_yticks(range(n_t))
    ax.set_yticklabels([f"{t:g}" for t in grid.temperatures])
    ax.set_xlabel("ε (× 10⁻⁴, pixel units of [0, 1] images)")
    ax.set_ylabel("temperature T")
    t, e = chosen if chosen is not None else (grid.best.temperature, grid.best.epsilon)
    i, j = grid.index(t, e)
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    title = f"validation {metric} (%): chosen T={t:g}, ε={e:g} → {values[i, j]:.2f}"
    if grid.msp is not None:
        mi, mj = grid.index(1.0, 0.0)
        ax.add_patch(
            Rectangle((mj - 0.5, mi - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2,
                      linestyle="--")
        )  # fmt: skip
        title += f"; MSP (dashed) {values[mi, mj]:.2f}"
    if not np.isfinite(values).all():
        title += "\n· = pair the search did not finish (it could not win)"
    ax.set_title(title, fontsize=10)
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
