"""Version calibrations in the MLflow Model Registry.

Every registered detector version is tagged with its calibration
(:func:`mlflow_plugin.tags.calibration_tags`), so versions can be told apart without loading them.
Aliases (e.g. ``champion``) move only when asked (:func:`set_alias`).
Recalibrating the same classifier and registering it again makes a new version;
older versions keep their files and load and score exactly as before.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_plugin import _mlflow_compat as compat
from mlflow_plugin.flavor import load_model, load_record
from mlflow_plugin.tags import calibration_tags, describe_registered_model, version_description
from odin_monitor.detector import OdinDetector
from odin_monitor.record import CalibrationRecord

__all__ = [
    "compare_calibrations",
    "load_by_alias",
    "register_detector",
    "resolve_version",
    "set_alias",
]


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
    client = MlflowClient()
    client.update_model_version(name, mv.version, description=version_description(record))
    describe_registered_model(name, client)
    return client.get_model_version(name, mv.version)


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` (e.g. ``"champion"``) at ``version`` of ``name``, moving it if set.

    Example:
        >>> set_alias("odin-cifar10", "champion", 2)  # doctest: +SKIP
    """
    MlflowClient().set_registered_model_alias(name, alias, str(version))


#: MLflow's (deprecated) model version stages, as ``models:/NAME/STAGE`` names them.
STAGES = ("staging", "production", "archived", "none")


def resolve_version(name: str, ref: str | int) -> str:
    """The version number of registered model ``name`` that ``ref`` names.

    Resolve an alias (or ``"latest"``) once, then work on the number, so the version
    used is the one recorded even if the alias moves meanwhile.

    Args:
        name: Registered model name.
        ref: A version number; ``"latest"`` (the highest version); an alias such
            as ``"champion"``; or, when no such alias exists, an MLflow stage
            (``Staging``, ``Production``, ...) as ``models:/NAME/STAGE`` names it.

    Returns:
        The version number, as a string.

    Raises:
        MlflowException: ``name`` has no version, or ``ref`` is neither a number,
            ``"latest"``, an alias nor a stage holding a version.

    Example:
        >>> resolve_version("odin-cifar10", 3)
        '3'
        >>> resolve_version("odin-cifar10", "champion")  # doctest: +SKIP
        '2'
    """
    ref = str(ref)
    if ref.isdigit():
        return ref
    client = MlflowClient()
    if ref.lower() == "latest":
        versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
        if not versions:
            raise MlflowException.invalid_parameter_value(
                f"Expected registered model {name!r} to have a version, but it has none; "
                "register one first (mlflow_plugin.register_detector)."
            )
        return str(max(versions))
    try:
        return str(client.get_model_version_by_alias(name, ref).version)
    except MlflowException as err:
        if ref.lower() in STAGES:
            found = client.get_latest_versions(name, stages=[ref])
            if found:
                return str(found[0].version)
        raise MlflowException.invalid_parameter_value(
            f"Expected a version number, 'latest' or an alias of registered model {name!r}, "
            f"but {ref!r} is none of them ({err.message})."
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
    va, vb = resolve_version(name, version_a), resolve_version(name, version_b)
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
