"""``odin-monitor score``, ``report`` and ``monitor``: the production loop."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from odin_monitor.cli._common import EXIT_ERROR, emit, info
from odin_monitor.cli._wiring import LoadedModel, load_detector, scorer_for, use_tracking_uri

if TYPE_CHECKING:
    from odin_monitor.monitoring import BatchResult, MonitorConfig

SCORE_SUFFIXES = (".csv", ".parquet", ".pq")
# Files still being written: write elsewhere (or under such a name), then rename.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
ARRAY_SUFFIXES = (".npz", ".npy")


def monitor_config(
    monitor_dir: Path,
    *,
    webhook: str | None = None,
    mlflow_metrics: bool = False,
    alpha: float = 0.01,
    jsonl: bool = True,
) -> MonitorConfig:
    """The monitoring layout under one folder: scores.db, reports/, workspace/, quarantine/."""
    from odin_monitor.monitoring import (
        BinomialSpikeRule,
        CusumRule,
        LogNotifier,
        MlflowNotifier,
        MonitorConfig,
        ScoreLog,
        WebhookNotifier,
    )
    from odin_monitor.monitoring.notifiers import JsonlNotifier

    monitor_dir.mkdir(parents=True, exist_ok=True)
    _log_alerts_to(monitor_dir / "alerts.log")
    notifiers: list[Any] = [LogNotifier()]
    if jsonl:
        notifiers.append(JsonlNotifier(monitor_dir / "alerts.jsonl"))
    if webhook:
        notifiers.append(WebhookNotifier(webhook))
    if mlflow_metrics:
        notifiers.append(MlflowNotifier(use_tracking_uri(None)))
    return MonitorConfig(
        log=ScoreLog(monitor_dir / "scores.db"),
        quarantine_dir=monitor_dir / "quarantine",
        report_dir=monitor_dir / "reports",
        workspace_dir=monitor_dir / "workspace",
        rules=(BinomialSpikeRule(alpha=alpha), CusumRule(h=5.0, shift=2.0)),
        notifiers=tuple(notifiers),
        report_alpha=alpha,
    )


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


class BatchVanishedError(FileNotFoundError):
    """A batch left the inbox between listing and reading (moved by someone else)."""


def process_path(
    path: Path,
    loaded: LoadedModel,
    config: MonitorConfig,
    batch_id: str | None = None,
    created_at: str | None = None,
) -> BatchResult:
    """Score (or ingest) one batch file or folder and run the monitoring step on it.

    Arrays may be uint8 ``(N, H, W, C)`` or float ``(N, C, H, W)``; folders hold image
    files of any size (resized to the model's input). ``created_at`` (ISO-8601) stamps
    the batch; default now. A batch that cannot be read or scored is quarantined: the
    file or folder moves to ``quarantine/`` and its row records both paths. A batch
    id already logged is not scored again (its alerts and missing report are checked,
    see :func:`~odin_monitor.monitoring.pipeline.revisit_batch`); an explicit
    ``batch_id`` already logged with different content raises
    :class:`~odin_monitor.monitoring.scorelog.BatchIdConflictError`.

    Raises:
        BatchVanishedError: The batch disappeared before it could be read.
    """
    from odin_monitor.data import load_folder, load_images
    from odin_monitor.monitoring import process_batch
    from odin_monitor.monitoring.pipeline import quarantine_batch, revisit_batch

    suffix = path.suffix.lower()
    if path.is_file() and suffix in SCORE_SUFFIXES:
        return process_batch(
            loaded.ref,
            config,
            scores=path,
            batch_id=batch_id,
            reference=loaded.reference,
            created_at=created_at,
        )
    if path.is_file() and suffix not in ARRAY_SUFFIXES:
        raise click.BadParameter(
            f"expected a folder of images, a .npz/.npy of images or a .csv/.parquet of scores, "
            f"got {path.name!r}",
            param_hint="BATCH",
        )
    bid = batch_id or batch_id_of(path)
    if batch_id is None and config.log.get_batch(bid) is not None:
        # The id is the content's hash, so this is the logged batch: nothing to read.
        return revisit_batch(loaded.ref, config, bid)
    c, h, w = loaded.record.input_shape
    try:
        images = load_folder(path, size=(h, w), channels=c) if path.is_dir() else load_images(path)
    except (ValueError, FileNotFoundError) as err:  # DataLoadError, InputValidationError, ...
        if not path.exists():
            raise BatchVanishedError(f"{path} left the inbox before it was read") from err
        return quarantine_batch(loaded.ref, config, bid, str(err), path)
    return process_batch(
        loaded.ref,
        config,
        images=images,
        batch_id=bid,
        scorer=scorer_for(loaded.detector),
        reference=loaded.reference,
        created_at=created_at,
        source=path,
    )


def batch_id_of(path: Path) -> str:
    """Content hash of a batch file, or of a folder's sorted file names and bytes.

    Raises:
        BatchVanishedError: The file or folder is gone, or left while being hashed
            (never the hash of nothing).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> batch_id_of(d).startswith("sha256-")
        True
    """
    import hashlib

    from odin_monitor.monitoring.ingest import file_id

    try:
        if path.is_file():
            return file_id(path)
        if not path.is_dir():
            raise FileNotFoundError(path)
        digest = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
            digest.update(f.read_bytes())
        if not path.is_dir():
            raise FileNotFoundError(path)
    except FileNotFoundError as err:
        raise BatchVanishedError(f"{path} left the inbox while it was hashed") from err
    return "sha256-" + digest.hexdigest()[:24]


LOCK_NAME = ".odin-monitor.lock"


@contextlib.contextmanager
def inbox_lock(inbox: Path) -> Iterator[bool]:
    """Hold the inbox's exclusive scan lock if free; yields whether it was taken.

    An ``flock`` on ``INBOX/.odin-monitor.lock``: two ``monitor`` processes on one
    inbox take turns instead of racing for the same files (one quarantining a file
    the other is hashing). The kernel releases it when a process dies, even on
    ``kill -9``. Local file systems only (flock is advisory and per host).
    """
    import fcntl

    with open(inbox / LOCK_NAME, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _batch_candidates(inbox: Path) -> list[Path]:
    """Inbox entries that look like complete batches (hidden and partial files skipped)."""
    out = []
    for path in sorted(inbox.iterdir()):
        name = path.name.lower()
        if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
            continue
        if path.is_dir() and not any(path.iterdir()):
            continue
        if path.is_file() and path.suffix.lower() not in SCORE_SUFFIXES + ARRAY_SUFFIXES:
            info(f"skipping {path.name}: not a batch (.npz/.npy, .csv/.parquet or a folder)")
            continue
        out.append(path)
    return out


def summarize(result: BatchResult) -> dict[str, Any]:
    """JSON-ready summary of a batch result."""
    rec = result.record
    return {
        "batch_id": result.batch_id,
        "n_images": None if rec is None else rec.n_images,
        "n_ood": None if rec is None else rec.n_ood,
        "ood_rate": None if rec is None else rec.ood_rate,
        "duplicate": result.duplicate,
        "quarantine_reason": result.quarantine_reason,
        "alerts": [a.to_dict() if hasattr(a, "to_dict") else str(a) for a in result.alerts],
        "html_report": result.html_path,
        "errors": list(result.errors),
        "exit_code": result.exit_code,
    }


def human(result: BatchResult) -> str:
    """One line (plus alerts) for a person."""
    if result.quarantined:
        return f"batch {result.batch_id}: QUARANTINED ({result.quarantine_reason})"
    rec = result.record
    head = f"batch {result.batch_id}: {rec.n_ood}/{rec.n_images} OOD ({100 * rec.ood_rate:.1f}%)"  # type: ignore[union-attr]
    if result.duplicate:
        head += " [already logged]"
    lines = [head]
    lines += [f"  ALERT {a.message}" for a in result.alerts]
    lines += [f"  warning: {e}" for e in result.errors]
    if result.html_path:
        lines.append(f"  report: {result.html_path}")
    return "\n".join(lines)


def finish_deliveries(config: MonitorConfig) -> None:
    """Give alerts still in flight a bounded wait before the command exits."""
    from odin_monitor.monitoring.notifiers import flush_deliveries

    if not flush_deliveries(max(config.delivery_budget, EXIT_DELIVERY_SECONDS)):
        info("alert deliveries still in flight stay pending in the outbox (retried next run)")


EXIT_DELIVERY_SECONDS = 10.0


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
    help="Score log, reports, Evidently workspace and quarantine live here.",
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
@click.option("--webhook", help="POST alerts as JSON to this URL.")
@click.option("--alpha", default=0.01, show_default=True, type=float, help="α of the spike test.")
def score_command(
    batch: Path,
    model_uri: str,
    monitor_dir: Path,
    tracking_uri: str | None,
    batch_id: str | None,
    device: str | None,
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
    use_tracking_uri(tracking_uri)
    loaded = load_detector(model_uri, device=device)
    config = monitor_config(monitor_dir, webhook=webhook, alpha=alpha)
    result = process_path(batch, loaded, config, batch_id)
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
    html, js = rep.save_report(snapshot, monitor_dir / "reports", model, label)
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


@click.command("monitor")
@click.option(
    "--inbox",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder where batches arrive (.npz/.npy, .csv/.parquet, or sub-folders of images).",
)
@MODEL_URI
@MONITOR_DIR
@TRACKING
@click.option("--device", help="cpu, cuda, ... (default: cuda when available).")
@click.option("--webhook", help="POST alerts as JSON to this URL.")
@click.option(
    "--mlflow-metrics/--no-mlflow-metrics",
    default=False,
    help="Log ood_rate per batch to an MLflow monitoring run.",
)
@click.option("--alpha", default=0.01, show_default=True, type=float)
@click.option("--once", is_flag=True, help="Process what is there, then exit (for cron).")
@click.option(
    "--interval", default=30.0, show_default=True, type=float, help="Seconds between scans."
)
@click.option("--max-scans", type=int, help="Stop after this many scans (default: run forever).")
def monitor_command(
    inbox: Path,
    model_uri: str,
    monitor_dir: Path,
    tracking_uri: str | None,
    device: str | None,
    webhook: str | None,
    mlflow_metrics: bool,
    alpha: float,
    once: bool,
    interval: float,
    max_scans: int | None,
) -> None:
    """Watch INBOX: score each new batch exactly once, report, and alert.

    A batch's id is a hash of its file (or of a folder's files), so a batch seen
    before is never scored twice, even across restarts. Unreadable batches go to
    MONITOR_DIR/quarantine. Hidden files, partial files (.tmp, .part, ...) and
    other suffixes are skipped: write a batch elsewhere, then move it in. A batch
    that fails for another reason stays in place and is retried on the next scan.
    With --once, the exit code is 3 if any alert fired, 4 if a batch was
    quarantined, 5 if a report or notifier failed, else 0.

    \b
    Example (cron, every 5 minutes):
      */5 * * * * odin-monitor monitor --inbox /data/inbox \\
        --model-uri models:/odin-resnet20@champion --once
    """
    from odin_monitor.monitoring import combined_exit_code

    use_tracking_uri(tracking_uri)
    loaded = load_detector(model_uri, device=device)
    config = monitor_config(
        monitor_dir, webhook=webhook, mlflow_metrics=mlflow_metrics, alpha=alpha
    )
    results: list[BatchResult] = []
    failures = 0
    scans = 0
    while True:
        scans += 1
        with inbox_lock(inbox) as mine:
            if mine:
                failures += _scan(inbox, loaded, config, results)
            else:
                info(f"another monitor is scanning {inbox}; skipping this scan")
        if once or (max_scans is not None and scans >= max_scans):
            break
        time.sleep(interval)
    finish_deliveries(config)
    info(f"{len(results)} batch(es) processed; score log {monitor_dir / 'scores.db'}")
    code = combined_exit_code(results)
    click.get_current_context().exit(code if code or not failures else EXIT_ERROR)


def _scan(inbox: Path, loaded: LoadedModel, config: MonitorConfig, out: list[BatchResult]) -> int:
    """Process the inbox's new (or incompletely processed) batches; return the failures."""
    from odin_monitor.monitoring.notifiers import deliver_in_background
    from odin_monitor.monitoring.pipeline import batch_is_complete, revisit_batch

    # Alerts left pending by earlier runs are retried even if no new batch comes.
    deliver_in_background(config.log, config.notifiers, budget=0.0)
    failures = 0
    for path in _batch_candidates(inbox):
        try:
            bid = batch_id_of(path)
            # A known batch is skipped only once its alerts are stored and its report
            # is on disk; otherwise it is revisited (a crash after its commit).
            if config.log.get_batch(bid) is None:
                result = process_path(path, loaded, config, bid)
            elif batch_is_complete(config, bid):
                continue
            else:
                result = revisit_batch(loaded.ref, config, bid)
        except BatchVanishedError as err:  # taken by someone else: not ours to quarantine
            info(f"skipping {path.name}: {err}")
            continue
        except Exception as err:  # one batch must not stop the loop; the file stays
            failures += 1
            click.echo(f"Error: batch {path.name}: {type(err).__name__}: {err}", err=True)
            continue
        out.append(result)
        emit(summarize(result), human(result))
    return failures
