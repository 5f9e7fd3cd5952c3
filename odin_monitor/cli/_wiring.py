"""Wiring shared by commands: model URIs → detector, record, monitoring identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from odin_monitor.normalization import IMAGENET_NORMALIZATION, Normalization

if TYPE_CHECKING:
    import pandas as pd

    from odin_monitor.detector import OdinDetector
    from odin_monitor.monitoring import ModelRef
    from odin_monitor.record import CalibrationRecord

NORMALIZATIONS: dict[str, Normalization | None] = {
    "none": None,
    "imagenet": IMAGENET_NORMALIZATION,
    "cifar10": Normalization(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
}


def normalization_from_options(
    preset: str | None, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> Normalization | None:
    """``--normalization NAME`` or ``--mean/--std``; one of them must be given."""
    if preset is not None and (mean or std):
        raise click.UsageError("give either --normalization or --mean/--std, not both")
    if preset is not None:
        return NORMALIZATIONS[preset]
    if mean and std:
        return Normalization(mean=mean, std=std)
    raise click.UsageError(
        "the model's input normalisation must be explicit: pass --normalization "
        f"{{{'|'.join(NORMALIZATIONS)}}} or --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25 "
        "(epsilon is in pixel units, so the detector must know it)"
    )


def default_tracking_uri() -> str:
    """MLflow's usual settings (``MLFLOW_TRACKING_URI``), else ``sqlite:///mlflow.db``."""
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def use_tracking_uri(uri: str | None) -> str:
    """Point MLflow (tracking and registry) at ``uri`` or the default; return it."""
    import mlflow

    uri = uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@dataclass(frozen=True)
class LoadedModel:
    """A detector loaded from a model URI, with what monitoring needs about it."""

    uri: str
    detector: OdinDetector
    record: CalibrationRecord
    ref: ModelRef
    reference: pd.DataFrame


def resolve_name_version(uri: str, name: str | None) -> tuple[str, str]:
    """``(registered name, version)`` of a ``models:/`` URI; else ``(name or a label, "local")``."""
    if uri.startswith("models:/"):
        from mlflow import MlflowClient

        body = uri.removeprefix("models:/")
        client = MlflowClient()
        if "@" in body:
            reg, alias = body.split("@", 1)
            return reg, str(client.get_model_version_by_alias(reg, alias).version)
        if "/" in body:
            reg, version = body.split("/", 1)
            if version.isdigit():
                return reg, version
            if version.lower() == "latest":
                versions = [int(v.version) for v in client.search_model_versions(f"name='{reg}'")]
                if not versions:
                    raise click.BadParameter(
                        f"model {reg!r} has no version", param_hint="--model-uri"
                    )
                return reg, str(max(versions))
            latest = client.get_latest_versions(reg, stages=[version])
            if not latest:
                raise click.BadParameter(
                    f"model {reg!r} has no version in stage {version!r}", param_hint="--model-uri"
                )
            return reg, str(latest[0].version)
    if uri.startswith("runs:/"):
        return name or uri.removeprefix("runs:/").split("/")[-1], uri.removeprefix("runs:/").split(
            "/"
        )[0]
    return name or Path(uri).name, "local"


def load_detector(uri: str, *, device: str | None, name: str | None = None) -> LoadedModel:
    """Load a logged ``odin`` model by URI with its record and reference scores."""
    import mlflow

    import mlflow_plugin
    from odin_monitor.monitoring import ModelRef

    # Resolve an alias (or "latest") to one version first, so the version logged with
    # each batch is the one downloaded even if the alias moves meanwhile.
    reg_name, version = resolve_name_version(uri, name)
    source = f"models:/{reg_name}/{version}" if uri.startswith("models:/") else uri
    # Download once, then read the detector, record and reference from the local copy.
    local = uri if Path(uri).is_dir() else mlflow.artifacts.download_artifacts(artifact_uri=source)
    detector = mlflow_plugin.load_model(local, device=device)
    record = mlflow_plugin.load_record(local)
    reference = mlflow_plugin.load_reference(local)
    ref = ModelRef(
        name=reg_name,
        version=version,
        calibration_sha256=record.sha256(),
        threshold=record.threshold,
        threshold_spread=record.threshold_spread,
        tpr_target=record.tpr_target,
        temperature=record.temperature,
        n_classes=record.n_classes,
    )
    return LoadedModel(uri, detector, record, ref, reference)


def scorer_for(detector: OdinDetector) -> Any:
    """``images -> DataFrame`` for :func:`odin_monitor.monitoring.process_batch`."""

    def score(images: Any) -> Any:
        return detector.score_batch(images).to_frame()

    return score
