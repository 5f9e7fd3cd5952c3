"""``odin-monitor score``, ``report`` and ``monitor``: the production loop.

The monitoring library does the work (:func:`odin_monitor.monitoring.inbox.process_path`,
:func:`~odin_monitor.monitoring.inbox.scan_inbox`); these commands parse, call and print.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from odin_monitor.cli._common import EXIT_ERROR, compile_option, emit, info
from odin_monitor.cli._results import human, summarize
from odin_monitor.cli._wiring import (
    finish_deliveries,
    load_detector,
    monitor_config,
    serve_metrics_of,
    use_tracking_uri,
)

if TYPE_CHECKING:
    from odin_monitor.monitoring import BatchResult
    from odin_monitor.monitoring.inbox import ScanItem


MODEL_URI = click.option(
    "--model-uri",
    required=True,
    help="MLflow model URI: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/NAME or a folder.",
)
MONITOR_DIR = click.option(
    "--monitor-dir",
    default="odin-monitoring",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Score log, reports (JSON per batch, HTML per alerting batch), Evidently workspace "
    "and quarantine live here.",
)
TRACKING = click.option(
    "--tracking-uri",
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)


@click.command("score")
@click.argument("batch", type=click.Path(exists=True, path_type=Path))
@MODEL_URI
@MONITOR_DIR
@TRACKING
@click.option("--batch-id", help="Idempotency key (default: a hash of the batch's content).")
@click.option("--device", help="cpu, cuda, ... (default: cuda when available).")
@compile_option("false", "; pays off from several thousand images on a CPU")
@click.option("--webhook", help="POST alerts as JSON to this URL.")
@click.option("--alpha", default=0.01, show_default=True, type=float, help="α of the spike test.")
def score_command(
    batch: Path,
    model_uri: str,
    monitor_dir: Path,
    tracking_uri: str | None,
    batch_id: str | None,
    device: str | None,
    compile_setting: str,
    webhook: str | None,
    alpha: float,
) -> None:
    """Score one BATCH and append it to the score log, with a report and alert rules.

    BATCH is a folder of images, a .npz/.npy of images (uint8 NHWC or float NCHW),
    or a .csv/.parquet of scores computed elsewhere (odin_score, is_ood, ...).
    Exit code 3 when an alert fires (see `odin-monitor --help`).

    \b
    Example:
      odin-monitor score --model-uri models:/odin-resnet20@champion batch-0001.npz
    """
    from odin_monitor.monitoring.batches import batch_kind

    if batch_kind(batch) is None:
        raise click.BadParameter(
            f"expected a folder of images, a .npz/.npy of images or a .csv/.parquet of scores, "
            f"got {batch.name!r}",
            param_hint="BATCH",
        )
    use_tracking_uri(tracking_uri)
    loaded = load_detector(model_uri, device=device, compile=compile_setting)
    config = monitor_config(monitor_dir, webhook=webhook, alpha=alpha)
    result = loaded.process(batch, config, batch_id)
    finish_deliveries(config)
    emit(summarize(result), lambda: human(result))
    click.get_current_context().exit(result.exit_code)


@click.command("report")
@MONITOR_DIR
@click.option("--batch-id", help="Report one batch (default: the latest).")
@click.option("--since", help="ISO time: report all batches from here on, pooled.")
@click.option("--until", help="ISO time: with --since, up to here.")
@click.option("--alpha", default=0.01, show_default=True, type=float)
def report_command(
    monitor_dir: Path, batch_id: str | None, since: str | None, until: str | None, alpha: float
) -> None:
    """Write the Evidently report of one batch, or of a time range pooled; print its path.

    The monitor keeps a JSON snapshot of every batch in MONITOR_DIR/reports and
    MONITOR_DIR/workspace (browse with `evidently ui --workspace
    MONITOR_DIR/workspace`), but writes the standalone HTML page (several MB) only
    for batches that raise an alert. This command writes the HTML page (and JSON)
    of any batch or range, to MONITOR_DIR/reports/MODEL/VERSION/.

    \b
    Example:
      odin-monitor report --since 2026-11-01T00:00 --until 2026-11-08T00:00
    """
    import pandas as pd

    from odin_monitor.monitoring import ScoreLog
    from odin_monitor.monitoring import reports as rep

    db = monitor_dir / "scores.db"
    if not db.is_file():
        raise click.BadParameter(
            f"no score log at {db}; score a batch first", param_hint="--monitor-dir"
        )
    log = ScoreLog(db)
    ids = log.batch_ids()
    if not ids:
        raise click.ClickException(f"the score log {db} holds no batch yet")
    if since or until:
        chosen = [b for b in ids if _in_range(log.get_batch(b).created_at, since, until)]  # type: ignore[union-attr]
        if not chosen:
            raise click.ClickException(f"no batch between {since or '-inf'} and {until or '+inf'}")
        label = f"range_{since or 'start'}_{until or 'end'}".replace(":", "")
    else:
        if batch_id is not None and batch_id not in ids:
            raise click.BadParameter(f"no batch {batch_id!r} in {db}", param_hint="--batch-id")
        chosen = [batch_id or ids[-1]]
        label = chosen[0]
    records = [log.get_batch(b) for b in chosen]
    models = {(r.model.name, r.model.version) for r in records}  # type: ignore[union-attr]
    if len(models) != 1:
        raise click.ClickException(
            f"the batches span several model versions {sorted(models)}; narrow the range"
        )
    model = records[0].model  # type: ignore[union-attr]
    current = pd.concat([log.read_scores(b) for b in chosen], ignore_index=True)
    snapshot = rep.build_report(
        current, log.read_reference(model), model, alpha=alpha, batch_id=label
    )
    html, js = rep.save_report(snapshot, monitor_dir / "reports", model, label, html=True)
    emit(
        {"html": str(html), "json": str(js), "batches": chosen, "n_images": len(current)}, str(html)
    )


def _in_range(created_at: str, since: str | None, until: str | None) -> bool:
    from datetime import datetime, timezone

    def parse(text: str) -> datetime:
        try:
            t = datetime.fromisoformat(text)
        except ValueError as err:
            raise click.BadParameter(
                f"expected an ISO time such as 2026-11-01T00:00, got {text!r}"
            ) from err
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)

    t = parse(created_at)
    return (since is None or t >= parse(since)) and (until is None or t < parse(until))


def _duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` → seconds."""
    if text is None:
        return None
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise click.BadParameter(
            f"expected a duration such as 90s, 15m or 1h, got {text!r}", param_hint="--every"
        )
    return seconds


