"""Wiring shared by commands: the layers put together, no command logic.

Model URIs → detector, record and monitoring identity; a calibration → its files
and MLflow model folder; a monitoring folder → score log, reports and notifiers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from odin_monitor.cli._common import info

if TYPE_CHECKING:
    import pandas as pd

    from odin_monitor.calibration import CalibrationResult
    from odin_monitor.detector import OdinDetector
    from odin_monitor.models.config import ModelConfig
    from odin_monitor.monitoring import BatchResult, ModelRef, MonitorConfig
    from odin_monitor.monitoring.inbox import ScanItem
    from odin_monitor.normalization import Normalization
    from odin_monitor.record import CalibrationRecord

#: The --normalization presets ('none' = raw [0, 1] pixels).
NORMALIZATIONS = ("none", "imagenet", "cifar10")
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def normalization_from_options(
    preset: str | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    factory: ModelConfig | None = None,
) -> Normalization | None:
    """``--normalization NAME``, ``--mean/--std``, else the model factory's own.

    A shipped factory carries the preprocessing it was trained with
    (:mod:`odin_monitor.models.config`); without one, the choice must be explicit.
    """
    if preset is not None and (mean or std):
        raise click.UsageError("give either --normalization or --mean/--std, not both")
    from odin_monitor.normalization import IMAGENET_NORMALIZATION, Normalization

    if preset is not None:
        presets = {
            "none": None,
            "imagenet": IMAGENET_NORMALIZATION,
            "cifar10": Normalization(mean=_CIFAR10_STATS[0], std=_CIFAR10_STATS[1]),
        }
        return presets[preset]
    if mean and std:
        return Normalization(mean=mean, std=std)
    if factory is not None:
        norm = factory.normalization
        info(
            "normalisation from the model factory: "
            + ("none (raw pixels)" if norm is None else f"mean={norm.mean}, std={norm.std}")
        )
        return norm
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

    def process(
        self,
        path: Path,
        config: MonitorConfig,
        batch_id: str | None = None,
        created_at: str | None = None,
    ) -> BatchResult:
        """:func:`odin_monitor.monitoring.inbox.process_path` with this detector."""
        from odin_monitor.monitoring.inbox import process_path

        return process_path(
            path,
            self.ref,
            config,
            scorer=scorer_for(self.detector),
            reference=self.reference,
            input_shape=self.record.input_shape,
            batch_id=batch_id,
            created_at=created_at,
            preprocessing=self.record.preprocessing,
            report=info,
        )

    def windows(
        self, folder: Path, config: MonitorConfig, *, window: int | None, every: float | None
    ) -> Iterator[BatchResult]:
        """:func:`~odin_monitor.monitoring.inference_windows.run_inference_windows` here."""
        from odin_monitor.monitoring.inference_windows import run_inference_windows

        return run_inference_windows(
            folder, self.ref, config, window=window, every=every, reference=self.reference
        )

    @property
    def alias(self) -> str | None:
        """The registry alias of a ``models:/NAME@ALIAS`` URI, else None."""
        body = self.uri.removeprefix("models:/")
        return body.partition("@")[2] or None if self.uri.startswith("models:/") else None

    def scan(self, inbox: Path, config: MonitorConfig) -> Iterator[ScanItem]:
        """:func:`odin_monitor.monitoring.inbox.scan_inbox` with this detector."""
        from odin_monitor.monitoring.inbox import scan_inbox

        return scan_inbox(
            inbox,
            self.ref,
            config,
            scorer=scorer_for(self.detector),
            reference=self.reference,
            input_shape=self.record.input_shape,
            preprocessing=self.record.preprocessing,
            report=info,
        )


def resolve_name_version(uri: str, name: str | None) -> tuple[str, str]:
    """``(registered name, version)`` of a ``models:/`` URI; else ``(name or a label, "local")``.

    ``models:/NAME@ALIAS`` and ``models:/NAME/REF`` (a number, ``latest`` or a stage)
    resolve through :func:`mlflow_plugin.registry.resolve_version`.
    """
    if uri.startswith("models:/"):
        from mlflow_plugin.registry import resolve_version

        body = uri.removeprefix("models:/")
        reg, sep, ref = body.partition("@") if "@" in body else body.partition("/")
        if sep:
            return reg, resolve_version(reg, ref)
    if uri.startswith("runs:/"):
        run_id, _, artifact = uri.removeprefix("runs:/").partition("/")
        return name or artifact.split("/")[-1] or run_id, run_id
    return name or Path(uri).name, "local"


def load_detector(
    uri: str, *, device: str | None, name: str | None = None, compile: str | bool = False
) -> LoadedModel:
    """Load a logged ``odin`` model by URI with its record and reference scores.

    With ``compile`` on (``True``, ``"true"``, ``"auto"`` where it resolves on), the
    compiled scorer is built here, once, before the first batch.
    """
    import mlflow

    import mlflow_plugin
    from mlflow_plugin.lookup import check_model_uri
    from odin_monitor.monitoring import ModelRef

    check_model_uri(uri, mlflow.get_tracking_uri())  # names the store; never creates one
    # Resolve an alias (or "latest") to one version first, so the version logged with
    # each batch is the one downloaded even if the alias moves meanwhile.
    reg_name, version = resolve_name_version(uri, name)
    source = f"models:/{reg_name}/{version}" if uri.startswith("models:/") else uri
    # Download once, then read the detector, record and reference from the local copy.
    local = uri if Path(uri).is_dir() else mlflow.artifacts.download_artifacts(artifact_uri=source)
    from odin_monitor.compiled import parse_compile_setting

    detector = mlflow_plugin.load_model(
        local, device=device, compile=parse_compile_setting(compile, "--compile")
    )
    if detector.compiles:
        info("compiling the scorer (once; tens of seconds on a CPU) ...")
        detector.warm_up()
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
        epsilon=record.epsilon,
    )
    return LoadedModel(uri, detector, record, ref, reference)


def scorer_for(detector: OdinDetector) -> Any:
    """``images -> DataFrame`` for :func:`odin_monitor.monitoring.process_batch`."""

    def score(images: Any) -> Any:
        return detector.score_batch(images).to_frame()

    return score


def monitor_config(
    monitor_dir: Path,
    *,
    webhook: str | None = None,
    mlflow_metrics: bool = False,
    alpha: float = 0.01,
    jsonl: bool = True,
    alertmanager_url: str | None = None,
    alias: str | None = None,
) -> MonitorConfig:
    """The monitoring layout under one folder: scores.db, reports/, workspace/, quarantine/."""
    from odin_monitor.monitoring import (
        BinomialSpikeRule,
        CusumRule,
        JsonlNotifier,
        LogNotifier,
        MlflowNotifier,
        MonitorConfig,
        ScoreLog,
        WebhookNotifier,
    )

    monitor_dir.mkdir(parents=True, exist_ok=True)
    _log_alerts_to(monitor_dir / "alerts.log")
    notifiers: list[Any] = [LogNotifier()]
    if jsonl:
        notifiers.append(JsonlNotifier(monitor_dir / "alerts.jsonl"))
    if webhook:
        notifiers.append(WebhookNotifier(webhook))
    if mlflow_metrics:
        notifiers.append(MlflowNotifier(use_tracking_uri(None)))
    if alertmanager_url:
        from odin_monitor.monitoring.alertmanager import AlertmanagerNotifier

        notifiers.append(AlertmanagerNotifier(alertmanager_url, alias=alias))
    return MonitorConfig(
        log=ScoreLog(monitor_dir / "scores.db"),
        quarantine_dir=monitor_dir / "quarantine",
        report_dir=monitor_dir / "reports",
        workspace_dir=monitor_dir / "workspace",
        rules=(BinomialSpikeRule(alpha=alpha), CusumRule(h=5.0, shift=2.0)),
        notifiers=tuple(notifiers),
        report_alpha=alpha,
    )


def serve_metrics_of(config: MonitorConfig, loaded: LoadedModel, port: int) -> Any:
    """``/metrics`` of the score log on 127.0.0.1:``port`` (rebuilt from the log first)."""
    from odin_monitor.monitoring.prometheus import (
        OdinCollector,
        calibration_labels,
        serve_metrics,
    )

    labels = calibration_labels(loaded.ref, epsilon=loaded.record.epsilon, alias=loaded.alias)
    collector = OdinCollector(
        config.log, rules=config.rules, calibration=labels, models=[loaded.ref]
    )
    server = serve_metrics(collector, port)
    info(f"Prometheus metrics on http://127.0.0.1:{port}/metrics")
    return server


def _log_alerts_to(path: Path) -> None:
    """Send the log notifier's lines to a file; the commands print alerts themselves."""
    import logging

    logger = logging.getLogger("odin_monitor.alerts")
    target = str(path.resolve())
    if not any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


