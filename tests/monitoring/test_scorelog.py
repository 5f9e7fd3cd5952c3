from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from odin_monitor.monitoring import scorelog as scorelog_mod
from odin_monitor.monitoring.errors import InvalidBatchError, ScoreLogError
from odin_monitor.monitoring.scorelog import ScoreLog

from .helpers import make_scores


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
    rec2, created2 = log.write_batch("b1", model, make_scores(30, 0.5, model, seed=9))
    assert created1 and not created2
    assert rec2 == rec1
    assert log.batch_ids() == ["b1"]
    assert len(log.read_scores("b1")) == 20


def test_crash_mid_insert_leaves_no_partial_batch(log, model, monkeypatch):
    log.write_batch("ok", model, make_scores(10, 0.1, model))
    original = scorelog_mod._score_rows

    def crashing(key, scores):
        for i, row in enumerate(original(key, scores)):
            if i == 5:
                raise RuntimeError("simulated crash")
            yield row

    monkeypatch.setattr(scorelog_mod, "_score_rows", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        log.write_batch("broken", model, make_scores(10, 0.1, model))
    monkeypatch.setattr(scorelog_mod, "_score_rows", original)
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
        original = scorelog._score_rows
        def dying(key, scores):
            for i, row in enumerate(original(key, scores)):
                if i == 20:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield row
        scorelog._score_rows = dying
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
