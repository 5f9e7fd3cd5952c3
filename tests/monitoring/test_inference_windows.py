"""The inference log cut into batches: exact windows, each processed once, kill -9 safe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from odin_monitor.inference_log import LOG_COLUMNS, part_name, write_part
from odin_monitor.monitoring import MonitorConfig, ScoreLog
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.inference_windows import (
    WindowStore,
    plan_windows,
    run_inference_windows,
)
from tests.monitoring.helpers import make_model, make_scores

REPO = Path(__file__).resolve().parents[2]


def write_log_part(folder: Path, model, ts: float, scores: pd.DataFrame, seq: int, pid=1) -> str:
    n = len(scores)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(np.full(n, ts), unit="s", utc=True),
            "request_id": [f"r{seq}"] * n,
            "model_name": ["m"] * n,
            "model_version": ["1"] * n,
            "calibration_sha256": [model.calibration_sha256] * n,
            **{c: scores[c].to_numpy() for c in scores.columns},
        },
        columns=list(LOG_COLUMNS),
    )
    name = part_name(ts, model.calibration_sha256, pid, seq)
    write_part(folder, frame, name)
    return name


def cfg(tmp_path: Path) -> MonitorConfig:
    from odin_monitor.monitoring import BinomialSpikeRule, JsonlNotifier

    return MonitorConfig(
        log=ScoreLog(tmp_path / "scores.db"),
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(JsonlNotifier(tmp_path / "alerts.jsonl"),),
        delivery_budget=0.0,
    )


def logged_rows(log: ScoreLog) -> pd.DataFrame:
    return pd.concat([log.read_scores(b) for b in log.batch_ids()], ignore_index=True)


def test_plan_is_exact_by_count_and_waits_for_the_rest():
    parts = [("a", 0.0, 5, 0), ("b", 1.0, 5, 2), ("c", 2.0, 4, 4)]
    planned = plan_windows(parts, window=4, now=0.0)
    assert [spans for spans, _ in planned] == [(("a", 0, 4),), (("a", 4, 5), ("b", 2, 5))]
    with pytest.raises(ConfigError, match="exactly one"):
        plan_windows(parts, now=0.0)


def test_plan_by_time_waits_for_the_end_and_the_grace():
    parts = [("a", 1.0, 3, 0), ("b", 9.5, 3, 0), ("c", 10.2, 3, 0)]
    assert plan_windows(parts, every=10, now=11.0, grace=2) == []
    assert plan_windows(parts, every=10, now=12.0, grace=2) == [((("a", 0, 3), ("b", 0, 3)), 1.0)]


def test_every_row_goes_into_exactly_one_batch(tmp_path, reference):
    model, folder, config = make_model(), tmp_path / "ilog", cfg(tmp_path)
    frames = [make_scores(n, 0.05, model, seed=i) for i, n in enumerate([30, 45, 10, 60])]
    for i, f in enumerate(frames[:3]):
        write_log_part(folder, model, 1000.0 + i, f, i)
    write_log_part(folder, make_model_other(), 1000.5, frames[0], 99)  # another calibration
    first = list(run_inference_windows(folder, model, config, window=25, reference=reference))
    assert [r.record.n_images for r in first] == [25, 25, 25]  # 85 rows: 10 wait
    again = list(run_inference_windows(folder, model, config, window=25))
    assert again == []  # nothing new: nothing cut, nothing processed twice
    write_log_part(folder, model, 1003.0, frames[3], 3)
    more = list(run_inference_windows(folder, model, config, window=25))
    assert [r.record.n_images for r in more] == [25, 25]  # 10 + 60 = 70: 20 wait
    want = pd.concat(frames, ignore_index=True).iloc[:125]
    np.testing.assert_array_equal(logged_rows(config.log)["odin_score"], want["odin_score"])
    assert len(set(config.log.batch_ids())) == 5
    assert all(w["processed_at"] for w in WindowStore(config.log.path).windows())


def make_model_other():
    from dataclasses import replace

    return replace(make_model(), calibration_sha256="dd" * 32)


def test_time_windows_are_stamped_with_their_last_row(tmp_path, reference):
    model, folder, config = make_model(), tmp_path / "ilog", cfg(tmp_path)
    write_log_part(folder, model, 100.0, make_scores(20, 0.05, model), 0)
    write_log_part(folder, model, 104.0, make_scores(20, 0.05, model, seed=1), 1)
    write_log_part(folder, model, 111.0, make_scores(20, 0.05, model, seed=2), 2)
    (res,) = run_inference_windows(folder, model, config, every=10, now=115.0, reference=reference)
    assert res.record.n_images == 40 and res.record.created_at.startswith("1970-01-01T00:01:44")


def test_a_spike_in_the_log_raises_the_alert(tmp_path, reference):
    model, folder, config = make_model(), tmp_path / "ilog", cfg(tmp_path)
    write_log_part(folder, model, 1.0, make_scores(100, 0.05, model), 0)
    write_log_part(folder, model, 2.0, make_scores(100, 0.5, model, seed=3), 1)
    results = list(run_inference_windows(folder, model, config, window=100, reference=reference))
    assert [bool(r.alerts) for r in results] == [False, True]


def test_a_deleted_part_quarantines_its_window_once(tmp_path, reference):
    model, folder, config = make_model(), tmp_path / "ilog", cfg(tmp_path)
    name = write_log_part(folder, model, 1.0, make_scores(10, 0.05, model), 0)
    store = WindowStore(config.log.path)
    store.cut(folder, model.calibration_sha256, window=10)
    (folder / name).unlink()
    (res,) = run_inference_windows(folder, model, config, window=10, reference=reference)
    assert res.quarantined and "readable" in res.quarantine_reason
    assert list(run_inference_windows(folder, model, config, window=10)) == []


@pytest.mark.parametrize("where", ["after_cut", "after_commit"])
def test_kill_9_loses_and_duplicates_no_batch(tmp_path, where):
    model, folder = make_model(), tmp_path / "ilog"
    frames = [make_scores(40, 0.05 if i != 2 else 0.5, model, seed=i) for i in range(4)]
    for i, f in enumerate(frames):
        write_log_part(folder, model, 10.0 + i, f, i)
    patch = {
        "after_cut": "iw.process_window = die",  # windows recorded, no batch yet
        "after_commit": "Log.write_batch = commit_then_die",  # first batch committed
    }[where]
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from odin_monitor.monitoring import inference_windows as iw
        from odin_monitor.monitoring.scorelog import ScoreLog as Log
        from tests.monitoring.helpers import make_model, make_scores
        from tests.monitoring.test_inference_windows import cfg
        original = Log.write_batch
        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        def commit_then_die(self, *args, **kwargs):
            original(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        {patch}
        tmp = Path({str(tmp_path)!r})
        model = make_model()
        list(iw.run_inference_windows(tmp / "ilog", model, cfg(tmp), window=40,
             reference=make_scores(500, 0.05, model, seed=123)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(REPO), timeout=120)
    assert proc.returncode == -9
    config = cfg(tmp_path)
    assert len(WindowStore(config.log.path).windows()) == 4  # the cut survived
    assert len(config.log.batch_ids()) == (0 if where == "after_cut" else 1)
    results = list(run_inference_windows(folder, model, config, window=40))
    assert len(results) == 4 and [bool(r.alerts) for r in results] == [False, False, True, False]
    assert len(config.log.batch_ids()) == 4
    want = pd.concat(frames, ignore_index=True)
    np.testing.assert_array_equal(logged_rows(config.log)["odin_score"], want["odin_score"])
    assert list(run_inference_windows(folder, model, config, window=40)) == []
    from odin_monitor.monitoring.delivery import flush_deliveries

    assert flush_deliveries(10)
    alerts = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == 1  # the spike's alert, delivered once
