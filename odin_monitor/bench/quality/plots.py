"""The quality benchmark's figures: ROC, score histograms and the grid heatmap per depth."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from odin_monitor.bench.quality.config import PLOT_SOURCE, QualityConfig
from odin_monitor.bench.quality.results import Choice
from odin_monitor.columns import spread_transform
from odin_monitor.grid import CalibrationGrid

__all__ = ["draw_plots"]


def draw_plots(
    depth: int,
    cfg: QualityConfig,
    choices: Mapping[str, Choice],
    views: Mapping[str, CalibrationGrid],
    s_id_test: Mapping[tuple[float, float], np.ndarray],
    test_scores: Mapping[str, Mapping[tuple[float, float], np.ndarray]],
) -> tuple[Path, ...]:
    """Write ``roc_``, ``hist_`` and ``grid_resnet{depth}.png`` under ``cfg.plots_dir``."""
    from odin_monitor.plots import plot_grid_heatmap, plot_roc, plot_score_histograms, save_figure

    if cfg.plots_dir is None:
        return ()
    src = PLOT_SOURCE if PLOT_SOURCE in choices else next(iter(test_scores))
    c = choices[src]
    pair, base = (c.temperature, c.epsilon), (1.0, 0.0)
    out = []
    roc = plot_roc(
        {
            "MSP": (s_id_test[base], test_scores[src][base]),
            f"ODIN (T={c.temperature:g}, ε={c.epsilon:g})": (
                s_id_test[pair],
                test_scores[src][pair],
            ),
        },
        title=f"ResNet-{depth}: CIFAR-10 (test half) vs {src} (test split)",
    )
    out.append(save_figure(roc, cfg.plots_dir / f"roc_resnet{depth}.png"))
    k = 10  # CIFAR-10 classes: the spread form T·log(K·S) is readable where S crowds near 1/K.
    spread = {n: spread_transform(s[pair], c.temperature, k) for n, s in test_scores.items()}
    hist = plot_score_histograms(
        spread_transform(s_id_test[pair], c.temperature, k),
        spread,
        xlabel=f"ODIN spread score T·log(K·S), T={c.temperature:g}, ε={c.epsilon:g}",
        title=f"ResNet-{depth}: ODIN scores, ID test half vs OOD test splits",
    )
    out.append(save_figure(hist, cfg.plots_dir / f"hist_resnet{depth}.png"))
    heat = plot_grid_heatmap(views[src], "fpr_at_tpr")
    heat.axes[0].set_title(
        f"ResNet-{depth}: validation FPR@95%TPR (%), ID val vs {src} val — "
        f"chosen T={c.temperature:g}, ε={c.epsilon:g}",
        fontsize=9,
    )
    out.append(save_figure(heat, cfg.plots_dir / f"grid_resnet{depth}.png"))
    return tuple(out)
