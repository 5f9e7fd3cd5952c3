"""The served model's inference log writer: atomic parts, bounded, never raising."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from odin_monitor.inference_log import (
    LOG_COLUMNS,
    InferenceLogWriter,
    list_parts,
    parse_part_name,
    read_part,
    writer_from_config,
)

SHA = "ab" * 32


def scores(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    odin = rng.uniform(0.1, 0.2, n)
    return pd.DataFrame(
        {
            "odin_score": odin,
            "spread_score": 1000 * np.log(10 * odin),
            "msp": rng.uniform(0.3, 1, n),
            "predicted_class": rng.integers(0, 5, n),
            "is_ood": odin < 0.12,
        }
    )


def writer(folder: Path, **kw) -> InferenceLogWriter:
    return InferenceLogWriter(
        folder, model_name="m", model_version="2", calibration_sha256=SHA, **kw
    )


def test_rows_round_trip_with_request_ids_and_no_images(tmp_path):
    w = writer(tmp_path, flush_seconds=60)
    a, b = scores(3, 1), scores(2, 2)
    w.append(a, request_id="r1")
    w.append(b, request_id="r2")
    w.flush()
    (part,) = list_parts(tmp_path)
    got = read_part(tmp_path / part.name)
    assert tuple(got.columns) == LOG_COLUMNS
    assert got["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 2
    assert set(got["model_name"]) == {"m"} and set(got["calibration_sha256"]) == {SHA}
    want = pd.concat([a, b], ignore_index=True)
    np.testing.assert_array_equal(got["odin_score"], want["odin_score"])
    np.testing.assert_array_equal(got["is_ood"], want["is_ood"])
    assert str(got["timestamp"].dt.tz) == "UTC"
    assert w.written_rows == 5 and w.dropped_rows == 0 and w.failures == 0


def test_background_thread_flushes_within_flush_seconds(tmp_path):
    import time

    w = writer(tmp_path, flush_seconds=0.05)
    w.append(scores(4))
    deadline = time.monotonic() + 5
    while not list_parts(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(len(read_part(tmp_path / p.name)) for p in list_parts(tmp_path)) == 4
    w.close()


def test_memory_is_bounded_and_overflow_counted(tmp_path):
    w = writer(tmp_path, flush_seconds=60, flush_rows=10_000, max_pending_rows=5)
    w.append(scores(4))
    w.append(scores(4))  # would exceed the bound: dropped, counted
    w.flush()
    assert w.written_rows == 4 and w.dropped_rows == 4


def test_a_failing_disk_never_raises_and_is_counted(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    w = writer(blocker / "log", flush_seconds=60)
    w.append(scores(3))
    w.append("not a frame")  # type: ignore[arg-type]  # counted, not raised
    w.flush()
    assert w.failures == 2 and w.dropped_rows == 3 and w.written_rows == 0


def test_only_complete_parts_are_listed(tmp_path):
    w = writer(tmp_path, flush_seconds=60)
    w.append(scores(2))
    w.flush()
    tmp = ".part-0000000000001-abababababab-1-000001-deadbeef.parquet.9.tmp"
    (tmp_path / tmp).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert len(list_parts(tmp_path)) == 1
    assert list_parts(tmp_path, "cd" * 32) == []


def _child(folder: str, seed: int) -> None:
    w = writer(Path(folder), flush_rows=7, flush_seconds=0.01)
    for i in range(20):
        w.append(scores(5, seed * 100 + i), request_id=f"{seed}-{i}")
    w.close()


def test_several_processes_share_one_folder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(str(tmp_path), s)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    parts = list_parts(tmp_path)
    rows = pd.concat([read_part(tmp_path / p.name) for p in parts], ignore_index=True)
    assert len(rows) == 3 * 20 * 5
    assert rows.groupby("request_id").size().eq(5).all()
    assert len({p.pid for p in parts}) == 3
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_config_from_model_config_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("ODIN_INFERENCE_LOG", raising=False)
    assert writer_from_config({}, calibration_sha256=SHA) is None
    monkeypatch.setenv("ODIN_INFERENCE_LOG", str(tmp_path / "env"))
    monkeypatch.setenv("ODIN_MODEL_VERSION", "7")
    w = writer_from_config({}, calibration_sha256=SHA)
    assert w is not None and w.folder == tmp_path / "env" and w.model_version == "7"
    w = writer_from_config(
        {"inference_log": str(tmp_path / "conf"), "model_name": "odin-x"}, calibration_sha256=SHA
    )
    assert w is not None and w.folder == tmp_path / "conf" and w.model_name == "odin-x"


@pytest.mark.parametrize("name", ["part-1.parquet", "x.parquet"])
def test_foreign_names_are_not_parts(name):
    assert parse_part_name(name) is None
