from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from evidently.core.report import Snapshot

from odin_monitor.monitoring import BinomialSpikeRule, MonitorConfig, process_batch
from odin_monitor.monitoring.pipeline import batch_is_complete
from odin_monitor.monitoring.reports import PANEL_TITLE, dashboard_panels, describe_project
from odin_monitor.monitoring.result import EXIT_ALERT, EXIT_DEGRADED, EXIT_OK, EXIT_QUARANTINED
from tests.monitoring.helpers import fake_scorer_for, make_scores


def images(n: int, dark_share: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_dark = round(n * dark_share)
    means = np.concatenate([rng.uniform(0.0, 0.15, n_dark), rng.uniform(0.3, 0.9, n - n_dark)])
    return (np.ones((n, 3, 4, 4)) * means[:, None, None, None]).astype(np.float32)


def test_end_to_end_scored_batch(config, model, reference):
    scorer = fake_scorer_for(model)
    res = process_batch(
        model, config, images=images(100, 0.05), scorer=scorer, reference=reference, batch_id="b1"
    )
    assert res.exit_code == EXIT_OK and not res.errors
    assert res.record.n_ood == 5 and res.record.source == "scorer"
    assert config.log.batch_ids() == ["b1"]
    snap = Snapshot.load(res.json_path)
    assert snap.get_name().endswith("batch b1")
    assert config.log.get_report("b1")["snapshot_id"] == res.snapshot_id

    spike = process_batch(model, config, images=images(100, 0.3), scorer=scorer, batch_id="b2")
    assert spike.exit_code == EXIT_ALERT
    rules = {a.rule for a in spike.alerts}
    assert "binomial_spike" in rules
    alert = next(a for a in spike.alerts if a.rule == "binomial_spike")
    assert alert.batch_ids == ("b2",) and alert.report_path == spike.html_path
    assert alert.calibration_sha256 == model.calibration_sha256
    assert {r["status"] for r in config.log.outbox()} == {"delivered"}


def test_rescoring_same_batch_is_idempotent(config, model, reference):
    scorer = fake_scorer_for(model)
    batch = images(50, 0.1)
    first = process_batch(model, config, images=batch, scorer=scorer, reference=reference)
    again = process_batch(model, config, images=batch.copy(), scorer=scorer)
    assert again.duplicate and again.batch_id == first.batch_id
    assert again.record == first.record and again.html_path == first.html_path
    assert scorer.calls == 1
    assert config.log.batch_ids() == [first.batch_id]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (np.full((4, 3, 4, 4), np.nan, dtype=np.float32), "Expected finite pixel values"),
        (np.zeros((3, 4, 4), dtype=np.float32), "Expected 4 dimensions"),
        (np.full((2, 3, 4, 4), 2.0, dtype=np.float32), "Expected pixel values in \\[0, 1\\]"),
        (np.zeros((2, 3, 4, 4), dtype=np.uint8), "Expected float images"),
    ],
)
def test_unreadable_arrays_are_quarantined_and_loop_goes_on(config, model, reference, bad, reason):
    scorer = fake_scorer_for(model)
    res = process_batch(
        model, config, images=bad, scorer=scorer, reference=reference, batch_id="bad"
    )
    assert res.quarantined and res.exit_code == EXIT_QUARANTINED
    (row,) = config.log.quarantined()
    assert row["batch_id"] == "bad"
    import re

    assert re.search(reason, row["reason"])
    assert config.log.batch_ids() == [] and scorer.calls == 0
    ok = process_batch(model, config, images=images(20, 0.0), scorer=scorer)
    assert ok.exit_code == EXIT_OK


def test_corrupt_file_is_moved_to_quarantine(config, model, reference, tmp_path):
    path = tmp_path / "incoming" / "batch7.npy"
    path.parent.mkdir()
    path.write_bytes(b"\x93NUMPY garbage")
    res = process_batch(
        model, config, images=path, scorer=fake_scorer_for(model), reference=reference
    )
    assert res.quarantined and "Expected a readable .npy" in res.quarantine_reason
    (row,) = config.log.quarantined()
    assert not path.exists()
    moved = config.quarantine_dir / f"{res.batch_id}__batch7.npy"
    assert row["quarantined_path"] == str(moved) and moved.read_bytes().startswith(b"\x93NUMPY")


