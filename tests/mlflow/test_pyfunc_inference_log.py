"""The pyfunc's inference-log hook: rows of every scored request, a failing log never fails one."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from odin_mlflow_testing import images

from odin_monitor.inference_log import list_parts, read_part


def test_each_scored_request_is_logged(saved_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ODIN_INFERENCE_LOG", raising=False)
    folder = tmp_path / "ilog"
    pf = mlflow.pyfunc.load_model(
        str(saved_model),
        model_config={"inference_log": str(folder), "model_name": "odin-t", "model_version": "4"},
    )
    a = pf.predict(images(3, seed=1).numpy())
    b = pf.predict(images(2, seed=2).numpy())
    pf._model_impl.inference_log.flush()
    rows = pd.concat([read_part(folder / p.name) for p in list_parts(folder)], ignore_index=True)
    assert len(rows) == 5 and rows["request_id"].nunique() == 2
    assert set(rows["model_name"]) == {"odin-t"} and set(rows["model_version"]) == {"4"}
    want = pd.concat([a, b], ignore_index=True)
    pd.testing.assert_series_equal(rows["odin_score"], want["odin_score"].astype("float64"))
    assert rows["calibration_sha256"].str.len().eq(64).all()
    assert "image" not in rows.columns


def test_environment_variable_and_a_broken_log_folder(saved_model: Path, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("ODIN_INFERENCE_LOG", str(blocker / "ilog"))
    pf = mlflow.pyfunc.load_model(str(saved_model))
    out = pf.predict(images(4, seed=3).numpy())  # the response goes out regardless
    writer = pf._model_impl.inference_log
    writer.flush()
    assert len(out) == 4 and writer.failures == 1 and writer.dropped_rows == 4


def test_no_log_unless_configured(saved_model: Path, monkeypatch) -> None:
    monkeypatch.delenv("ODIN_INFERENCE_LOG", raising=False)
    pf = mlflow.pyfunc.load_model(str(saved_model))
    assert pf._model_impl.inference_log is None
