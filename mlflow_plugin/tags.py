"""The registry tags of a calibration: what a person reads in the model-version table.

Kept apart from :mod:`mlflow_plugin.registry` (which loads models through the flavour)
so that :mod:`mlflow_plugin.flavor` can tag a version it logs without an import circle.
"""

from __future__ import annotations

import math

from mlflow.tracking import MlflowClient

from odin_monitor.record import CalibrationRecord

__all__ = ["calibration_tags", "tag_model_version"]


def calibration_tags(record: CalibrationRecord) -> dict[str, str]:
    """The model-version tags of a calibration.

    ``odin.temperature``, ``odin.epsilon``, ``odin.threshold``, ``odin.tpr_target``,
    ``odin.calibration_sha256``, ``odin.threshold_spread``, and one
    ``odin.metric.<name>`` per finite validation metric.

    Example:
        >>> rec = CalibrationRecord(temperature=1000.0, epsilon=0.0014, threshold=0.1,
        ...     threshold_spread=2.0, tpr_target=0.95, normalization=None, n_classes=10,
        ...     input_shape=(3, 32, 32), metrics={"auroc": 0.97})
        >>> tags = calibration_tags(rec)
        >>> tags["odin.epsilon"], tags["odin.metric.auroc"]
        ('0.0014', '0.97')
    """
    tags = {
        "odin.temperature": repr(float(record.temperature)),
        "odin.epsilon": repr(float(record.epsilon)),
        "odin.threshold": repr(float(record.threshold)),
        "odin.threshold_spread": repr(float(record.threshold_spread)),
        "odin.tpr_target": repr(float(record.tpr_target)),
        "odin.calibration_sha256": record.sha256(),
    }
    if record.preprocessing is not None:
        tags["odin.preprocessing"] = record.preprocessing.describe()
    for key, value in sorted(record.metrics.items()):
        if math.isfinite(float(value)):
            tags[f"odin.metric.{key}"] = repr(float(value))
    return tags


def tag_model_version(
    name: str, version: str, record: CalibrationRecord, client: MlflowClient | None = None
) -> None:
    """Set :func:`calibration_tags` on an existing model version."""
    client = client or MlflowClient()
    for key, value in calibration_tags(record).items():
        client.set_model_version_tag(name, version, key, value)