def test_scorer_output_mismatch_is_quarantined(config, model, reference):
    def short_scorer(x):
        return make_scores(len(x) - 1, 0.0, model)

    res = process_batch(
        model, config, images=images(10, 0.0), scorer=short_scorer, reference=reference
    )
    assert "Expected one score row per image" in res.quarantine_reason


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ingest_serving_log_without_rerunning_model(config, model, reference, tmp_path, suffix):
    full = make_scores(200, 0.15, model, seed=4)
    partial = full[["odin_score"]]  # only the score: is_ood and spread derived
    path = tmp_path / f"serving{suffix}"
    partial.to_csv(path, index=False) if suffix == ".csv" else partial.to_parquet(path)
    res = process_batch(model, config, scores=path, reference=reference)
    assert res.record.n_ood == int(full["is_ood"].sum())
    assert res.record.source.startswith("ingest:")
    stored = config.log.read_scores(res.batch_id)
    np.testing.assert_allclose(stored["spread_score"], full["spread_score"])
    assert (stored["predicted_class"] == -1).all()
    assert res.exit_code == EXIT_ALERT  # 15% vs 5%
    assert process_batch(model, config, scores=path).duplicate


def test_report_failure_does_not_lose_the_batch(config, model, reference, monkeypatch):
    from odin_monitor.monitoring import reports

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(reports, "build_report", boom)
    res = process_batch(
        model, config, scores=make_scores(100, 0.05, model), reference=reference, batch_id="kept"
    )
    assert res.exit_code == EXIT_DEGRADED and "disk full" in res.errors[0]
    assert config.log.batch_ids() == ["kept"]


def test_dead_webhook_does_not_stop_scoring(tmp_path, log, model, reference):
    from odin_monitor.monitoring import LogNotifier, WebhookNotifier
    from tests.monitoring.helpers import Hook, free_port

    port = free_port()
    hook = WebhookNotifier(f"http://127.0.0.1:{port}/a", retries=0, timeout=1.0, backoff=0.05)
    cfg = MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(LogNotifier(), hook),
    )
    r1 = process_batch(
        model, cfg, scores=make_scores(100, 0.3, model), reference=reference, batch_id="spike"
    )
    assert r1.alerts and r1.undelivered == 1 and r1.exit_code == EXIT_ALERT
    server = Hook(port=port)
    time.sleep(0.2)  # past the row's retry time (backoff 0.05 s)
    try:
        r2 = process_batch(
            model, cfg, scores=make_scores(100, 0.05, model, seed=2), batch_id="calm"
        )
        assert not r2.alerts and r2.delivered == 1
        assert server.received[0]["batch_ids"] == ["spike"]
    finally:
        server.close()
    assert log.batch_ids() == ["spike", "calm"]


def test_workspace_has_one_project_per_model_with_panel(config, model, reference):
    from evidently.ui.workspace import Workspace

    for i in range(2):
        process_batch(
            model,
            config,
            scores=make_scores(100, 0.05, model, seed=i),
            reference=reference,
            batch_id=f"b{i}",
        )
    ws = Workspace(str(config.workspace_dir))
    (project,) = ws.list_projects()
    assert project.name == model.name
    assert len(ws.list_runs(project.id)) == 2
    panels = project.dashboard.model().panels  # the second batch added none again
    assert [p.title for p in panels] == [p.title for p in dashboard_panels("")]
    assert panels[1].title == PANEL_TITLE
    assert project.description == describe_project(model)
    assert panels[0].subtitle == project.description


