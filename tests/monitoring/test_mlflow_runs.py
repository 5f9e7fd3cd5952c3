"""MLflow monitoring runs on a real sqlite store: one FINISHED run per batch under a
FINISHED run per day, figures checked against the scores, retries adding no run."""

from __future__ import annotations

import time
import uuid

import pytest
from scipy.stats import binom

from odin_monitor.monitoring import (
    BinomialSpikeRule,
    CusumRule,
    MonitorConfig,
    ScoreLog,
    process_batch,
)
from odin_monitor.monitoring.delivery import deliver_pending, flush_deliveries
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.mlflow_runs import (
    MlflowNotifier,
    parse_utc,
    short_batch_id,
)
from tests.monitoring.helpers import make_scores

# Two batches on one day, an alerting one on the next.
BATCHES = [
    ("b-quiet-1", 0.05, "2026-12-01T09:00:00+00:00"),
    ("b-quiet-2", 0.04, "2026-12-01T17:30:00+00:00"),
    ("b-spike", 0.25, "2026-12-02T08:15:00+00:00"),
]
N = 200


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    """One sqlite store for the module (creating one takes seconds); one experiment per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def notifier(mlflow_uri) -> MlflowNotifier:
    return MlflowNotifier(mlflow_uri, experiment_name=f"mon-{uuid.uuid4().hex[:8]}")


def _runs(notifier: MlflowNotifier, kind: str | None = None) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(notifier.tracking_uri)
    exp = client.get_experiment_by_name(notifier.experiment_name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if kind is None or r.data.tags.get("odin.kind") == kind]


def _expected_figures(frame, model) -> dict[str, float]:
    """The batch's figures straight from its scores (not from the score log)."""
    n = len(frame)
    x = int((frame["odin_score"] < model.threshold).sum())
    p0 = 1.0 - model.tpr_target
    return {
        "n_images": float(n),
        "n_ood": float(x),
        "ood_rate": x / n,
        "expected_rate": p0,
        "p_value": float(binom.sf(x - 1, n, p0)),
    }


def _monitor(tmp_path, notifier, model):
    config = MonitorConfig(
        log=ScoreLog(tmp_path / "scores.db"),
        quarantine_dir=tmp_path / "quarantine",
        rules=(BinomialSpikeRule(alpha=0.01), CusumRule(h=5.0, shift=2.0)),
        notifiers=(notifier,),
    )
    frames, results = {}, {}
    for i, (bid, rate, created) in enumerate(BATCHES):
        frames[bid] = make_scores(N, rate, model, seed=i)
        results[bid] = process_batch(
            model, config, scores=frames[bid], batch_id=bid, created_at=created
        )
    assert flush_deliveries(60.0)
    return config, frames, results


def test_one_finished_run_per_batch_under_a_finished_run_per_day(tmp_path, notifier, model):
    _, frames, results = _monitor(tmp_path, notifier, model)
    assert [bool(results[b].alerts) for b, _, _ in BATCHES] == [False, False, True]
    assert all(not r.errors for r in results.values())

    runs = _runs(notifier)
    assert {r.info.status for r in runs} == {"FINISHED"}  # nothing shown as running
    batch_runs = {r.data.tags["odin.batch"]: r for r in _runs(notifier, "batch")}
    day_runs = {r.data.tags["odin.day"]: r for r in _runs(notifier, "day")}
    assert sorted(batch_runs) == sorted(b for b, _, _ in BATCHES)
    assert sorted(day_runs) == ["2026-12-01", "2026-12-02"]
    assert len(runs) == 5

    for bid, _, created in BATCHES:
        run = batch_runs[bid]
        day = created[:10]
        assert run.data.tags["mlflow.parentRunId"] == day_runs[day].info.run_id
        assert run.info.run_name == f"{model.name} v{model.version} batch {bid}"
        assert run.info.start_time == int(parse_utc(created).timestamp() * 1000)
        assert run.info.end_time == run.info.start_time  # a batch is an instant
        tags = run.data.tags
        assert tags["odin.model"] == model.name
        assert tags["odin.version"] == model.version
        assert tags["odin.calibration"] == model.calibration_sha256
        expected = _expected_figures(frames[bid], model)
        alerts = results[bid].alerts
        expected["alert"] = 1.0 if alerts else 0.0
        for a in alerts:
            expected[f"{a.rule}_statistic"] = a.statistic
        assert run.data.metrics == pytest.approx(expected, rel=1e-9)
        rules = sorted(a.rule for a in alerts)
        assert tags.get("odin.alerts", "") == ",".join(rules)
        note = tags["mlflow.note.content"]
        assert f"{expected['n_ood']:.0f} of {N} images OOD" in note
        for a in alerts:
            assert tags[f"odin.alert.{a.rule}"] == a.alert_id
            assert a.message in note

    for day, run in day_runs.items():
        mine = [b for b, _, c in BATCHES if c.startswith(day)]
        n = sum(len(frames[b]) for b in mine)
        x = sum(int((frames[b]["odin_score"] < model.threshold).sum()) for b in mine)
        assert run.info.run_name == f"{model.name} v{model.version} {day}"
        times = [int(parse_utc(c).timestamp() * 1000) for b, _, c in BATCHES if b in mine]
        assert (run.info.start_time, run.info.end_time) == (min(times), max(times))
        assert run.data.metrics == pytest.approx(
            {
                "n_batches": float(len(mine)),
                "n_images": float(n),
                "n_ood": float(x),
                "ood_rate": x / n,
                "n_alerted": float(sum(bool(results[b].alerts) for b in mine)),
            }
        )


