"""What the logging run holds about a calibration: params, metrics, figures, the record."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

import mlflow_plugin


def test_log_model_run_holds_params_metrics_and_figures(tracking: str, result) -> None:
    with mlflow.start_run() as run:
        info = mlflow_plugin.log_model(result, "detector")
    data = MlflowClient().get_run(run.info.run_id).data
    assert data.params["odin.temperature"] == repr(result.record.temperature)
    assert data.params["odin.epsilon"] == repr(result.record.epsilon)
    assert data.params["odin.threshold"] == repr(result.record.threshold)
    assert data.params["odin.tpr_target"] == "0.95"
    assert data.params["odin.input_shape"] == "[3, 8, 8]"
    assert data.metrics["odin.val.fpr_at_tpr"] == pytest.approx(result.record.metrics["fpr_at_tpr"])
    assert data.metrics["odin.val.auroc"] == pytest.approx(result.record.metrics["auroc"])
    files = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "odin/detector")}
    assert {
        "odin/detector/calibration_grid.csv",
        "odin/detector/grid_heatmap.png",
        "odin/detector/roc.png",
        "odin/detector/score_histograms.png",
        "odin/detector/calibration_record.json",
    } <= files
    assert mlflow_plugin.load_record(info.model_uri) == result.record