def test_an_older_workspace_gains_the_new_panels_once(config, model, reference):
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel
    from evidently.ui.workspace import Workspace

    ws = Workspace(str(config.workspace_dir))  # what earlier versions created
    old = ws.create_project(model.name, description=f"ODIN OOD monitoring of {model.name}")
    old.dashboard.add_panel(
        line_plot_panel(
            title=PANEL_TITLE, values=[PanelMetric(legend="OOD rate", metric="OdinOODRate")]
        ),
        tab="ODIN",
    )
    for i in range(2):
        process_batch(
            model,
            config,
            scores=make_scores(50, 0.05, model, seed=i),
            reference=reference,
            batch_id=f"b{i}",
        )
    ws = Workspace(str(config.workspace_dir))
    (project,) = ws.list_projects()
    assert project.id == old.id and len(ws.list_runs(project.id)) == 2
    dashboard = ws.get_dashboard(project.id)
    wanted = [p.title for p in dashboard_panels("")]
    assert [p.title for p in dashboard.panels] == wanted
    (tab,) = dashboard.tabs
    assert [p.title for p in dashboard.panels if p.id in tab.panels] == wanted
    assert len(tab.panels) == len(wanted)
    assert project.description == describe_project(model)


def test_html_only_for_the_batch_that_alerts_json_and_snapshot_for_every_batch(
    config, model, reference
):
    from evidently.ui.workspace import Workspace

    rates = [0.05, 0.04, 0.30, 0.05, 0.06]
    results = [
        process_batch(
            model,
            config,
            scores=make_scores(200, r, model, seed=i),
            reference=reference if i == 0 else None,
            batch_id=f"b{i}",
        )
        for i, r in enumerate(rates)
    ]
    alerting = [r.batch_id for r in results if r.alerts]
    assert alerting == ["b2"]  # 30% of 200 vs 5%; CUSUM too, on the same batch
    files = sorted(p.relative_to(config.report_dir) for p in Path(config.report_dir).rglob("*"))
    folder = Path(model.name) / model.version
    assert [f for f in files if f.suffix == ".html"] == [folder / "b2.html"]
    assert [f for f in files if f.suffix == ".json"] == [folder / f"b{i}.json" for i in range(5)]
    ws = Workspace(str(config.workspace_dir))
    (project,) = ws.list_projects()
    assert len(ws.list_runs(project.id)) == len(rates)
    spike = results[2]
    assert spike.html_path == str(Path(config.report_dir) / folder / "b2.html")
    assert {a.report_path for a in spike.alerts} == {spike.html_path}
    assert [r.html_path for r in results if r is not spike] == [None] * 4
    # a batch without alerts and without HTML is complete: nothing is rebuilt on revisit
    assert all(batch_is_complete(config, f"b{i}") for i in range(5))
    again = process_batch(
        model, config, scores=make_scores(200, 0.05, model, seed=0), batch_id="b0"
    )
    assert again.duplicate and not again.report_rebuilt and again.html_path is None


def test_a_deleted_html_page_of_a_quiet_batch_is_forgotten_not_rebuilt(config, model, reference):
    """Earlier versions wrote HTML for every batch; deleting those pages frees the disk."""
    scores = make_scores(100, 0.05, model, seed=4)
    first = process_batch(model, config, scores=scores, reference=reference, batch_id="q")
    row = config.log.get_report("q")
    gone = Path(first.json_path).with_suffix(".html")  # as an earlier version recorded it
    config.log.record_report("q", **{**{k: row[k] for k in _REPORT_KEYS}, "html_path": str(gone)})
    assert not batch_is_complete(config, "q")
    again = process_batch(model, config, scores=scores, batch_id="q")
    assert not again.report_rebuilt and again.html_path is None and not gone.exists()
    assert batch_is_complete(config, "q")


_REPORT_KEYS = ("html_path", "json_path", "project_id", "snapshot_id")


def test_bad_arguments_raise_clear_errors(config, model):
    with pytest.raises(ValueError, match="exactly one of images= or scores="):
        process_batch(model, config)
    with pytest.raises(ValueError, match="Expected a scorer"):
        process_batch(model, config, images=images(2, 0.0))


