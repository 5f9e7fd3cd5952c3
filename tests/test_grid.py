"""CalibrationGrid: metrics of every pair from the score cubes, the choice, the curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from odin_monitor import CalibrationError, InputValidationError
from odin_monitor.grid import CalibrationGrid, select_best


def cubes(seed: int = 0):
    rng = np.random.default_rng(seed)
    temps, eps = (1.0, 10.0, 1000.0), (0.0, 0.001, 0.002)
    s_in = rng.uniform(0.3, 1.0, (3, 3, 200))
    s_out = rng.uniform(0.0, 0.8, (3, 3, 150))
    # Make (T=10, ε=0.001) clearly the best pair: its OOD scores are pushed down.
    s_out[1, 1] *= 0.3
    return s_in, s_out, temps, eps


def fpr_at_95_loop(s_in: np.ndarray, s_out: np.ndarray) -> float:
    """Plain loop: the largest δ keeping ≥ 95% of in-distribution scores, then FPR."""
    best = None
    for delta in sorted(s_in):
        if np.sum(s_in >= delta) >= 0.95 * len(s_in):
            best = delta
    return float(np.sum(s_out >= best) / len(s_out))


def test_metrics_of_every_pair_match_independent_computations():
    s_in, s_out, temps, eps = cubes()
    grid = CalibrationGrid.from_scores(s_in, s_out, temps, eps)
    assert len(grid.points) == 9
    for i, t in enumerate(temps):
        for j, e in enumerate(eps):
            point = grid.point(t, e)
            y = np.r_[np.ones(200), np.zeros(150)]
            assert point.metrics["auroc"] == pytest.approx(
                roc_auc_score(y, np.r_[s_in[i, j], s_out[i, j]]), abs=1e-12
            )
            assert point.metrics["fpr_at_tpr"] == pytest.approx(
                fpr_at_95_loop(s_in[i, j], s_out[i, j]), abs=1e-12
            )
    assert (grid.best.temperature, grid.best.epsilon) == (10.0, 0.001)


def test_ties_go_to_higher_auroc_then_smaller_t_then_smaller_eps():
    s_in, _, temps, eps = cubes()
    s_out = np.zeros((3, 3, 150))  # every pair separates perfectly: FPR 0, AUROC 1
    grid = CalibrationGrid.from_scores(s_in, s_out, temps, eps)
    assert (grid.best.temperature, grid.best.epsilon) == (1.0, 0.0)
    assert select_best(grid.points[::-1]) == grid.best


def test_curves_and_frame_follow_the_chosen_pair():
    s_in, s_out, temps, eps = cubes()
    grid = CalibrationGrid.from_scores(s_in, s_out, temps, eps)
    curves = grid.curves((1000.0, 0.002))
    assert list(curves) == ["ODIN (T=1000, ε=0.002)", "MSP (T=1, ε=0)"]
    np.testing.assert_array_equal(curves["MSP (T=1, ε=0)"][1], s_out[0, 0])
    np.testing.assert_array_equal(curves["ODIN (T=1000, ε=0.002)"][0], s_in[2, 2])
    frame = grid.frame((1000.0, 0.002))
    assert frame["chosen"].sum() == 1
    assert frame.loc[frame["chosen"], ["temperature", "epsilon"]].values.tolist() == [[1000, 0.002]]
    np.testing.assert_array_equal(
        grid.metric_matrix("auroc"), frame["auroc"].to_numpy().reshape(3, 3)
    )


def test_no_msp_curve_without_the_baseline_pair():
    s_in, s_out, _, _ = cubes()
    grid = CalibrationGrid.from_scores(s_in, s_out, (2.0, 10.0, 1000.0), (0.0, 0.001, 0.002))
    assert grid.msp is None and len(grid.curves()) == 1


def test_bad_shapes_and_pairs_are_refused():
    s_in, s_out, temps, eps = cubes()
    with pytest.raises(InputValidationError, match=r"shape \(3, 2, N\)"):
        CalibrationGrid.from_scores(s_in, s_out, temps, eps[:2])
    grid = CalibrationGrid.from_scores(s_in, s_out, temps, eps)
    with pytest.raises(InputValidationError, match="pair of the grid"):
        grid.scores_at(5.0, 0.0)
    with pytest.raises(InputValidationError, match="metric in"):
        grid.metric_matrix("accuracy")


def test_unscored_pairs_are_nan_and_never_chosen():
    s_in, s_out, temps, eps = cubes()
    full = CalibrationGrid.from_scores(s_in, s_out, temps, eps)
    # Leave out the full grid's best pair (T=10, ε=0.001) and one more.
    s_in[1, 1], s_out[1, 1] = np.nan, np.nan
    s_in[2, 0], s_out[2, 0] = np.nan, np.nan
    grid = CalibrationGrid.from_scores(s_in, s_out, temps, eps)
    finished = np.ones((3, 3), dtype=bool)
    finished[1, 1] = finished[2, 0] = False
    np.testing.assert_array_equal(grid.finished, finished)
    assert all(np.isnan(v) for v in grid.point(10.0, 0.001).metrics.values())
    assert np.isnan(grid.metric_matrix("auroc")[~finished]).all()
    # The scored pairs keep their metrics; the best of them is chosen.
    rest = [p for p in full.points if (p.temperature, p.epsilon) not in ((10, 0.001), (1000, 0))]
    assert grid.best == select_best(rest)
    assert grid.point(1.0, 0.0).metrics == full.point(1.0, 0.0).metrics
    # The heatmap marks the unfinished pairs instead of printing "nan" in them.
    from odin_monitor.plots import plot_grid_heatmap

    fig = plot_grid_heatmap(grid)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("·") == 2 and not any("nan" in t for t in texts)
    assert len(texts) == 9 and "did not finish" in fig.axes[0].get_title()
    nothing = np.full_like(s_in, np.nan), np.full_like(s_out, np.nan)
    with pytest.raises(CalibrationError, match="none scored"):
        select_best(CalibrationGrid.from_scores(*nothing, temps, eps).points)


def test_a_pair_with_some_nan_scores_is_an_error_not_an_unscored_pair():
    s_in, s_out, temps, eps = cubes()
    s_in[0, 0, 3] = np.nan  # a model that returned NaN for one image
    with pytest.raises(InputValidationError, match="finite"):
        CalibrationGrid.from_scores(s_in, s_out, temps, eps)
