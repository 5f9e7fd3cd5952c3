"""``mlflow.models.evaluate(..., model_type="odin", evaluators=["odin"])``.

Registered on the ``mlflow.model_evaluator`` entry point as ``odin``.

Data convention:

* ``data`` holds images, one row each: a 2-D array or DataFrame of flattened
  pixels ``(N, C·H·W)`` (C-order of ``(C, H, W)``, floats in [0, 1]), or a
  DataFrame with one column of per-image arrays;
* ``targets`` is **1 for in-distribution, 0 for out-of-distribution** (booleans work:
  True = in-distribution). Both kinds must be present.

Logged: the metrics of :func:`odin_monitor.ood_metrics` on the model's score
(``fpr_at_tpr``, ``detection_error``, ``auroc``, ``aupr_in``, ``aupr_out``, ...), the
same for the MSP baseline as ``msp_<metric>``, and the figures
``odin_eval_roc.png`` and ``odin_eval_score_histograms.png``.

``evaluator_config={"odin": {...}}``: ``score`` (``"odin_score"`` default, ``"spread_score"`` or
``"msp"``) and ``tpr_target`` (default: the model's calibrated one, else 0.95).

Example:
    >>> mlflow.models.evaluate(model_uri, data=x_flat, targets=is_in,  # doctest: +SKIP
    ...                        model_type="odin", evaluators=["odin"])
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models.evaluation.artifacts import ImageEvaluationArtifact
from mlflow.models.evaluation.base import EvaluationResult, ModelEvaluator
from mlflow.tracking import MlflowClient

from mlflow_plugin.pyfunc import images_from_input
from odin_monitor.errors import OdinError
from odin_monitor.metrics import ood_metrics

__all__ = ["MODEL_TYPE", "OdinEvaluator", "split_by_target"]

MODEL_TYPE = "odin"
_SCORES = ("odin_score", "spread_score", "msp")


def split_by_target(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Split scores into (in-distribution, OOD) by ``targets`` (1 = in-distribution).

    Raises:
        MlflowException: Targets not 0/1, lengths differ, or one kind is missing.

    Example:
        >>> split_by_target([0.9, 0.1, 0.8], [1, 0, 1])
        (array([0.9, 0.8]), array([0.1]))
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(targets).reshape(-1)
    if s.shape != t.shape:
        raise MlflowException.invalid_parameter_value(
            f"Expected one target per image, but got {t.size} targets for {s.size} images."
        )
    try:
        values = set(np.unique(t.astype(np.float64)).tolist())
    except (TypeError, ValueError) as err:
        raise MlflowException.invalid_parameter_value(
            f"Expected targets 1 (in-distribution) or 0 (OOD), but got values of {t.dtype}."
        ) from err
    if not values <= {0.0, 1.0} or len(values) != 2:
        raise MlflowException.invalid_parameter_value(
            "Expected targets with both 1 (in-distribution) and 0 (out-of-distribution), "
            f"but got the values {sorted(values)}."
        )
    is_in = t.astype(np.float64) == 1.0
    return s[is_in], s[~is_in]


def _input_shape(model: Any) -> tuple[int, ...]:
    conf = model.metadata.flavors.get("odin", {}) if model.metadata is not None else {}
    if "input_shape" in conf:
        return tuple(int(v) for v in conf["input_shape"])
    schema = model.metadata.get_input_schema() if model.metadata is not None else None
    if schema is not None and schema.is_tensor_spec():
        return tuple(int(v) for v in schema.inputs[0].shape[1:])
    raise MlflowException.invalid_parameter_value(
        "Expected an odin model (MLmodel flavour 'odin' or a tensor signature (-1, C, H, W)) "
        "to know the image shape."
    )


def _tpr_target(model: Any, config: Mapping[str, Any]) -> float:
    if "tpr_target" in config:
        return float(config["tpr_target"])
    conf = model.metadata.flavors.get("odin", {}) if model is not None else {}
    return float(conf.get("tpr_target", 0.95))


def _log(
    run_id: str, metrics: Mapping[str, float], figures: Mapping[str, Any]
) -> dict[str, ImageEvaluationArtifact]:
    client = MlflowClient()
    now = int(time.time() * 1000)
    finite = [Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)]
    if finite:
        client.log_batch(run_id, metrics=finite)
    artifacts = {}
    run = client.get_run(run_id)
    for name, fig in figures.items():
        file = f"{name}.png"
        client.log_figure(run_id, fig, file)
        artifacts[name] = ImageEvaluationArtifact(uri=f"{run.info.artifact_uri}/{file}")
    return artifacts


class OdinEvaluator(ModelEvaluator):
    """MLflow model evaluator for ``model_type="odin"`` (see the module docstring)."""

    @classmethod
    def can_evaluate(cls, *, model_type: str, evaluator_config: Any, **kwargs: Any) -> bool:
        """True for ``model_type="odin"``."""
        del evaluator_config, kwargs
        return model_type == MODEL_TYPE

    def _predict(self, model: Any, dataset: Any) -> pd.DataFrame:
        shape = _input_shape(model)
        try:
            images = images_from_input(dataset.features_data, shape)
        except OdinError as err:
            raise MlflowException.invalid_parameter_value(str(err)) from err
        images = np.ascontiguousarray(images, dtype=np.float32)
        # The detector itself: an image model's signature takes encoded files, while the
        # evaluation data are pixel rows; the scores are the same either way.
        detector = model.get_raw_model()
        try:
            return detector.score_batch(images).to_frame()
        except OdinError as err:
            raise MlflowException.invalid_parameter_value(str(err)) from err

    def evaluate(
        self,
        *,
        model_type: str,
        dataset: Any,
        run_id: str,
        evaluator_config: Mapping[str, Any] | None,
        model: Any = None,
        extra_metrics: Any = None,
        custom_artifacts: Any = None,
        predictions: Any = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        """Score ``dataset`` with the model and log OOD metrics and plots to ``run_id``.

        Without a model, ``data`` must hold the scores in the ``predictions`` column.
        """
        del model_type, extra_metrics, custom_artifacts, predictions, kwargs
        from odin_monitor.plots import plot_roc, plot_score_histograms

        config = dict(evaluator_config or {})
        score = str(config.get("score", "odin_score"))
        if score not in _SCORES:
            raise MlflowException.invalid_parameter_value(
                f"Expected evaluator_config['score'] in {_SCORES}, but got {score!r}."
            )
        tpr = _tpr_target(model, config)
        if model is not None:
            out = self._predict(model, dataset)
            scores, msp = out[score].to_numpy(), out["msp"].to_numpy()
        elif getattr(dataset, "predictions_data", None) is not None:
            scores, msp = np.asarray(dataset.predictions_data, dtype=np.float64), None
        else:
            raise MlflowException.invalid_parameter_value(
                "Expected a model, or the scores in data with predictions='<column>'."
            )
        s_in, s_out = split_by_target(scores, dataset.labels_data)
        try:
            metrics = dict(ood_metrics(s_in, s_out, tpr))
            curves = {score: (s_in, s_out)}
            if msp is not None and score != "msp":
                m_in, m_out = split_by_target(msp, dataset.labels_data)
                metrics.update({f"msp_{k}": v for k, v in ood_metrics(m_in, m_out, tpr).items()})
                curves["MSP baseline"] = (m_in, m_out)
        except OdinError as err:
            raise MlflowException.invalid_parameter_value(str(err)) from err
        threshold = None
        if model is not None and score == "odin_score":
            threshold = model.metadata.flavors.get("odin", {}).get("threshold")
        figures = {
            "odin_eval_roc": plot_roc(curves, title=f"ROC of {score} (in-distribution positive)"),
            "odin_eval_score_histograms": plot_score_histograms(
                s_in, {"OOD": s_out}, threshold=threshold, xlabel=f"{score} (higher = more ID)"
            ),
        }
        artifacts = _log(run_id, metrics, figures)
        return EvaluationResult(metrics=metrics, artifacts=artifacts, run_id=run_id)