def test_crash_after_commit_loses_no_alert(config, model, reference, monkeypatch):
    """The process dies while the report is built: the re-run still raises the alerts."""
    from odin_monitor.monitoring import reports

    scorer = fake_scorer_for(model)
    process_batch(model, config, images=images(100, 0.05), scorer=scorer, reference=reference)

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # not an Exception: like SIGINT or os._exit mid-report

    monkeypatch.setattr(reports, "build_report", die)
    with pytest.raises(KeyboardInterrupt):
        process_batch(model, config, images=images(100, 0.3), scorer=scorer, batch_id="spike")
    stored = {r["alert_id"] for r in config.log.outbox()}
    assert stored, "the alert was stored before the report started"
    monkeypatch.undo()
    again = process_batch(model, config, images=images(100, 0.3), scorer=scorer, batch_id="spike")
    assert again.duplicate and again.exit_code == EXIT_ALERT
    assert {a.alert_id for a in again.alerts} == stored
    assert len(config.log.outbox()) == len(stored) * len(config.notifiers)  # nothing doubled
    assert {r["status"] for r in config.log.outbox()} == {"delivered"}


def test_batch_committed_by_another_process_meanwhile_is_a_duplicate(config, model, reference):
    scorer = fake_scorer_for(model)
    batch = images(50, 0.1)
    first = process_batch(
        model, config, images=batch, scorer=scorer, reference=reference, batch_id="r"
    )
    real_get = config.log.get_batch
    calls = []

    def get_batch(bid):  # the first check ran just before the other process committed
        calls.append(bid)
        return None if len(calls) == 1 else real_get(bid)

    config.log.get_batch = get_batch
    try:
        again = process_batch(model, config, images=batch, scorer=scorer, batch_id="r")
    finally:
        config.log.get_batch = real_get
    assert again.duplicate and again.record == first.record
    assert again.html_path == first.html_path and config.log.batch_ids() == ["r"]


# --------------------------------------------------------------- nothing lost, nothing blocked
REPO = Path(__file__).resolve().parents[2]


def _run_and_kill_after_commit(tmp_path: Path, batch_id: str) -> subprocess.CompletedProcess:
    """Run process_batch on a 50%-OOD batch in a child killed (SIGKILL) right after the commit."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from odin_monitor.monitoring import (BinomialSpikeRule, JsonlNotifier, MonitorConfig,
            ScoreLog, process_batch)
        from odin_monitor.monitoring.scorelog import ScoreLog as Log
        from tests.monitoring.helpers import make_model, make_scores
        tmp = Path({str(tmp_path)!r})
        model = make_model()
        original = Log.write_batch
        def write_then_die(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # between the commit and anything after it
            return out
        Log.write_batch = write_then_die
        cfg = MonitorConfig(log=ScoreLog(tmp / "scores.db"), quarantine_dir=tmp / "q",
            rules=(BinomialSpikeRule(alpha=0.01),),
            notifiers=(JsonlNotifier(tmp / "alerts.jsonl"),))
        process_batch(model, cfg, scores=make_scores(100, 0.5, model),
            reference=make_scores(500, 0.05, model, seed=123), batch_id={batch_id!r})
        """
    )
    return subprocess.run([sys.executable, "-c", script], cwd=str(REPO), timeout=120)


def test_kill_9_between_commit_and_alert_storage_loses_no_alert(tmp_path, model):
    from odin_monitor.monitoring import JsonlNotifier, ScoreLog

    proc = _run_and_kill_after_commit(tmp_path, "daily-spike")
    assert proc.returncode == -9
    log = ScoreLog(tmp_path / "scores.db")
    assert log.batch_ids() == ["daily-spike"]
    # The alert was stored in the batch's own transaction, so it survived the kill ...
    (pending,) = log.pending_deliveries()
    assert pending[1] == "jsonl" and pending[2]["batch_ids"] == ["daily-spike"]
    assert log.get_batch("daily-spike").rules_checked
    # ... and a restarted monitor delivers it while processing the next batch.
    cfg = MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(JsonlNotifier(tmp_path / "alerts.jsonl"),),
    )
    process_batch(model, cfg, scores=make_scores(100, 0.05, model, seed=5), batch_id="calm")
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["batch_ids"] for line in lines] == [["daily-spike"]]
    assert json.loads(lines[0])["n_ood"] == 50  # the alert is about the 50%-OOD batch