def test_retried_delivery_adds_no_run_and_no_metric_point(tmp_path, notifier, model):
    """The outbox sends an alert again after a failure that came once it was written."""
    from mlflow.tracking import MlflowClient

    class TimesOutAfterWriting(MlflowNotifier):
        backoff = 0.01  # outbox retry delay base, seconds
        failures = 1

        def send(self, alert):
            super().send(alert)
            if self.failures:
                self.failures -= 1
                raise TimeoutError("answer lost after the write")

    flaky = TimesOutAfterWriting(notifier.tracking_uri, notifier.experiment_name)
    config, _, results = _monitor(tmp_path, flaky, model)
    pending = config.log.pending_deliveries()
    assert pending  # the failed alert (and the one after it) wait in the outbox
    time.sleep(0.05)  # past the retry delay
    delivered, failed = deliver_pending(config.log, [flaky])
    assert (delivered, failed) == (len(pending), 0) and not config.log.pending_deliveries()

    spike = [r for r in _runs(flaky, "batch") if r.data.tags["odin.batch"] == "b-spike"]
    assert len(spike) == 1 and len(_runs(flaky, "batch")) == 3 and len(_runs(flaky, "day")) == 2
    client = MlflowClient(flaky.tracking_uri)
    assert [m.value for m in client.get_metric_history(spike[0].info.run_id, "alert")] == [0, 1]
    # Direct repeats of both writes change nothing either.
    flaky.record_batch(results["b-spike"].record)
    for alert in results["b-spike"].alerts:
        flaky.send(alert)
    again = _runs(flaky)
    assert len(again) == 5 and {r.info.status for r in again} == {"FINISHED"}
    history = client.get_metric_history(spike[0].info.run_id, "alert")
    assert [m.value for m in history] == [0, 1]
    assert len(client.get_metric_history(spike[0].info.run_id, "n_images")) == 1


def test_alert_before_its_batch_keeps_alert_1(log, model, notifier):
    """If the batch's own write failed, the alert creates the run; the batch fills it later."""
    frame = make_scores(N, 0.25, model, seed=7)
    record, _ = log.write_batch("late", model, frame, created_at="2026-12-03T10:00:00+00:00")
    (alert,) = BinomialSpikeRule(alpha=0.01).evaluate([record])
    notifier.send(alert)
    (run,) = _runs(notifier, "batch")
    expected = _expected_figures(frame, model)
    assert run.data.metrics == pytest.approx(
        {**expected, "alert": 1.0, "binomial_spike_statistic": expected["n_ood"]}
    )
    notifier.record_batch(record)
    (run,) = _runs(notifier, "batch")
    assert run.data.metrics["alert"] == 1.0 and run.info.status == "FINISHED"
    assert alert.message in run.data.tags["mlflow.note.content"]
    (day,) = _runs(notifier, "day")
    assert day.data.metrics["n_alerted"] == 1.0 and day.info.status == "FINISHED"


def test_deleted_experiment_is_a_clear_error(notifier, log, model):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(notifier.tracking_uri)
    client.delete_experiment(client.create_experiment(notifier.experiment_name))
    record, _ = log.write_batch("b0", model, make_scores(50, 0.05, model))
    with pytest.raises(ConfigError, match=r"Expected the MLflow experiment .* to be active"):
        notifier.record_batch(record)


def test_short_batch_ids_and_timestamps():
    assert short_batch_id("sha256-" + "0123456789abcdef" * 2) == "0123456789ab"
    assert short_batch_id("x" * 30) == "x" * 23 + "…"
    assert parse_utc("2026-12-02T10:00:00").isoformat() == "2026-12-02T10:00:00+00:00"
    with pytest.raises(ConfigError, match="Expected an ISO-8601 timestamp"):
        parse_utc("yesterday")
