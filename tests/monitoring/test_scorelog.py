from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from odin_monitor.monitoring import BatchIdConflictError
from odin_monitor.monitoring import scorelog as scorelog_mod
from odin_monitor.monitoring.errors import InvalidBatchError, ScoreLogError
from odin_monitor.monitoring.scorelog import ScoreLog, scores_sha256
from tests.monitoring.helpers import make_scores


def test_write_and_read_roundtrip(log, model):
    scores = make_scores(50, 0.1, model)
    rec, created = log.write_batch("b1", model, scores)
    assert created and rec.seq == 1 and rec.n_images == 50 and rec.n_ood == 5
    assert rec.model.calibration_sha256 == model.calibration_sha256
    back = log.read_scores("b1")
    pd.testing.assert_frame_equal(back, scores.reset_index(drop=True)[back.columns])
    assert str(back["is_ood"].dtype) == "bool"


def test_rewriting_same_batch_id_is_idempotent(log, model):
    rec1, created1 = log.write_batch("b1", model, make_scores(20, 0.1, model))
    rec2, created2 = log.write_batch("b1", model, make_scores(20, 0.1, model))
    assert created1 and not created2
    assert rec2 == rec1 and rec1.content_sha256 == scores_sha256(make_scores(20, 0.1, model))
    assert log.batch_ids() == ["b1"]


def test_reusing_a_batch_id_for_other_content_is_an_error(log, model):
    log.write_batch("b1", model, make_scores(20, 0.1, model))
    # Before: the second batch was silently dropped (the first record returned).
    with pytest.raises(BatchIdConflictError, match="Expected batch id 'b1' to name the batch"):
        log.write_batch("b1", model, make_scores(30, 0.5, model, seed=9))
    assert log.batch_ids() == ["b1"] and len(log.read_scores("b1")) == 20


def test_score_log_of_an_older_version_is_migrated(tmp_path, model):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA)
    con.execute(
        "INSERT INTO batches (batch_id, created_at, model_name, model_version,"
        " calibration_sha256, threshold, threshold_spread, tpr_target, n_images, n_ood, source)"
        " VALUES ('legacy', '2026-01-01T00:00:00+00:00', ?, ?, ?, ?, ?, ?, 1, 0, 'scorer')",
        (
            model.name,
            model.version,
            model.calibration_sha256,
            model.threshold,
            model.threshold_spread,
            model.tpr_target,
        ),
    )
    con.execute("INSERT INTO scores VALUES ('legacy', 0, 0.2, 1.0, 0.9, 1, 0)")
    con.execute("INSERT INTO alerts VALUES ('a', '2026-01-01', 'r', '{}')")
    con.execute("INSERT INTO outbox VALUES ('a', 'webhook', 'pending', 2, 'down', '2026-01-01')")
    con.commit()
    con.close()
    log = ScoreLog(db)
    old = log.get_batch("legacy")
    assert old.content_sha256 is None and not old.rules_checked  # nullable columns added
    # No stored hash: a re-send cannot be compared and is taken as the same batch.
    assert log.write_batch("legacy", model, make_scores(5, 0.2, model))[1] is False
    assert [r[0] for r in log.due_deliveries(["webhook"])] == ["a"]  # NULL retry time: due
    rec, created = log.write_batch("new", model, make_scores(5, 0.2, model))
    assert created and rec.content_sha256 is not None
    ScoreLog(db)  # opening a migrated log again is a no-op


