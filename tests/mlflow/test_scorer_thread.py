"""The scorer thread: where a served model loads and scores, and what it hands back."""

from __future__ import annotations

import threading
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from odin_mlflow_testing import images

from mlflow_plugin.allocator import SERVER_MODEL_PATH_ENV
from mlflow_plugin.scorer_thread import SCORER_THREAD_ENV, ScorerThread, scorer_for, shared_scorer


def test_runs_on_its_one_thread_and_hands_back_results_and_errors() -> None:
    runner = ScorerThread(name="t-scorer")
    try:
        names = {runner.run(lambda: threading.current_thread().name) for _ in range(5)}
        assert names == {"t-scorer_0"}
        with pytest.raises(KeyError, match="missing"):
            runner.run(lambda: {}["missing"])
        # A call made on the scorer thread runs in place instead of waiting for itself.
        assert runner.run(lambda: runner.run(lambda: 41) + 1) == 42
    finally:
        runner.close()


def test_auto_means_inside_mlflows_scoring_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_MODEL_PATH_ENV, raising=False)
    monkeypatch.delenv(SCORER_THREAD_ENV, raising=False)
    assert scorer_for(None) is None and scorer_for("auto") is None
    assert scorer_for("true") is shared_scorer()
    monkeypatch.setenv(SERVER_MODEL_PATH_ENV, "/models/odin")
    assert scorer_for(None) is shared_scorer()
    monkeypatch.setenv(SCORER_THREAD_ENV, "false")
    assert scorer_for(None) is None
    monkeypatch.setenv(SCORER_THREAD_ENV, "sometimes")
    with pytest.raises(ValueError, match=r"\$ODIN_SCORER_THREAD .*'sometimes'"):
        scorer_for(None)


def _thread_of_scoring(pf: mlflow.pyfunc.PyFuncModel) -> str:
    det = pf.get_raw_model()
    seen: list[str] = []
    score = det.score_batch

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return score(*args, **kwargs)

    det.score_batch = spy  # predict copies the detector, instance attributes included
    try:
        pf.predict(images(3, seed=2).numpy())
    finally:
        del det.score_batch
    return seen[0]


def test_the_pyfunc_loads_and_scores_on_the_scorer_thread_only_where_asked(
    saved_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SERVER_MODEL_PATH_ENV, raising=False)
    here = mlflow.pyfunc.load_model(str(saved_model), model_config={"device": "cpu"})
    assert _thread_of_scoring(here) == threading.current_thread().name
    threaded = mlflow.pyfunc.load_model(
        str(saved_model), model_config={"device": "cpu", "scorer_thread": "true"}
    )
    assert _thread_of_scoring(threaded).startswith("odin-scorer")
    x = images(6, seed=3).numpy()
    a, b = here.predict(x), threaded.predict(x)
    np.testing.assert_array_equal(a["odin_score"], b["odin_score"])
    with pytest.raises(MlflowException, match=r"model_config\['scorer_thread'\].*'maybe'"):
        mlflow.pyfunc.load_model(str(saved_model), model_config={"scorer_thread": "maybe"})
