from __future__ import annotations

import json

import numpy as np
import pytest
from evidently.core.report import Snapshot

from odin_monitor.monitoring import BinomialSpikeRule, MonitorConfig, process_batch
from odin_monitor.monitoring.notifiers import EXIT_ALERT, EXIT_DEGRADED, EXIT_OK, EXIT_QUARANTINED
from odin_monitor.monitoring.reports import PANEL_TITLE

from .helpers import fake_scorer_for, make_scores


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

    from .test_notifiers import Hook, free_port

    port = free_port()
    hook = WebhookNotifier(f"http://127.0.0.1:{port}/a", retries=0, timeout=1.0)
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
    panels = project.dashboard.model().panels
    assert [p.title for p in panels] == [PANEL_TITLE]


def test_bad_arguments_raise_clear_errors(config, model):
    with pytest.raises(ValueError, match="exactly one of images= or scores="):
        process_batch(model, config)
    with pytest.raises(ValueError, match="Expected a scorer"):
        process_batch(model, config, images=images(2, 0.0))
    with pytest.raises(ValueError, match="Expected tpr_target"):
        type(model)(**{**model.to_dict(), "tpr_target": 95})
    assert json.loads(json.dumps(model.to_dict()))["name"] == model.name


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
