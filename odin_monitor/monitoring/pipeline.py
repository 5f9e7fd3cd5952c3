"""One monitoring step: score or ingest → commit with alerts → report → notifiers.

The batch is committed to the score log, together with the alerts its rules raise,
before anything else happens, so report, workspace or notifier failures never lose
it or its alerts; they are collected in :attr:`BatchResult.errors` (exit code 5)
and alerts wait in the outbox. Notifiers run in a background thread: scoring waits
for them at most :attr:`MonitorConfig.delivery_budget` seconds.

Sending a batch id again is safe: the same content returns the stored result (its
alerts raised again, a missing report rebuilt from the stored scores); different
content under a known id raises :class:`~.scorelog.BatchIdConflictError`.

Every batch gets a JSON snapshot and a workspace snapshot; the standalone HTML
report (several MB) is written only for a batch that raises an alert (the alert
links to it). A batch without alerts and without HTML is complete.

Example:
    >>> # cfg = MonitorConfig(log=ScoreLog("mon/scores.db"), quarantine_dir="mon/quarantine",
    >>> #                     report_dir="mon/reports", workspace_dir="mon/workspace")
    >>> # result = process_batch(model, cfg, images=batch, scorer=detector.score)
    >>> # sys.exit(result.exit_code)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from odin_monitor.monitoring.alerts import (
    Alert,
    BinomialSpikeRule,
    CusumRule,
    Rule,
    evaluate_rules,
    resolutions,
)
from odin_monitor.monitoring.batches import (
    BatchRecord,
    check_same_content,
)
from odin_monitor.monitoring.delivery import deliver_in_background
from odin_monitor.monitoring.errors import ConfigError, InvalidBatchError
from odin_monitor.monitoring.ingest import move_to_quarantine
from odin_monitor.monitoring.inputs import ImageReader, Scorer, resolve_input
from odin_monitor.monitoring.notifiers import LogNotifier, Notifier
from odin_monitor.monitoring.result import BatchResult
from odin_monitor.monitoring.schema import ModelRef
from odin_monitor.monitoring.scorelog import ScoreLog

logger = logging.getLogger(__name__)


def _default_rules() -> tuple[Rule, ...]:
    return (BinomialSpikeRule(alpha=0.01), CusumRule(h=5.0, shift=2.0))


def _default_notifiers() -> tuple[Notifier, ...]:
    return (LogNotifier(),)


@dataclass(frozen=True)
class MonitorConfig:
    """Where the loop writes and which rules/notifiers it runs.

    Attributes:
        log: The score log (SQLite).
        quarantine_dir: Bad input files are moved here.
        report_dir: JSON report of every batch, HTML of every batch that raises an
            alert (None: no report files).
        workspace_dir: Local Evidently workspace (None: no snapshots).
        rules: Alert rules (default: binomial spike at α=0.01 and CUSUM h=5).
        notifiers: Alert notifiers (default: log line).
        report_alpha: α of the binomial test shown in the Evidently report.
        delivery_budget: Seconds :func:`process_batch` waits for the notifiers
            (they run in a background thread; what is not delivered by then stays
            pending in the outbox and is retried, never lost).
    """

    log: ScoreLog
    quarantine_dir: str | Path
    report_dir: str | Path | None = None
    workspace_dir: str | Path | None = None
    rules: Sequence[Rule] = field(default_factory=_default_rules)
    notifiers: Sequence[Notifier] = field(default_factory=_default_notifiers)
    report_alpha: float = 0.01
    delivery_budget: float = 2.0

    def __post_init__(self) -> None:
        budget = self.delivery_budget
        if not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget < 0:
            raise ConfigError(
                f"Expected delivery_budget as seconds >= 0, e.g. 2.0, but got {budget!r}."
            )


def _evaluate(config: MonitorConfig, history: Sequence[BatchRecord]) -> tuple[Alert, ...]:
    """Alerts of the rules on ``history`` (one model version; the batch concerned last)."""
    if not history:
        return ()
    html = None
    if config.report_dir is not None:
        from odin_monitor.monitoring.reports import report_paths  # Evidently: lazily

        html = str(report_paths(config.report_dir, history[-1].model, history[-1].batch_id)[0])
    return tuple(replace(a, report_path=html) for a in evaluate_rules(config.rules, history))


def _alert_rows(alerts: Sequence[Alert]) -> list[tuple[str, str, dict[str, object]]]:
    return [(a.alert_id, a.rule, a.to_dict()) for a in alerts]


def _resolving_notifiers(config: MonitorConfig) -> list[str]:
    """Notifiers that also take resolutions (``wants_resolutions``, e.g. Alertmanager's)."""
    return [n.name for n in config.notifiers if getattr(n, "wants_resolutions", False)]


def _resolution_rows(
    config: MonitorConfig, history: Sequence[BatchRecord]
) -> list[tuple[str, str, dict[str, object]]]:
    return _alert_rows(resolutions(config.rules, history))


def _history_up_to(log: ScoreLog, record: BatchRecord) -> list[BatchRecord]:
    return [
        r
        for r in log.history(record.model.name, record.model.version)
        if r.model.calibration_sha256 == record.model.calibration_sha256 and r.seq <= record.seq
    ]


def _report_model(model: ModelRef, record: BatchRecord) -> ModelRef:
    """The caller's model if it scored ``record`` (it knows T and K), else the stored one."""
    same = (model.name, model.version, model.calibration_sha256) == (
        record.model.name,
        record.model.version,
        record.model.calibration_sha256,
    )
    return model if same else record.model


def _missing_report_parts(
    config: MonitorConfig, batch_id: str, alerted: bool | None = None
) -> tuple[bool, bool]:
    """``(files missing, workspace snapshot missing)`` for a committed batch.

    The JSON is always expected; the HTML when the batch ``alerted`` (when not
    known: when the report row names one, i.e. it was written for an alert).
    """
    if config.report_dir is None and config.workspace_dir is None:
        return False, False
    row = config.log.get_report(batch_id) or {}

    def on_disk(key: str) -> bool:
        return bool(row.get(key)) and Path(row[key]).is_file()

    wants_html = bool(row.get("html_path")) if alerted is None else alerted
    files = config.report_dir is not None and not (
        on_disk("json_path") and (on_disk("html_path") or not wants_html)
    )
    snapshot = config.workspace_dir is not None and not row.get("snapshot_id")
    return files, snapshot


def _forget_unwanted_html(config: MonitorConfig, batch_id: str) -> None:
    """Drop a report row's HTML path whose file is gone, for a batch without alerts.

    (Earlier versions wrote an HTML page for every batch; deleting those pages to
    free disk space must not make the batch look incomplete.)
    """
    row = config.log.get_report(batch_id)
    if row and row.get("html_path") and not Path(row["html_path"]).is_file():
        config.log.record_report(
            batch_id,
            html_path=None,
            json_path=row.get("json_path"),
            project_id=row.get("project_id"),
            snapshot_id=row.get("snapshot_id"),
        )


def batch_is_complete(config: MonitorConfig, batch_id: str) -> bool:
    """Whether a batch is committed, its rules were checked and its report is on disk.

    Its report is the JSON (and the workspace snapshot) of every batch, plus the
    HTML page of a batch that raised an alert.

    A monitor can skip such a batch; any other known batch should go through
    :func:`revisit_batch` (after a crash between the commit and the report, say).

    Example:
        >>> # if not batch_is_complete(cfg, bid): revisit_batch(model, cfg, bid)
    """
    record = config.log.get_batch(batch_id)
    if record is None or not record.rules_checked:
        return False
    return not any(_missing_report_parts(config, batch_id))


def _write_report(
    config: MonitorConfig,
    model: ModelRef,
    record: BatchRecord,
    frame: pd.DataFrame,
    *,
    html: bool,
    files: bool = True,
    snapshot: bool = True,
    describe: bool = True,
) -> dict[str, str | None]:
    """Build the batch's report; save the files and/or add it to the workspace; record it.

    ``html``: also write the standalone HTML page (batches that raise an alert).
    ``describe``: ``model`` is the detector's own (update the project description).
    """
    from odin_monitor.monitoring.reports import (  # Evidently: lazily
        add_to_workspace,
        build_report,
        save_report,
    )

    log = config.log
    row = log.get_report(record.batch_id) or {}
    out: dict[str, str | None] = {
        k: row.get(k) for k in ("html_path", "json_path", "project_id", "snapshot_id")
    }
    report = build_report(
        frame,
        log.read_reference(model),
        model,
        alpha=config.report_alpha,
        batch_id=record.batch_id,
        timestamp=datetime.fromisoformat(record.created_at),
    )
    if files and config.report_dir is not None:
        h, j = save_report(report, config.report_dir, model, record.batch_id, html=html)
        out["html_path"], out["json_path"] = (None if h is None else str(h)), str(j)
    if snapshot and config.workspace_dir is not None:
        out["project_id"], out["snapshot_id"] = add_to_workspace(
            report, config.workspace_dir, model, describe=describe
        )
    log.record_report(
        record.batch_id,
        html_path=out["html_path"],
        json_path=out["json_path"],
        project_id=out["project_id"],
        snapshot_id=out["snapshot_id"],
    )
    return out


def _deliver(config: MonitorConfig) -> tuple[int, int, list[str]]:
    status = deliver_in_background(config.log, config.notifiers, budget=config.delivery_budget)
    errors = [f"{status.pending} alert deliveries pending in the outbox"] if status.pending else []
    return status.delivered, status.pending, errors


def revisit_batch(model: ModelRef, config: MonitorConfig, batch_id: str) -> BatchResult:
    """The result of a batch id already committed; repairs what a crash may have left.

    Nothing is scored again. The batch's alerts are evaluated again on the history up
    to it and stored if missing (alert ids are deterministic, the outbox ignores
    repeats), a missing report (the JSON, the workspace snapshot, and the HTML page
    when the batch raises alerts) is rebuilt from the stored scores and reference (a
    crash or full disk after the commit), and the outbox is drained.

    Args:
        model: The detector's metadata (used for the report when it scored the batch).
        config: Storage, rules and notifiers.
        batch_id: A committed batch id.

    Raises:
        ScoreLogError: ``batch_id`` is not in the log.

    Example:
        >>> # result = revisit_batch(model, cfg, "daily-2026-11-03")
    """
    log = config.log
    record = log.get_batch(batch_id)
    if record is None:
        raise ConfigError(
            f"Expected a committed batch id but got unknown {batch_id!r}; "
            "process the batch with process_batch first."
        )
    history = _history_up_to(log, record)
    alerts = _evaluate(config, history)
    log.store_alerts_of(batch_id, _alert_rows(alerts), [n.name for n in config.notifiers])
    if _resolving_notifiers(config):
        log.enqueue_alerts(_resolution_rows(config, history), _resolving_notifiers(config))
    errors: list[str] = []
    rebuilt = False
    if not alerts:
        _forget_unwanted_html(config, batch_id)
    files, snapshot = _missing_report_parts(config, batch_id, alerted=bool(alerts))
    if files or snapshot:
        report_model = _report_model(model, record)
        try:
            _write_report(
                config,
                report_model,
                record,
                log.read_scores(batch_id),
                html=bool(alerts),
                files=files,
                snapshot=snapshot,
                describe=report_model is model,
            )
            rebuilt = True
            logger.info("rebuilt the missing report of batch %s", batch_id)
        except Exception as exc:  # the committed batch stands; the report waits
            logger.exception("rebuilding the report of batch %s failed", batch_id)
            errors.append(f"report: {type(exc).__name__}: {exc}")
    delivered, pending, delivery_errors = _deliver(config)
    report = log.get_report(batch_id) or {}
    return BatchResult(
        batch_id,
        log.get_batch(batch_id),
        duplicate=True,
        alerts=alerts,
        html_path=report.get("html_path"),
        json_path=report.get("json_path"),
        project_id=report.get("project_id"),
        snapshot_id=report.get("snapshot_id"),
        errors=tuple(errors + delivery_errors),
        delivered=delivered,
        undelivered=pending,
        report_rebuilt=rebuilt,
    )


def process_batch(
    model: ModelRef,
    config: MonitorConfig,
    *,
    images: np.ndarray | str | Path | None = None,
    scores: pd.DataFrame | str | Path | None = None,
    scorer: Scorer | None = None,
    batch_id: str | None = None,
    reference: pd.DataFrame | None = None,
    created_at: str | None = None,
    source: str | Path | None = None,
    read_images: ImageReader | None = None,
) -> BatchResult:
    """Run one monitoring step for a batch of images or of precomputed scores.

    Args:
        model: The detector's metadata.
        config: Storage, rules and notifiers.
        images: float32 (N, C, H, W) in [0, 1], or a ``.npy``/``.npz`` path.
        scores: Scored DataFrame or a CSV/Parquet serving log (no model run).
        scorer: ``images -> scores`` callable (required with ``images``).
        batch_id: Idempotency key; default: sha256 of the content/file. Sending a
            known id again with the same content returns the stored result
            (``duplicate=True``, alerts raised again, a missing report rebuilt).
        reference: In-distribution validation scores; stored once per model
            version, then read back from the log.
        created_at: ISO-8601 batch timestamp (default: now).
        source: The file or folder in-memory ``images``/``scores`` were read from;
            moved to ``quarantine_dir`` (and recorded) if the batch is invalid.
        read_images: Reads an ``images`` path, file or folder (default: ``.npy``/``.npz``
            of float (N, C, H, W), :func:`~.ingest.read_image_file`); whatever it
            cannot read (a ``ValueError``) quarantines the batch.

    Returns:
        A :class:`BatchResult`; ``result.exit_code`` is the cron exit code.

    Raises:
        ConfigError: On misuse (both/neither input, no scorer, no reference stored).
        BatchIdConflictError: ``batch_id`` is already logged with different content.
        BatchVanishedError: An ``images`` path left before it was read.

    Example:
        >>> # result = process_batch(model, cfg, scores="serving-2024-06-01.parquet")
    """
    log = config.log
    if reference is not None:
        log.write_reference(model, reference)
    batch = resolve_input(model, images, scores, scorer, batch_id, source, read_images)
    bid = batch.batch_id

    existing = log.get_batch(bid)
    if existing is not None and batch.id_from_content:
        return revisit_batch(model, config, bid)
    try:
        content, compute = batch.read()
        if existing is not None:
            check_same_content(existing, content)
            return revisit_batch(model, config, bid)
        frame = compute()
    except InvalidBatchError as exc:
        return quarantine_batch(model, config, bid, str(exc), batch.source)

    raised: list[Alert] = []

    def alerts_for(history: list[BatchRecord]) -> list[tuple[str, str, dict[str, object]]]:
        raised[:] = _evaluate(config, history)
        return _alert_rows(raised)

    # The alerts are decided and stored in the batch's own transaction: a crash can
    # never leave the batch committed without them.
    record, created = log.write_batch(
        bid,
        model,
        frame,
        created_at=created_at,
        source="scorer" if images is not None else f"ingest:{batch.source or 'frame'}",
        content_sha256=content,
        alerts_for=alerts_for,
        notifiers=[n.name for n in config.notifiers],
        resolutions_for=lambda history: _resolution_rows(config, history),
        resolution_notifiers=_resolving_notifiers(config),
    )
    if not created:  # another process committed this batch id meanwhile
        return revisit_batch(model, config, bid)
    alerts = tuple(raised)

    errors: list[str] = []
    paths: dict[str, str | None] = {}
    if config.report_dir is not None or config.workspace_dir is not None:
        try:
            paths = _write_report(config, model, record, frame, html=bool(alerts))
        except Exception as exc:  # the committed batch must survive a report failure
            logger.exception("report for batch %s failed", bid)
            errors.append(f"report: {type(exc).__name__}: {exc}")

    for notifier in config.notifiers:
        try:
            notifier.record_batch(record)
        except Exception as exc:
            logger.warning("notifier %s could not record batch %s: %s", notifier.name, bid, exc)
            errors.append(f"{notifier.name}: {type(exc).__name__}: {exc}")
    delivered, pending, delivery_errors = _deliver(config)
    return BatchResult(
        bid,
        record,
        alerts=alerts,
        html_path=paths.get("html_path"),
        json_path=paths.get("json_path"),
        project_id=paths.get("project_id"),
        snapshot_id=paths.get("snapshot_id"),
        errors=tuple(errors + delivery_errors),
        delivered=delivered,
        undelivered=pending,
    )


def quarantine_batch(
    model: ModelRef, config: MonitorConfig, bid: str, reason: str, source: Path | None
) -> BatchResult:
    """Record an unreadable batch; move its file or folder into quarantine first.

    The quarantine row carries both the original path and where the batch went.

    Example:
        >>> # quarantine_batch(model, cfg, "sha256-…", "Expected finite pixels…", Path("in/b.npy"))
    """
    moved = None
    if source is not None and source.exists():
        try:
            moved = str(move_to_quarantine(source, config.quarantine_dir, bid))
        except FileNotFoundError:  # moved away meanwhile (another monitor): nothing to keep
            moved = None
    config.log.quarantine(
        bid,
        reason,
        model=model,
        source_path=None if source is None else str(source),
        quarantined_path=moved,
    )
    logger.warning("batch %s quarantined: %s", bid, reason)
    delivered, pending, _ = _deliver(config)
    return BatchResult(bid, quarantine_reason=reason, delivered=delivered, undelivered=pending)