def test_rules_are_checked_again_for_a_batch_committed_without_alerts(tmp_path, log, model):
    """A batch committed by an older version (no alerts stored) gets them on a revisit."""
    from odin_monitor.monitoring import JsonlNotifier
    from odin_monitor.monitoring.pipeline import batch_is_complete, revisit_batch

    spike = make_scores(100, 0.5, model)
    log.write_batch("old", model, spike)  # committed without alerts_for: rules not checked
    cfg = MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(JsonlNotifier(tmp_path / "alerts.jsonl"),),
    )
    assert not batch_is_complete(cfg, "old") and log.outbox() == []
    res = revisit_batch(model, cfg, "old")
    assert res.duplicate and [a.batch_ids for a in res.alerts] == [("old",)]
    assert batch_is_complete(cfg, "old")
    assert [r["status"] for r in log.outbox()] == ["delivered"]
    revisit_batch(model, cfg, "old")  # idempotent: nothing stored or sent twice
    assert len(log.outbox()) == 1
    assert (tmp_path / "alerts.jsonl").read_text().count("\n") == 1


def test_reused_batch_id_with_other_content_is_refused(config, model, reference):
    from odin_monitor.monitoring import BatchIdConflictError

    scorer = fake_scorer_for(model)
    first = process_batch(
        model,
        config,
        images=images(40, 0.05),
        scorer=scorer,
        reference=reference,
        batch_id="daily-X",
    )
    spike = make_scores(100, 0.5, model, seed=7)
    with pytest.raises(BatchIdConflictError, match="different content") as err:
        process_batch(model, config, scores=spike, batch_id="daily-X")
    assert "new --batch-id" in str(err.value) and isinstance(err.value, ValueError)
    with pytest.raises(BatchIdConflictError):  # other images under the same id
        process_batch(model, config, images=images(40, 0.5), scorer=scorer, batch_id="daily-X")
    assert config.log.batch_ids() == ["daily-X"]
    assert config.log.get_batch("daily-X").n_images == 40
    # The identical batch again is an idempotent re-send, not an error.
    again = process_batch(model, config, images=images(40, 0.05), scorer=scorer, batch_id="daily-X")
    assert again.duplicate and again.record == first.record and scorer.calls == 1


def _ood_rate(snapshot) -> float:
    for result in snapshot.metric_results.values():
        if result.metric_value_location.metric.params["type"].endswith(":OdinOODRate"):
            return float(result.value)
    raise AssertionError("no OdinOODRate in the report")


@pytest.mark.parametrize(("rate", "lost"), [(0.05, "json"), (0.3, "html"), (0.3, "json")])
def test_missing_report_is_rebuilt_from_the_score_log(config, model, reference, rate, lost):
    from evidently.ui.workspace import Workspace

    scores = make_scores(100, rate, model, seed=3)
    first = process_batch(model, config, scores=scores, reference=reference, batch_id="r1")
    js = Path(first.json_path)
    html = js.with_suffix(".html")
    assert html.is_file() == bool(first.alerts) == (rate > 0.1)  # HTML only for an alert
    original = _ood_rate(Snapshot.load(str(js)))
    (html if lost == "html" else js).unlink()  # e.g. a crash or a full disk after the commit
    assert not batch_is_complete(config, "r1")
    again = process_batch(model, config, scores=scores, batch_id="r1")
    assert again.duplicate and again.report_rebuilt and not again.errors
    assert js.is_file() and html.is_file() == bool(first.alerts)
    assert again.html_path == (str(html) if first.alerts else None)
    rebuilt = _ood_rate(Snapshot.load(str(js)))
    assert rebuilt == original == pytest.approx(scores["is_ood"].mean())
    ws = Workspace(str(config.workspace_dir))
    (project,) = ws.list_projects()
    assert len(ws.list_runs(project.id)) == 1  # the workspace snapshot was not added twice
    assert not process_batch(model, config, scores=scores, batch_id="r1").report_rebuilt
    assert batch_is_complete(config, "r1")