EXIT_DELIVERY_SECONDS = 10.0
"""How long a command waits at exit for alert deliveries still in flight."""


def finish_deliveries(config: MonitorConfig) -> None:
    """Give alerts still in flight a bounded wait before the command exits."""
    from odin_monitor.monitoring.delivery import flush_deliveries

    if not flush_deliveries(max(config.delivery_budget, EXIT_DELIVERY_SECONDS)):
        info("alert deliveries still in flight stay pending in the outbox (retried next run)")


def write_calibration(result: CalibrationResult, out: Path, model_ref: str | None) -> Path:
    """Write OUT/record.json, grid.csv, grid.png, roc.png, histograms.png and OUT/model.

    Returns:
        The MLflow model folder, ``OUT/model``.
    """
    import mlflow_plugin
    from odin_monitor.plots import plot_grid_heatmap, plot_roc, plot_score_histograms, save_figure

    out.mkdir(parents=True, exist_ok=True)
    rec = result.record
    (out / "record.json").write_text(rec.to_json())
    result.grid_frame().to_csv(out / "grid.csv", index=False)
    chosen = (rec.temperature, rec.epsilon)
    curves = result.grid.curves(chosen)
    save_figure(plot_grid_heatmap(result.grid, chosen=chosen), out / "grid.png")
    save_figure(plot_roc(curves, title="ROC on the validation sets"), out / "roc.png")
    hist = plot_score_histograms(
        *result.grid.scores_at(*chosen),
        threshold=rec.threshold,
        xlabel="ODIN score S(x̃;T)",
        title="validation scores",
    )
    save_figure(hist, out / "histograms.png")
    mlflow_plugin.save_model(result, out / "model", model_factory=model_ref)
    return out / "model"
