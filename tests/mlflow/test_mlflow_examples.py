"""Smoke tests: the MLflow examples run as pasted, in a temporary folder."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from odin_mlflow_testing import java_available

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder (sqlite:///mlflow.db + ./mlruns) shared by the examples, as a user would."""
    cwd = tmp_path_factory.mktemp("examples")
    out = run_example("log_your_classifier.py", cwd, "--n-val", "64")
    assert "alias champion -> version 1" in out
    return cwd


def test_log_your_classifier(workdir: Path) -> None:
    assert (workdir / "mlflow.db").is_file() and (workdir / "mlruns").is_dir()


def test_serve_over_http(workdir: Path) -> None:
    out = run_example("serve_over_http.py", workdir)
    assert "POST /invocations (3 files) -> 200" in out
    assert "max |served - in-process| odin_score" in out
    assert "a file that is no image -> 400: 1 of 2 images cannot be used" in out
    assert "row 1: expected an image file" in out and "server stopped" in out


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark not installed")
@pytest.mark.skipif(not java_available(), reason="Java (needed by Spark) is not available")
def test_spark_batch_scoring(workdir: Path) -> None:
    out = run_example("spark_batch_scoring.py", workdir, "--n", "16")
    assert "max |spark - in-process| odin_score" in out
