from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from odin_monitor.monitoring.alerts import BinomialSpikeRule, CusumRule
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.schema import ModelRef
from odin_monitor.monitoring.scorelog import BatchRecord
from odin_monitor.monitoring.stats import (
    binomial_pvalue,
    choose_cusum_h,
    critical_count,
    cusum_arl,
    cusum_path,
    cusum_reference_value,
    realized_size,
)

P0 = 0.05
MODEL = ModelRef("m", "1", "0" * 64, 0.1, 2.0, 1 - P0)


def records(counts, n):
    return [
        BatchRecord(i + 1, f"b{i}", "2024-01-01T00:00:00+00:00", MODEL, n, int(x), "t")
        for i, x in enumerate(counts)
    ]


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
    with pytest.raises(ValueError, match="Expected alpha"):
        BinomialSpikeRule(alpha=1.5)
    with pytest.raises(ConfigError, match="Expected counts"):
        binomial_pvalue(5, 3, 0.1)
    with pytest.raises(ConfigError, match="p1 > p0"):
        cusum_reference_value(0.1, 0.05)
    with pytest.raises(ValueError, match="positive CUSUM h"):
        CusumRule(h=0)


def test_spike_false_alarm_rate_matches_alpha_on_in_distribution_stream():
    rng = np.random.default_rng(7)
    n, alpha, batches = 200, 0.05, 2000
    counts = rng.binomial(n, P0, size=batches)
    rule = BinomialSpikeRule(alpha=alpha)
    hist = records(counts, n)
    fired = sum(bool(rule.evaluate(hist[: i + 1])) for i in range(batches))
    size = realized_size(n, P0, alpha)
    # discrete test: exact size <= alpha, and not far below it
    assert alpha / 2 < size <= alpha
    lo, hi = stats.binom.interval(0.999, batches, size)
    assert lo <= fired <= hi
    assert fired / batches <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / batches)


def test_spike_alert_payload():
    hist = records([2, 3, 25], 100)
    (alert,) = BinomialSpikeRule(alpha=0.01).evaluate(hist)
    assert alert.batch_ids == ("b2",)
    assert alert.observed_rate == 0.25 and alert.expected_rate == P0
    assert alert.p_value == pytest.approx(stats.binom.sf(24, 100, P0))
    assert alert.to_dict()["batch_ids"] == ["b2"]


def test_cusum_quiet_on_stationary_stream_and_catches_step():
    n, p1 = 200, 2 * P0
    k = cusum_reference_value(P0, p1)
    assert P0 < k < p1
    h = 8.0
    rng = np.random.default_rng(1)
    quiet = rng.binomial(n, P0, size=300)
    _, alarm = cusum_path(quiet, [n] * 300, k, h)
    assert alarm.sum() <= 1
    shifted = np.concatenate([quiet[:100], rng.binomial(n, p1, size=50)])
    _, alarm = cusum_path(shifted, [n] * 150, k, h)
    first = int(np.argmax(alarm[100:])) if alarm[100:].any() else None
    assert first is not None and first < 10
    # the rule over records agrees with the raw path
    rule = CusumRule(h=h, k=k)
    hist = records(shifted, n)
    fired_at = [i for i in range(150) if rule.evaluate(hist[: i + 1])]
    assert fired_at and fired_at[0] == int(np.flatnonzero(alarm)[0])
    alert = rule.evaluate(hist[: fired_at[0] + 1])[0]
    assert alert.rule == "cusum" and alert.statistic > h and alert.p_value is None


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


def test_spread_of_ingested_logs_matches_the_core():
    """`spread_transform` rebuilds the core's spread score from S alone: they must agree."""
    import torch

    from odin_monitor.monitoring.schema import spread_transform
    from odin_monitor.scoring import max_softmax, spread_score

    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 4
    for t in (1.0, 1000.0):
        rebuilt = spread_transform(max_softmax(logits, t).numpy(), t, 10)
        np.testing.assert_allclose(rebuilt, spread_score(logits, t).numpy(), rtol=1e-9, atol=1e-9)
