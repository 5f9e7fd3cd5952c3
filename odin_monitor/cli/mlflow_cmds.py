"""``odin-monitor log`` and ``register``: put a calibrated detector in MLflow."""

from __future__ import annotations

from pathlib import Path

import click

from odin_monitor.cli._common import emit, info
from odin_monitor.cli._wiring import use_tracking_uri

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."


@click.command("log")
@click.argument("calibration_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tracking-uri", help=TRACKING_HELP)
@click.option("--experiment", default="odin", show_default=True, help="MLflow experiment name.")
@click.option(
    "--name",
    "model_name",
    default="odin_detector",
    show_default=True,
    help="Name of the logged model inside the run.",
)
@click.option("--register", "registered_name", help="Also register it under this model name.")
@click.option(
    "--alias", help="With --register: point this alias (e.g. champion) at the new version."
)
def log_command(
    calibration_dir: Path,
    tracking_uri: str | None,
    experiment: str,
    model_name: str,
    registered_name: str | None,
    alias: str | None,
) -> None:
    """Log a calibrated detector (the OUT folder of `calibrate`) to MLflow.

    The run gets T, ε, δ as params, the validation metrics, the grid and the plots;
    with --register the new model version is tagged with the calibration.

    \b
    Example:
      odin-monitor log calib-resnet20 --register odin-resnet20 --alias champion
    """
    import mlflow
    from mlflow.models import Model

    import mlflow_plugin

    if alias and not registered_name:
        raise click.UsageError("--alias needs --register NAME")
    model_dir = calibration_dir / "model"
    if not (model_dir / "MLmodel").is_file():
        raise click.BadParameter(
            f"expected {model_dir}/MLmodel (the folder written by `odin-monitor calibrate`)",
            param_hint="CALIBRATION_DIR",
        )
    uri = use_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        detector = mlflow_plugin.load_model(str(model_dir), device="cpu")
        # Keep the saved serialisation: a state_dict + factory model stays one.
        conf = Model.load(str(model_dir)).flavors.get(mlflow_plugin.FLAVOR_NAME, {})
        fallback = (
            {"serialization": "state_dict", "model_factory": conf["model_factory"]}
            if conf.get("format") == "state_dict" and conf.get("model_factory")
            else {}
        )
        model_info = mlflow_plugin.log_model(
            detector,
            model_name,
            record=mlflow_plugin.load_record(str(model_dir)),
            registered_model_name=registered_name,
            log_figures=False,
            **fallback,
        )
        # The calibrate folder's grid and figures, once, beside the record log_model wrote.
        for p in sorted(calibration_dir.iterdir()):
            if p.is_file() and p.name != "record.json":
                mlflow.log_artifact(str(p), artifact_path=f"odin/{model_name}")
    version = model_info.registered_model_version
    if alias and version is not None:
        mlflow_plugin.set_alias(registered_name, alias, version)  # type: ignore[arg-type]
        info(f"alias {alias} -> version {version}")
    target = (
        f"models:/{registered_name}@{alias}"
        if alias
        else (f"models:/{registered_name}/{version}" if version else model_info.model_uri)
    )
    emit(
        {
            "tracking_uri": uri,
            "run_id": run.info.run_id,
            "model_uri": model_info.model_uri,
            "registered_model": registered_name,
            "version": version,
            "alias": alias,
        },
        lambda: (
            f"logged run {run.info.run_id} to {uri}\nmodel: {model_info.model_uri}"
            + (f"\nregistered {registered_name} version {version}" if version else "")
            + f"\nscore with: odin-monitor score --model-uri {target} BATCH"
        ),
    )


@click.command("register")
@click.argument("model_uri")
@click.option("--name", required=True, help="Registered model name.")
@click.option("--alias", help="Point this alias (e.g. champion) at the new version.")
@click.option("--tracking-uri", help=TRACKING_HELP)
def register_command(
    model_uri: str, name: str, alias: str | None, tracking_uri: str | None
) -> None:
    """Register a logged detector as a new, calibration-tagged version of NAME.

    \b
    Example:
      odin-monitor register runs:/<run_id>/odin_detector --name odin-resnet20 --alias champion
    """
    import mlflow_plugin

    use_tracking_uri(tracking_uri)
    mv = mlflow_plugin.register_detector(model_uri, name)
    if alias:
        mlflow_plugin.set_alias(name, alias, mv.version)
    emit(
        {"name": name, "version": str(mv.version), "alias": alias, "tags": dict(mv.tags or {})},
        f"registered {name} version {mv.version}" + (f" (alias {alias})" if alias else ""),
    )
