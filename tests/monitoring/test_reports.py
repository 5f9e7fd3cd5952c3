from __future__ import annotations

import json
import subprocess
import sys

import pytest
from evidently import Report
from scipy import stats

from odin_monitor.monitoring.evidently_metrics import (
    WIDGET_MARKER,
    OdinOODRate,
    OdinOODRateByClass,
)
from odin_monitor.monitoring.reports import build_report, drift_method_for, save_report

from .helpers import make_scores


def _metric(snapshot, type_suffix):
    for result in snapshot.metric_results.values():
        if result.metric_value_location.metric.params["type"].endswith(type_suffix):
            return result
    raise AssertionError(type_suffix)


@pytest.fixture(scope="module")
def batch():
    from .helpers import make_model

    model = make_model()
    return model, make_scores(300, 0.12, model, seed=5), make_scores(500, 0.05, model, seed=6)


def test_ood_rate_metric_equals_direct_count(batch):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, alpha=0.01, batch_id="b1")
    rate = _metric(snap, ":OdinOODRate")
    assert rate.value == cur["is_ood"].sum() / len(cur)
    by_class = _metric(snap, ":OdinOODRateByClass")
    direct = cur.groupby("predicted_class")["is_ood"].mean()
    assert {int(k): v.value for k, v in by_class.values.items()} == pytest.approx(direct.to_dict())


def test_binomial_test_in_report_matches_scipy(batch):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, alpha=0.01)
    (test,) = _metric(snap, ":OdinOODRate").tests
    x, n = int(cur["is_ood"].sum()), len(cur)
    p = stats.binomtest(x, n, 0.05, alternative="greater").pvalue
    assert test.test_config["p_value"] == pytest.approx(p)
    assert test.status.value == ("FAIL" if p <= 0.01 else "SUCCESS")
    assert test.status.value == "FAIL"  # 12% vs 5% on 300 images


def test_in_distribution_batch_passes(batch):
    model, _, ref = batch
    snap = build_report(make_scores(200, 0.05, model, seed=8), ref, model)
    assert _metric(snap, ":OdinOODRate").tests[0].status.value == "SUCCESS"


def test_drift_method_is_explicit_by_batch_size(batch):
    model, cur, ref = batch
    assert drift_method_for(1000) == "ks" and drift_method_for(1001) == "wasserstein"
    snap = build_report(cur, ref, model)
    drift = _metric(snap, ":ValueDrift")
    assert drift.metric_value_location.metric.params["method"] == "ks"
    big = make_scores(1200, 0.05, model, seed=2)
    snap = build_report(big, ref, model)
    assert (
        _metric(snap, ":ValueDrift").metric_value_location.metric.params["method"] == "wasserstein"
    )


def test_html_contains_widget_and_json_reloads_in_fresh_process(batch, tmp_path):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, batch_id="b/1")
    html, js = save_report(snap, tmp_path, model, "b/1")
    text = html.read_text(encoding="utf-8")
    assert WIDGET_MARKER in text and "OOD rate by predicted class" in text
    # reload with Evidently only: our package is never imported in that process
    code = (
        "import json, sys; from evidently.core.report import Snapshot;"
        f"s = Snapshot.load({str(js)!r});"
        "assert 'odin_monitor' not in sys.modules;"
        "print(json.dumps(s.dict()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reloaded = json.loads(out.stdout)
    names = [m["metric_name"] for m in reloaded["metrics"]]
    assert any(n.startswith("OdinOODRate(") for n in names)
    assert any(t["id"] == "odin_ood_rate_binomial" for t in reloaded["tests"])


def test_metrics_usable_directly_in_a_report(batch):
    _, cur, _ = batch
    from evidently import DataDefinition, Dataset

    dd = DataDefinition(numerical_columns=["spread_score"], categorical_columns=["is_ood"])
    snap = Report([OdinOODRate(expected_rate=0.05), OdinOODRateByClass()]).run(
        Dataset.from_pandas(cur, data_definition=dd), None
    )
    assert _metric(snap, ":OdinOODRate").tests == []  # include_tests=False
