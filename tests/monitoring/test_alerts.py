from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from odin_monitor.monitoring.alerts import Alert, BinomialSpikeRule, CusumRule, evaluate_rules
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.schema import ModelRef
from odin_monitor.monitoring.stats import cusum_path, cusum_reference_value, realized_size
from tests.monitoring.helpers import make_alert

P0 = 0.05
MODEL = ModelRef("m", "1", "0" * 64, 0.1, 2.0, 1 - P0)


def records(counts, n):
    return [
        BatchRecord(i + 1, f"b{i}", "2024-01-01T00:00:00+00:00", MODEL, n, int(x), "t")
        for i, x in enumerate(counts)
    ]


def test_bad_rule_parameters_raise_value_errors():
    with pytest.raises(ValueError, match="Expected alpha"):
        BinomialSpikeRule(alpha=1.5)
    with pytest.raises(ValueError, match="positive CUSUM h"):
        CusumRule(h=0)


def test_alert_is_json_serialisable_and_roundtrips():
    a = make_alert()
    assert Alert.from_dict(json.loads(a.to_json())) == a


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


def test_rules_are_pure_and_their_alert_ids_deterministic():
    hist = records([2, 3, 25], 100)
    rules = (BinomialSpikeRule(alpha=0.01), CusumRule(h=5.0, shift=2.0))
    first, again = evaluate_rules(rules, hist), evaluate_rules(rules, hist)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert {a.rule for a in first} == {"binomial_spike", "cusum"}
    assert evaluate_rules(rules, hist[:1]) == []  # in-distribution batch: quiet