@click.command("monitor")
@click.option(
    "--inbox",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder where batches arrive (.npz/.npy, .csv/.parquet, or sub-folders of images).",
)
@click.option(
    "--inference-log",
    type=click.Path(file_okay=False, path_type=Path),
    help="The served model's inference log (ODIN_INFERENCE_LOG), cut into batches.",
)
@click.option("--window", type=click.IntRange(min=1), help="With --inference-log: rows per batch.")
@click.option("--every", help="With --inference-log: one batch per period, e.g. 5m, 1h.")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus /metrics here."
)
@click.option("--alertmanager-url", help="Post alerts to this Alertmanager (API v2), e.g. :9093.")
@MODEL_URI
@MONITOR_DIR
@TRACKING
@click.option("--device", help="cpu, cuda, ... (default: cuda when available).")
@compile_option("auto", "; off with --once, where each run would compile again")
@click.option("--webhook", help="POST alerts as JSON to this URL.")
@click.option(
    "--mlflow-metrics/--no-mlflow-metrics",
    default=False,
    help="Write each batch to a finished MLflow run (experiment odin-monitoring, "
    "grouped per day): its figures as metrics, its alerts as tags.",
)
@click.option("--alpha", default=0.01, show_default=True, type=float)
@click.option("--once", is_flag=True, help="Process what is there, then exit (for cron).")
@click.option(
    "--interval", default=30.0, show_default=True, type=float, help="Seconds between scans."
)
@click.option("--max-scans", type=int, help="Stop after this many scans (default: run forever).")
def monitor_command(
    inbox: Path | None,
    inference_log: Path | None,
    window: int | None,
    every: str | None,
    metrics_port: int | None,
    alertmanager_url: str | None,
    model_uri: str,
    monitor_dir: Path,
    tracking_uri: str | None,
    device: str | None,
    compile_setting: str,
    webhook: str | None,
    mlflow_metrics: bool,
    alpha: float,
    once: bool,
    interval: float,
    max_scans: int | None,
) -> None:
    """Watch INBOX (or the served model's inference log): each batch once, report, alert.

    A batch's id is a hash of its file (or of a folder's files), so a batch seen
    before is never scored twice, even across restarts. Unreadable batches go to
    MONITOR_DIR/quarantine. Hidden files, partial files (.tmp, .part, ...) and
    other suffixes are skipped: write a batch elsewhere, then move it in. A batch
    that fails for another reason stays in place and is retried on the next scan.
    With --once, the exit code is 3 if any alert fired, 4 if a batch was
    quarantined, 5 if a report or notifier failed, else 0.

    With --inference-log FOLDER (what `mlflow models serve` writes with
    ODIN_INFERENCE_LOG=FOLDER), the log is cut into batches of --window N rows or
    one per --every period, each processed exactly once, even across kill -9.
    --metrics-port serves Prometheus metrics (counts rebuilt from the score log);
    --alertmanager-url posts fired and resolved alerts to Alertmanager.

    \b
    Example (cron, every 5 minutes):
      */5 * * * * odin-monitor monitor --inbox /data/inbox \\
        --model-uri models:/odin-resnet20@champion --once
    """
    from odin_monitor.monitoring import combined_exit_code
    from odin_monitor.monitoring.inbox import inbox_lock

    if (inbox is None) == (inference_log is None):
        raise click.UsageError("give exactly one of --inbox or --inference-log")
    seconds = _duration(every)
    if inference_log is not None and (window is None) == (seconds is None):
        raise click.UsageError("with --inference-log, give exactly one of --window or --every")
    if inference_log is None and (window is not None or seconds is not None):
        raise click.UsageError("--window and --every go with --inference-log")
    use_tracking_uri(tracking_uri)
    if once and compile_setting.lower() == "auto":
        compile_setting = "false"  # a cron run would compile again each time
    loaded = load_detector(model_uri, device=device, compile=compile_setting)
    config = monitor_config(
        monitor_dir,
        webhook=webhook,
        mlflow_metrics=mlflow_metrics,
        alpha=alpha,
        alertmanager_url=alertmanager_url,
        alias=loaded.alias,
    )
    server = None if metrics_port is None else serve_metrics_of(config, loaded, metrics_port)
    folder = inbox if inbox is not None else inference_log
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    results: list[BatchResult] = []
    failures = 0
    scans = 0
    while True:
        scans += 1
        with inbox_lock(folder) as mine:
            if not mine:
                info(f"another monitor is scanning {folder}; skipping this scan")
            elif inference_log is not None:
                for result in loaded.windows(folder, config, window=window, every=seconds):
                    results.append(result)
                    emit(summarize(result), human(result))
            else:
                for item in loaded.scan(folder, config):
                    failures += _print_item(item, results)
        if once or (max_scans is not None and scans >= max_scans):
            break
        time.sleep(interval)
    finish_deliveries(config)
    if server is not None:
        server.shutdown()
    info(f"{len(results)} batch(es) processed; score log {monitor_dir / 'scores.db'}")
    code = combined_exit_code(results)
    click.get_current_context().exit(code if code or not failures else EXIT_ERROR)


def _print_item(item: ScanItem, results: list[BatchResult]) -> int:
    """Print what the scan did with one inbox entry; 1 if it failed, else 0."""
    if item.result is not None:
        results.append(item.result)
        emit(summarize(item.result), human(item.result))
    elif item.skipped is not None:
        info(f"skipping {item.path.name}: {item.skipped}")
    else:
        err = item.error
        click.echo(f"Error: batch {item.path.name}: {type(err).__name__}: {err}", err=True)
        return 1
    return 0
