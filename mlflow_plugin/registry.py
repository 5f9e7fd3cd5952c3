"""Version calibrations in the MLflow Model Registry.

Every registered detector version is tagged with its calibration
(:func:`calibration_tags`), so versions can be told apart without loading them.
Aliases (e.g. ``champion``) move only when asked (:func:`set_alias`).
Recalibrating the same classifier and registering it again makes a new version;
older versions keep their files and load and score exactly as before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_plugin import _mlflow_compat as compat
from mlflow_plugin.flavor import load_model, load_record
from odin_monitor.detector import OdinDetector
from odin_monitor.record import CalibrationRecord

__all__ = [
    "calibration_tags",
    "compare_calibrations",
    "load_by_alias",
    "register_detector",
    "set_alias",
    "tag_model_version",
]


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


def register_detector(
    model_uri: str,
    name: str,
    *,
    tags: dict[str, Any] | None = None,
    await_registration_for: int = compat.DEFAULT_AWAIT_REGISTRATION_S,
) -> ModelVersion:
    """Register a logged detector as a new version of ``name``, tagged with its calibration.

    No alias is set or moved; use :func:`set_alias` for that.

    Args:
        model_uri: E.g. ``ModelInfo.model_uri`` from :func:`mlflow_plugin.log_model`.
        name: The registered model's name (created if needed).
        tags: Extra version tags.
        await_registration_for: Seconds to wait for the version to be ready.

    Returns:
        The new :class:`~mlflow.entities.model_registry.ModelVersion` (with its tags).

    Example:
        >>> mv = register_detector(info.model_uri, "odin-cifar10")  # doctest: +SKIP
        >>> mv.tags["odin.temperature"]  # doctest: +SKIP
        '1000.0'
    """
    record = load_record(model_uri)
    all_tags = {**(tags or {}), **calibration_tags(record)}
    mv = mlflow.register_model(
        model_uri, name, await_registration_for=await_registration_for, tags=all_tags
    )
    return MlflowClient().get_model_version(name, mv.version)


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` (e.g. ``"champion"``) at ``version`` of ``name``, moving it if set.

    Example:
        >>> set_alias("odin-cifar10", "champion", 2)  # doctest: +SKIP
    """
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def _version_of(name: str, ref: str | int) -> str:
    ref = str(ref)
    if ref.isdigit():
        return ref
    try:
        return str(MlflowClient().get_model_version_by_alias(name, ref).version)
    except MlflowException as err:
        raise MlflowException.invalid_parameter_value(
            f"Expected a version number or an alias of registered model {name!r}, but "
            f"{ref!r} is neither ({err.message})."
        ) from err


def _flat(record: CalibrationRecord) -> dict[str, Any]:
    norm = None if record.normalization is None else record.normalization.to_dict()
    out: dict[str, Any] = {
        "temperature": record.temperature,
        "epsilon": record.epsilon,
        "threshold": record.threshold,
        "threshold_spread": record.threshold_spread,
        "tpr_target": record.tpr_target,
        "normalization": json.dumps(norm),
        "input_shape": json.dumps(list(record.input_shape)),
        "n_classes": record.n_classes,
        "selection": record.selection,
        "calibration_sha256": record.sha256(),
        "created_at": record.created_at,
    }
    for source in record.sources:
        out[f"source.{source.role}.{source.name}.sha256"] = source.sha256
        out[f"source.{source.role}.{source.name}.n_images"] = source.n_images
    for key, value in sorted(record.metrics.items()):
        out[f"metric.{key}"] = value
    return out


def compare_calibrations(name: str, version_a: str | int, version_b: str | int) -> pd.DataFrame:
    """Side-by-side calibrations of two versions (numbers or aliases) of ``name``.

    Returns:
        DataFrame indexed by field (``temperature``, ``epsilon``, ``threshold``,
        ``metric.<name>``, ``source.<role>.<name>.sha256``, ...) with columns
        ``v<a>``, ``v<b>`` and ``equal``.

    Example:
        >>> diff = compare_calibrations("odin-cifar10", 1, "champion")  # doctest: +SKIP
        >>> diff[~diff["equal"]]  # doctest: +SKIP
    """
    va, vb = _version_of(name, version_a), _version_of(name, version_b)
    if va == vb:
        raise MlflowException.invalid_parameter_value(
            f"Expected two different versions of {name!r}, but both are version {va}."
        )
    a = _flat(load_record(f"models:/{name}/{va}"))
    b = _flat(load_record(f"models:/{name}/{vb}"))
    keys = list(dict.fromkeys([*a, *b]))
    frame = pd.DataFrame(
        {f"v{va}": [a.get(k) for k in keys], f"v{vb}": [b.get(k) for k in keys]},
        index=pd.Index(keys, name="field"),
        dtype=object,
    )
    frame["equal"] = [a.get(k) == b.get(k) for k in keys]
    return frame


def load_by_alias(name: str, alias: str = "champion", **kwargs: Any) -> OdinDetector:
    """Load ``models:/<name>@<alias>`` as a fitted detector.

    Args:
        name: Registered model name.
        alias: The alias, e.g. ``"champion"``.
        **kwargs: Passed to :func:`mlflow_plugin.load_model` (``device``, ``batch_size``).

    Example:
        >>> det = load_by_alias("odin-cifar10", "champion", device="cpu")  # doctest: +SKIP
    """
    return load_model(f"models:/{name}@{alias}", **kwargs)
