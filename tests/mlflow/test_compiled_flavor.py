"""The compiled scorer through the flavour: torch.export archives, warm-up at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from odin_mlflow_testing import images

import mlflow_plugin
from odin_monitor.compiled import compiler_available, scoring_copy

pytestmark = pytest.mark.skipif(
    not compiler_available(), reason="no C++ compiler: inductor cannot build CPU kernels here"
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CPU = torch.device("cpu")


def test_pyfunc_compiles_the_export_archive_at_load_not_on_the_first_request(
    saved_model: Path,
) -> None:
    assert mlflow_plugin.load_record(str(saved_model)) is not None
    pf = mlflow.pyfunc.load_model(str(saved_model), model_config={"compile": True, "device": "cpu"})
    det = pf.get_raw_model()
    entry = scoring_copy(det.model, CPU)
    assert entry.failed is None
    graphs = entry.compilations
    assert graphs >= 1  # warmed up at load
    x = images(7, seed=5).numpy()
    fast = pf.predict(x)
    assert entry.compilations == graphs  # the request compiled nothing
    eager = mlflow.pyfunc.load_model(str(saved_model), model_config={"device": "cpu"}).predict(x)
    np.testing.assert_allclose(fast["odin_score"], eager["odin_score"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(fast["predicted_class"], eager["predicted_class"])


def test_odin_compile_environment_variable_reaches_models_logged_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(shutil.copytree(FIXTURES / "odin_model_v1", tmp_path / "m"))
    monkeypatch.setenv("ODIN_COMPILE", "true")
    pf = mlflow.pyfunc.load_model(str(folder), model_config={"device": "cpu"})
    entry = scoring_copy(pf.get_raw_model().model, CPU)
    assert entry.compilations >= 1 and entry.failed is None
    x = np.load(FIXTURES / "odin_model_v1_images.npy")
    want = pd.read_csv(FIXTURES / "odin_model_v1_scores.csv")
    got = pf.predict(x)
    np.testing.assert_allclose(got["odin_score"], want["odin_score"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["is_ood"], want["is_ood"])


def test_a_bad_compile_setting_is_refused_with_what_came(
    saved_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODIN_COMPILE", "sometimes")
    with pytest.raises(MlflowException, match=r"\$ODIN_COMPILE.*'sometimes'"):
        mlflow.pyfunc.load_model(str(saved_model), model_config={"device": "cpu"})


def test_mlflow_models_serve_workers_score_on_the_compiled_copy(
    saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_asgi import post_json

    from mlflow_plugin.serving import running_server

    monkeypatch.setenv("ODIN_COMPILE", "true")  # what `odin-monitor serve --compile` sets
    x = images(6, seed=8).numpy()
    log = tmp_path / "server.log"
    with running_server(saved_model, log_file=log, timeout=180) as server:
        status, body = post_json(server.port, {"inputs": x.tolist()})
    text = log.read_text(errors="replace")
    assert status == 200, text[-2000:]
    assert "Could not compile" not in text  # no fallback: the worker compiled
    got = pd.DataFrame(body["predictions"])
    monkeypatch.delenv("ODIN_COMPILE")
    want = mlflow.pyfunc.load_model(str(saved_model), model_config={"device": "cpu"}).predict(x)
    np.testing.assert_allclose(got["odin_score"], want["odin_score"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["is_ood"], want["is_ood"])
