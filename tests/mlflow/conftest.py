"""Fixtures of the MLflow flavour tests: a sqlite tracking store per test, small models."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from odin_mlflow_testing import images, make_net

import mlflow_plugin
from odin_monitor import CalibrationResult, calibrate

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def _tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One sqlite tracking + registry store for the session (creating one costs seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment_id = mlflow.create_experiment("odin-tests", artifact_location=str(folder / "mlruns"))
    mlflow.set_experiment(experiment_id=experiment_id)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture()
def tracking(_tracking_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session's sqlite store, also for subprocesses; use distinct model names per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _tracking_store)
    mlflow.set_tracking_uri(_tracking_store)
    mlflow.set_registry_uri(_tracking_store)
    yield _tracking_store
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def result() -> CalibrationResult:
    """A calibrated tiny detector (3 × 3 grid, synthetic OOD validation)."""
    return calibrate(
        make_net(),
        images(96),
        normalization=None,
        temperatures=[1.0, 10.0, 1000.0],
        epsilons=[0.0, 0.001, 0.004],
        batch_size=32,
    )


@pytest.fixture(scope="session")
def saved_model(result: CalibrationResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder taking float32 tensors (the tensor route; read-only for the tests)."""
    path = tmp_path_factory.mktemp("odin") / "model"
    mlflow_plugin.save_model(result, path, input_kind="tensor")
    return path


@pytest.fixture(scope="session")
def image_model(result: CalibrationResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder taking encoded image files (the default; read-only for the tests)."""
    path = tmp_path_factory.mktemp("odin-image") / "model"
    mlflow_plugin.save_model(result, path)
    return path


@pytest.fixture()
def model_copy(saved_model: Path, tmp_path: Path) -> Path:
    """A writable copy of the saved model folder."""
    return Path(shutil.copytree(saved_model, tmp_path / "model"))