def test_kill_9_inside_the_commit_leaves_neither_batch_nor_alerts(tmp_path, model):
    db = tmp_path / "kill.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from odin_monitor.monitoring import scorelog
        from tests.monitoring.helpers import make_model, make_scores
        model = make_model()
        log = scorelog.ScoreLog({str(db)!r})
        def alerts_then_die(history):
            yield ("a1", "r", {{"batch_ids": [history[-1].batch_id]}})
            os.kill(os.getpid(), signal.SIGKILL)
        log.write_batch("b", model, make_scores(10, 0.5, model), alerts_for=alerts_then_die,
                        notifiers=["log"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(_repo_root()), timeout=120)
    assert proc.returncode == -9
    log = ScoreLog(db)
    assert log.batch_ids() == [] and log.outbox() == []  # all or nothing
    rec, created = log.write_batch(
        "b",
        model,
        make_scores(10, 0.5, model),
        alerts_for=lambda h: [("a1", "r", {"batch_ids": [h[-1].batch_id]})],
        notifiers=["log"],
    )
    assert created and rec.rules_checked
    assert [(r["alert_id"], r["status"]) for r in log.outbox()] == [("a1", "pending")]


OLD_SCHEMA = """
CREATE TABLE batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    calibration_sha256 TEXT NOT NULL, threshold REAL NOT NULL, threshold_spread REAL NOT NULL,
    tpr_target REAL NOT NULL, n_images INTEGER NOT NULL, n_ood INTEGER NOT NULL,
    source TEXT NOT NULL);
CREATE TABLE scores (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id), idx INTEGER NOT NULL,
    odin_score REAL NOT NULL, spread_score REAL, msp REAL, predicted_class INTEGER NOT NULL,
    is_ood INTEGER NOT NULL, PRIMARY KEY (batch_id, idx));
CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, rule TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE TABLE outbox (
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id), notifier TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    updated_at TEXT NOT NULL, PRIMARY KEY (alert_id, notifier));
"""


def test_crash_mid_insert_leaves_no_partial_batch(log, model, monkeypatch):
    log.write_batch("ok", model, make_scores(10, 0.1, model))
    original = scorelog_mod.score_rows

    def crashing(key, scores):
        for i, row in enumerate(original(key, scores)):
            if i == 5:
                raise RuntimeError("simulated crash")
            yield row

    monkeypatch.setattr(scorelog_mod, "score_rows", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        log.write_batch("broken", model, make_scores(10, 0.1, model))
    monkeypatch.setattr(scorelog_mod, "score_rows", original)
    assert log.batch_ids() == ["ok"]
    assert log.get_batch("broken") is None
    # retrying after the crash writes the batch exactly once
    log.write_batch("broken", model, make_scores(10, 0.1, model))
    assert log.batch_ids() == ["ok", "broken"]
    assert len(log.read_scores("broken")) == 10


def test_killed_process_loses_nothing_and_duplicates_nothing(tmp_path, model):
    db = tmp_path / "kill.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from odin_monitor.monitoring import scorelog
        from odin_monitor.monitoring.schema import ModelRef
        from tests.monitoring.helpers import make_model, make_scores
        model = make_model()
        log = scorelog.ScoreLog({str(db)!r})
        log.write_batch("committed", model, make_scores(40, 0.1, model))
        original = scorelog.score_rows
        def dying(key, scores):
            for i, row in enumerate(original(key, scores)):
                if i == 20:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield row
        scorelog.score_rows = dying
        log.write_batch("in-flight", model, make_scores(40, 0.1, model))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(_repo_root()), timeout=120)
    assert proc.returncode == -9
    log = ScoreLog(db)
    assert log.batch_ids() == ["committed"]
    assert len(log.read_scores("committed")) == 40
    _, created = log.write_batch("committed", model, make_scores(40, 0.1, model))
    assert not created and log.batch_ids() == ["committed"]


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_reference_stored_once_per_model_version(log, model, reference):
    with pytest.raises(ScoreLogError, match="write_reference"):
        log.read_reference(model)
    assert log.write_reference(model, reference) is True
    assert log.write_reference(model, make_scores(10, 0.5, model)) is False
    assert len(log.read_reference(model)) == len(reference)


def test_bad_scores_are_rejected_with_clear_errors(log, model):
    scores = make_scores(10, 0.1, model)
    with pytest.raises(InvalidBatchError, match="Expected score columns"):
        log.write_batch("x", model, scores.drop(columns=["msp"]))
    bad = scores.copy()
    bad.loc[3, "odin_score"] = float("nan")
    with pytest.raises(ValueError, match="Expected finite odin_score"):
        log.write_batch("x", model, bad)
    with pytest.raises(ValueError, match="empty batch"):
        log.write_batch("x", model, scores.iloc[:0])
    assert log.batch_ids() == []


def test_outbox_roundtrip(log):
    log.enqueue_alerts([("a1", "r", {"x": 1})], ["log", "webhook"])
    log.enqueue_alerts([("a1", "r", {"x": 1})], ["log", "webhook"])  # idempotent
    assert len(log.pending_deliveries()) == 2
    log.mark_delivery("a1", "log")
    log.mark_delivery("a1", "webhook", error="down")
    (row,) = log.pending_deliveries()
    assert row[1] == "webhook"
    assert {r["notifier"]: r["attempts"] for r in log.outbox()} == {"log": 1, "webhook": 1}
