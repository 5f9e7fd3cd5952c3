"""The ``odin`` evaluator plugin of mlflow.models.evaluate."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from odin_mlflow_testing import images

import mlflow_plugin
from odin_monitor import ood_metrics
from odin_monitor.synthetic import uniform_noise


@pytest.fixture()
def model_uri(tracking: str, result) -> str:
    with mlflow.start_run():
        return mlflow_plugin.log_model(result, "detector").model_uri


def test_evaluator_metrics_equal_ood_metrics(model_uri: str, result) -> None:
    x_in = images(40, seed=31).numpy()
    x_out = uniform_noise(30, (3, 8, 8), seed=5)
    x = np.concatenate([x_in, x_out]).reshape(70, -1)
    targets = np.r_[np.ones(40), np.zeros(30)]  # 1 = in-distribution
    with mlflow.start_run() as run:
        res = mlflow.models.evaluate(
            model_uri, data=x, targets=targets, model_type="odin", evaluators=["odin"]
        )
    scores = result.detector.score_batch(np.concatenate([x_in, x_out]))
    expected = ood_metrics(scores.odin_score[:40], scores.odin_score[40:], 0.95)
    for key in ("fpr_at_tpr", "detection_error", "auroc", "aupr_in", "aupr_out"):
        assert res.metrics[key] == pytest.approx(expected[key], abs=1e-9), key
    msp = ood_metrics(scores.msp[:40], scores.msp[40:], 0.95)
    assert res.metrics["msp_auroc"] == pytest.approx(msp["auroc"], abs=1e-9)
    logged = MlflowClient().get_run(run.info.run_id).data.metrics
    assert logged["auroc"] == pytest.approx(expected["auroc"])
    files = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"odin_eval_roc.png", "odin_eval_score_histograms.png"} <= files


def test_evaluator_accepts_a_dataframe_with_an_image_column(model_uri: str) -> None:
    x = images(20, seed=3).numpy().reshape(20, -1)
    df = pd.DataFrame({"image": list(x), "label": [1] * 10 + [0] * 10})
    res = mlflow.models.evaluate(
        model_uri,
        data=df,
        targets="label",
        model_type="odin",
        evaluators=["odin"],
        evaluator_config={"odin": {"score": "spread_score", "tpr_target": 0.9}},
    )
    assert 0.0 <= res.metrics["auroc"] <= 1.0


def test_evaluator_rejects_targets_that_are_not_zero_one(model_uri: str) -> None:
    x = images(6, seed=3).numpy().reshape(6, -1)
    with pytest.raises(MlflowException, match=r"1 \(in-distribution\) and 0"):
        mlflow.models.evaluate(
            model_uri,
            data=x,
            targets=np.array([1, 2, 1, 0, 1, 0]),
            model_type="odin",
            evaluators=["odin"],
        )
