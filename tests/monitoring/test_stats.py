from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.stats import (
    binomial_pvalue,
    choose_cusum_h,
    critical_count,
    cusum_arl,
    cusum_reference_value,
    realized_size,
)

P0 = 0.05


@pytest.mark.parametrize(
    ("x", "n", "p"), [(0, 50, 0.05), (7, 100, 0.05), (30, 200, 0.1), (5, 5, 0.3)]
)
def test_binomial_pvalue_equals_scipy_tail(x, n, p):
    # computed independently: upper tail P(X >= x) = sf(x - 1)
    assert binomial_pvalue(x, n, p) == pytest.approx(stats.binom.sf(x - 1, n, p), rel=1e-9)
    assert binomial_pvalue(x, n, p) == pytest.approx(
        stats.binomtest(x, n, p, alternative="greater").pvalue
    )


@pytest.mark.parametrize(
    ("n", "p", "alpha"), [(100, 0.05, 0.01), (20, 0.05, 0.05), (1000, 0.02, 0.001)]
)
def test_critical_count_is_smallest_rejecting_count(n, p, alpha):
    c = critical_count(n, p, alpha)
    assert binomial_pvalue(c, n, p) <= alpha
    assert binomial_pvalue(c - 1, n, p) > alpha
    assert realized_size(n, p, alpha) <= alpha


def test_bad_parameters_raise_value_errors():
    with pytest.raises(ConfigError, match="Expected counts"):
        binomial_pvalue(5, 3, 0.1)
    with pytest.raises(ConfigError, match="p1 > p0"):
        cusum_reference_value(0.1, 0.05)


def test_cusum_detection_delay_matches_expectation():
    n, p1 = 100, 0.10
    k = cusum_reference_value(P0, p1)
    h = 6.0
    rng = np.random.default_rng(3)
    delays = []
    for _ in range(200):
        s, t = 0.0, 0
        while True:
            t += 1
            s = max(0.0, s + rng.binomial(n, p1) - k * n)
            if s > h:
                break
        delays.append(t)
    approx = h / (n * (p1 - k)) + 1  # Wald-type approximation + overshoot batch
    simulated = cusum_arl(p1, n, k, h, n_sims=2000, seed=0)
    assert 0.6 * approx <= np.mean(delays) <= 1.6 * approx
    assert np.mean(delays) == pytest.approx(simulated, rel=0.15)


def test_choose_h_reaches_target_arl0():
    n = 100
    k = cusum_reference_value(P0, 2 * P0)
    h = choose_cusum_h(P0, n, k, target_arl0=100, n_sims=400, seed=0)
    assert cusum_arl(P0, n, k, h, n_sims=400, seed=0) >= 100
    assert cusum_arl(P0, n, k, max(h - 1.0, 0.1), n_sims=400, seed=0) < 100
