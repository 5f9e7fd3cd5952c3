"""Prometheus metrics of the score log (scraped over HTTP) and the shipped alerting rules."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from odin_monitor.monitoring import (
    BinomialSpikeRule,
    CusumRule,
    MonitorConfig,
    ScoreLog,
    process_batch,
)
from odin_monitor.monitoring.prometheus import OdinCollector, calibration_labels, serve_metrics
from odin_monitor.monitoring.stats import binomial_pvalue
from tests.monitoring.helpers import free_port, make_scores

RULES_DIR = Path(__file__).resolve().parents[2] / "examples" / "prometheus"


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(samples: dict[tuple, float], **labels) -> float:
    return sum(v for k, v in samples.items() if set(labels.items()) <= set(k))


def test_metrics_match_the_batches_and_survive_a_restart(tmp_path, log, model, reference):
    rules = (BinomialSpikeRule(alpha=0.01), CusumRule(h=5.0, shift=2.0))
    config = MonitorConfig(log=log, quarantine_dir=tmp_path / "q", rules=rules, notifiers=())
    frames = [make_scores(200, r, model, seed=i) for i, r in enumerate([0.05, 0.04, 0.3])]
    collector = OdinCollector(
        log, rules=rules, calibration=calibration_labels(model, epsilon=0.0014, alias="champion")
    )
    port = free_port()
    server = serve_metrics(collector, port)
    try:
        for i, f in enumerate(frames):
            process_batch(model, config, scores=f, batch_id=f"b{i}", reference=reference)
        got = scrape(port)
    finally:
        server.shutdown()
    allf = __import__("pandas").concat(frames, ignore_index=True)
    for cls, group in allf.groupby("predicted_class"):
        labels = {"model": model.name, "version": model.version, "predicted_class": str(cls)}
        assert total(got["odin_images_scored_total"], **labels) == len(group)
        assert total(got["odin_images_ood_total"], **labels) == group["is_ood"].sum()
    assert total(got["odin_batches_total"], status="ok") == 2
    assert total(got["odin_batches_total"], status="alert") == 1
    last = frames[-1]
    assert total(got["odin_batch_ood_rate"]) == pytest.approx(last["is_ood"].mean())
    assert total(got["odin_batch_p_value"]) == pytest.approx(
        binomial_pvalue(int(last["is_ood"].sum()), len(last), 0.05)
    )
    assert total(got["odin_expected_ood_rate"]) == pytest.approx(0.05)
    history = log.history(model.name, model.version)
    assert total(got["odin_cusum_statistic"]) == pytest.approx(rules[1].path(history)[0][-1])
    spread = allf["spread_score"].to_numpy()
    buckets = got["odin_spread_score_bucket"]
    le = {float(dict(k)["le"]): v for k, v in buckets.items()}
    assert le[float("inf")] == len(allf)
    at_delta = min(le, key=lambda b: abs(b - model.threshold_spread))
    assert le[at_delta] == np.sum(spread <= at_delta)
    assert total(got["odin_spread_score_sum"]) == pytest.approx(spread.sum())
    (info,) = got["odin_calibration_info"]
    assert dict(info)["alias"] == "champion" and dict(info)["epsilon"] == "0.0014"
    assert total(got["odin_last_batch_timestamp_seconds"]) > 1e9

    # A restarted monitor rebuilds every counter from the score log: no reset for rate().
    port2 = free_port()
    server = serve_metrics(OdinCollector(log, rules=rules), port2)
    try:
        again = scrape(port2)
    finally:
        server.shutdown()
    for name in ("odin_images_scored_total", "odin_images_ood_total", "odin_batches_total"):
        assert again[name] == got[name]
    assert again["odin_spread_score_bucket"] == got["odin_spread_score_bucket"]


def test_counters_of_the_monitored_model_exist_at_zero_before_any_batch(tmp_path, log, model):
    # rate()/increase() need a sample before the first batch, or its counts are missed.
    config = MonitorConfig(log=log, quarantine_dir=tmp_path / "q", notifiers=())
    collector = OdinCollector(log, models=[model])
    port = free_port()
    server = serve_metrics(collector, port)
    try:
        before = scrape(port)
        first = make_scores(200, 0.05, model, seed=0)
        process_batch(model, config, scores=first, batch_id="b0")
        after = scrape(port)
    finally:
        server.shutdown()
    mv = {"model": model.name, "version": model.version}
    for name in ("odin_images_scored_total", "odin_images_ood_total"):
        assert sorted(before[name]) == sorted(
            tuple(sorted({**mv, "predicted_class": str(k)}.items())) for k in range(10)
        )
        assert set(before[name].values()) == {0.0}
        assert set(after[name]) == set(before[name])  # the same series, now counting
    assert {dict(k)["status"]: v for k, v in before["odin_batches_total"].items()} == {
        "ok": 0.0,
        "alert": 0.0,
        "quarantined": 0.0,
    }
    assert total(after["odin_images_scored_total"]) == 200
    assert total(after["odin_images_ood_total"]) == first["is_ood"].sum()
    assert total(after["odin_batches_total"], status="ok") == 1
    # A model never declared appears with its first batch, as before.
    assert "odin_images_scored_total" not in scrape_once(OdinCollector(ScoreLog(tmp_path / "e.db")))


def scrape_once(collector: OdinCollector) -> dict[str, dict[tuple, float]]:
    port = free_port()
    server = serve_metrics(collector, port)
    try:
        return scrape(port)
    finally:
        server.shutdown()


def test_quarantined_batches_are_counted(tmp_path, log, model):
    from odin_monitor.monitoring.pipeline import quarantine_batch

    config = MonitorConfig(log=log, quarantine_dir=tmp_path / "q", notifiers=())
    quarantine_batch(model, config, "bad", "Expected finite scores", None)
    collector = OdinCollector(log)
    families = {f.name: f for f in collector.collect()}
    (sample,) = families["odin_batches"].samples
    assert sample.labels["status"] == "quarantined" and sample.value == 1


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_shipped_rules_are_valid_and_pass_their_unit_tests():
    check = subprocess.run(
        [PROMTOOL, "check", "rules", "odin_rules.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [PROMTOOL, "test", "rules", "odin_rules_test.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    config = subprocess.run(
        [PROMTOOL, "check", "config", "prometheus.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr
