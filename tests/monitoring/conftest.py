from __future__ import annotations

import pandas as pd
import pytest

from odin_monitor.monitoring import MonitorConfig, ScoreLog
from odin_monitor.monitoring.schema import ModelRef
from tests.monitoring.helpers import Hook, make_model, make_scores


@pytest.fixture
def model() -> ModelRef:
    return make_model()


@pytest.fixture
def reference(model: ModelRef) -> pd.DataFrame:
    return make_scores(500, 0.05, model, seed=123)


@pytest.fixture
def log(tmp_path) -> ScoreLog:
    return ScoreLog(tmp_path / "scores.db")


@pytest.fixture
def config(tmp_path, log) -> MonitorConfig:
    return MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "quarantine",
        report_dir=tmp_path / "reports",
        workspace_dir=tmp_path / "workspace",
    )


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()