def test_invalid_in_memory_batch_quarantines_its_source_file(config, model, reference, tmp_path):
    src = tmp_path / "inbox" / "b.npy"
    src.parent.mkdir()
    bad = np.full((2, 3, 4, 4), np.nan, dtype=np.float32)
    np.save(src, bad)
    res = process_batch(
        model,
        config,
        images=bad,
        scorer=fake_scorer_for(model),
        reference=reference,
        batch_id="nan",
        source=src,
    )
    assert res.quarantined and not src.exists()
    (row,) = config.log.quarantined()
    assert row["source_path"] == str(src)
    assert row["quarantined_path"] == str(config.quarantine_dir / "nan__b.npy")
    assert Path(row["quarantined_path"]).is_file()


def _webhook_config(tmp_path, log, url, **hook_kw):
    from odin_monitor.monitoring import LogNotifier, WebhookNotifier

    return MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(LogNotifier(), WebhookNotifier(url, **hook_kw)),
        delivery_budget=1.0,
    )


def test_dead_webhook_never_stalls_scoring_and_every_alert_arrives_once(
    tmp_path, log, model, reference
):
    from odin_monitor.monitoring.delivery import flush_deliveries
    from tests.monitoring.helpers import Hook, free_port

    port = free_port()  # endpoint down; default retries=3, backoff 0.5 s
    cfg = _webhook_config(tmp_path, log, f"http://127.0.0.1:{port}/a")
    longest = 0.0
    for i in range(3):
        start = time.monotonic()
        res = process_batch(
            model,
            cfg,
            scores=make_scores(100, 0.5, model, seed=i),
            reference=reference,
            batch_id=f"spike{i}",
        )
        longest = max(longest, time.monotonic() - start)
        assert res.alerts and res.exit_code == EXIT_ALERT and res.undelivered == i + 1
    # Before: 3.5 s, 7 s, 10.6 s (in-call retries with sleeps, over the whole outbox).
    assert longest < 5.0, f"a batch waited {longest:.1f} s on a dead webhook"
    server = Hook(port=port)
    try:
        time.sleep(1.2)  # past the rows' retry times
        calm = process_batch(model, cfg, scores=make_scores(100, 0.05, model, seed=9))
        assert flush_deliveries(30.0)
        assert sorted(a["batch_ids"][0] for a in server.received) == ["spike0", "spike1", "spike2"]
        assert not calm.alerts and log.pending_deliveries() == []
        process_batch(model, cfg, scores=make_scores(100, 0.05, model, seed=10))
        assert flush_deliveries(30.0)
        assert len(server.posts) == 3  # delivered ones are never sent again
    finally:
        server.close()


def test_slow_webhook_does_not_hold_scoring_and_is_posted_exactly_once(
    tmp_path, log, model, reference
):
    from odin_monitor.monitoring.delivery import flush_deliveries
    from tests.monitoring.helpers import Hook

    server = Hook(delay=4.0)  # answers 200 after 4 s; the notifier waits up to 20 s
    cfg = _webhook_config(tmp_path, log, server.url, timeout=20.0)
    try:
        start = time.monotonic()
        res = process_batch(
            model, cfg, scores=make_scores(100, 0.5, model), reference=reference, batch_id="s1"
        )
        assert time.monotonic() - start < 3.0  # the budget is 1 s; before: 20+ s
        assert res.alerts and res.undelivered == 1  # still in flight, not lost
        res2 = process_batch(model, cfg, scores=make_scores(100, 0.5, model, seed=1), batch_id="s2")
        assert res2.alerts
        # The log line is not held back behind the slow webhook (one drain per notifier).
        assert {r["status"] for r in log.outbox() if r["notifier"] == "log"} == {"delivered"}
        assert flush_deliveries(60.0)
        assert sorted(server.posts) == sorted(
            a.alert_id for a in res.alerts + res2.alerts
        )  # 2 alerts, 2 POSTs (before: 12 POSTs, both still pending)
        webhook_rows = [r for r in log.outbox() if r["notifier"] == "webhook"]
        assert {(r["status"], r["attempts"]) for r in webhook_rows} == {("delivered", 1)}
    finally:
        server.close()
