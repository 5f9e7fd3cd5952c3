"""What the logging run holds about a calibration: params, metrics and figures.

Params (``odin.temperature``, ``odin.epsilon``, ``odin.threshold``, ...), the
validation metrics (``odin.val.<metric>``), and artifacts under ``odin/<name>/``:
``calibration_record.json``, and, when a :class:`~odin_monitor.CalibrationResult`
is given, ``calibration_grid.csv``, ``grid_heatmap.png``, ``roc.png`` and
``score_histograms.png``. A detector fitted without OOD data gets a histogram of
its in-distribution validation scores only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from mlflow_plugin.tags import version_description
from odin_monitor.record import CalibrationRecord

if TYPE_CHECKING:
    from odin_monitor.calibration import CalibrationResult
    from odin_monitor.detector import OdinDetector

__all__ = ["calibration_metrics", "calibration_params", "log_calibration"]

_logger = logging.getLogger(__name__)


def calibration_params(record: CalibrationRecord) -> dict[str, str]:
    """The run params of a calibration (strings, as MLflow stores them).

    Example:
        >>> rec = CalibrationRecord(temperature=1000.0, epsilon=0.0014, threshold=0.1,
        ...     threshold_spread=2.0, tpr_target=0.95, normalization=None, n_classes=10,
        ...     input_shape=(3, 32, 32))
        >>> calibration_params(rec)["odin.temperature"]
        '1000.0'
    """
    norm = None if record.normalization is None else record.normalization.to_dict()
    return {
        "odin.temperature": repr(float(record.temperature)),
        "odin.epsilon": repr(float(record.epsilon)),
        "odin.threshold": repr(float(record.threshold)),
        "odin.threshold_spread": repr(float(record.threshold_spread)),
        "odin.tpr_target": repr(float(record.tpr_target)),
        "odin.normalization": json.dumps(norm),
        "odin.input_shape": json.dumps(list(record.input_shape)),
        "odin.n_classes": str(record.n_classes),
        "odin.selection": record.selection[:6000],
        "odin.strategy": str(record.strategy),
        "odin.calibration_sha256": record.sha256(),
    }


def calibration_metrics(record: CalibrationRecord) -> dict[str, float]:
    """The record's finite validation metrics, named ``odin.val.<metric>``."""
    return {f"odin.val.{k}": float(v) for k, v in record.metrics.items() if math.isfinite(float(v))}


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    existing = client.get_run(run_id).data.params
    clashes = {k for k, v in params.items() if k in existing and existing[k] != v}
    if clashes:
        _logger.warning(
            "Run %s already holds different values for %s (one calibration per run is "
            "recommended); keeping the first values. The model's record has the new ones.",
            run_id,
            sorted(clashes),
        )
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    if new:
        client.log_batch(run_id, params=new)


def _figures(
    record: CalibrationRecord, result: CalibrationResult | None, detector: OdinDetector | None
) -> dict[str, Any]:
    from odin_monitor.plots import plot_grid_heatmap, plot_roc, plot_score_histograms

    figs: dict[str, Any] = {}
    if result is not None:
        chosen = (record.temperature, record.epsilon)
        s_in, s_out = result.grid.scores_at(*chosen)
        figs["grid_heatmap.png"] = plot_grid_heatmap(result.grid, chosen=chosen)
        figs["roc.png"] = plot_roc(
            result.grid.curves(chosen), title="validation ROC (in-distribution positive)"
        )
        figs["score_histograms.png"] = plot_score_histograms(
            s_in,
            s_out,
            threshold=record.threshold,
            xlabel="ODIN score S(x̃; T) (higher = more in-distribution)",
            title="validation score histograms",
        )
    elif detector is not None and getattr(detector, "reference_", None) is not None:
        figs["score_histograms.png"] = plot_score_histograms(
            detector.reference_.odin_score,
            {},
            threshold=record.threshold,
            xlabel="ODIN score S(x̃; T) (higher = more in-distribution)",
            title="in-distribution validation scores",
        )
    return figs


def log_calibration(
    run_id: str,
    record: CalibrationRecord,
    *,
    name: str,
    result: CalibrationResult | None = None,
    detector: OdinDetector | None = None,
    client: MlflowClient | None = None,
    figures: bool = True,
) -> None:
    """Log a calibration's params, metrics and figures to ``run_id``.

    Args:
        run_id: The run to log to.
        record: The calibration record.
        name: Sub-folder of the artifacts (``odin/<name>/``), usually the model name.
        result: The calibration grid and validation scores, when available.
        detector: The fitted detector (for its reference scores) when ``result`` is not given.
        client: An MLflow client (default: a new one for the current tracking URI).
        figures: Draw and log the figures (off when the caller logs figures drawn
            earlier, as ``odin-monitor log`` does with the ``calibrate`` folder's).
    """
    client = client or MlflowClient()
    _log_params(client, run_id, calibration_params(record))
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in calibration_metrics(record).items()]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    folder = f"odin/{name}"
    client.log_text(run_id, record.to_json(), f"{folder}/calibration_record.json")
    # What the calibration's own checks found, where the run page shows it.
    client.set_tag(run_id, "odin.warnings", " | ".join(record.warnings)[:5000] or "none")
    # The run page's description: the same summary as a registered version's.
    client.set_tag(run_id, "mlflow.note.content", version_description(record))
    if result is not None:
        client.log_text(
            run_id, result.grid_frame().to_csv(index=False), f"{folder}/calibration_grid.csv"
        )
    if figures:
        for file_name, fig in _figures(record, result, detector).items():
            client.log_figure(run_id, fig, f"{folder}/{file_name}")
