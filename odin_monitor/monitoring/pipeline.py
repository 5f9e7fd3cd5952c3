"""One monitoring step: score or ingest → commit → report → alert rules → notifiers.

The batch is committed to the score log before anything else happens, so report,
workspace or notifier failures never lose it; they are collected in
:attr:`BatchResult.errors` (exit code 5) and alerts wait in the outbox.

Example:
    >>> # cfg = MonitorConfig(log=ScoreLog("mon/scores.db"), quarantine_dir="mon/quarantine",
    >>> #                     report_dir="mon/reports", workspace_dir="mon/workspace")
    >>> # result = process_batch(model, cfg, images=batch, scorer=detector.score)
    >>> # sys.exit(result.exit_code)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from odin_monitor.monitoring.alerts import Alert, BinomialSpikeRule, CusumRule, Rule, evaluate_rules
from odin_monitor.monitoring.errors import ConfigError, InvalidBatchError
from odin_monitor.monitoring.ingest import (
    IMAGE_SUFFIXES,
    complete_scores,
    content_id,
    file_id,
    move_to_quarantine,
    read_image_file,
    read_score_file,
)
from odin_monitor.monitoring.notifiers import LogNotifier, Notifier, deliver_pending, exit_code
from odin_monitor.monitoring.schema import ModelRef, validate_images, validate_scores
from odin_monitor.monitoring.scorelog import BatchRecord, ScoreLog

logger = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], pd.DataFrame]


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
        report_dir: HTML/JSON reports per batch (None: no report files).
        workspace_dir: Local Evidently workspace (None: no snapshots).
        rules: Alert rules (default: binomial spike at α=0.01 and CUSUM h=5).
        notifiers: Alert notifiers (default: log line).
        report_alpha: α of the binomial test shown in the Evidently report.
    """

    log: ScoreLog
    quarantine_dir: str | Path
    report_dir: str | Path | None = None
    workspace_dir: str | Path | None = None
    rules: Sequence[Rule] = field(default_factory=_default_rules)
    notifiers: Sequence[Notifier] = field(default_factory=_default_notifiers)
    report_alpha: float = 0.01


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`process_batch`.

    Attributes:
        batch_id: The batch id (given or content-derived).
        record: Committed record (None if quarantined).
        duplicate: True when the id was already committed (nothing recomputed).
        quarantine_reason: Why the batch was quarantined (None otherwise).
        alerts: Alerts fired by this batch.
        html_path: Report HTML, if written.
        json_path: Report snapshot JSON, if written.
        project_id: Evidently project, if the snapshot was added.
        snapshot_id: Evidently snapshot id, if added.
        errors: Non-fatal failures after the commit (report, notifiers).
        delivered: Outbox rows delivered during this call.
        undelivered: Outbox rows that failed during this call (kept pending).
    """

    batch_id: str
    record: BatchRecord | None = None
    duplicate: bool = False
    quarantine_reason: str | None = None
    alerts: tuple[Alert, ...] = ()
    html_path: str | None = None
    json_path: str | None = None
    project_id: str | None = None
    snapshot_id: str | None = None
    errors: tuple[str, ...] = ()
    delivered: int = 0
    undelivered: int = 0

    @property
    def quarantined(self) -> bool:
        """Whether the batch was quarantined."""
        return self.quarantine_reason is not None

    @property
    def exit_code(self) -> int:
        """Cron exit code, see :mod:`odin_monitor.monitoring.notifiers`."""
        return exit_code(self)


def _load(
    model: ModelRef,
    images: np.ndarray | str | Path | None,
    scores: pd.DataFrame | str | Path | None,
    scorer: Scorer | None,
    batch_id: str | None,
) -> tuple[str, Callable[[], pd.DataFrame], Path | None]:
    """Resolve the input to ``(batch_id, compute_scores, source_file)``."""
    if (images is None) == (scores is None):
        raise ConfigError(
            "Expected exactly one of images= or scores= but got "
            f"{'both' if images is not None else 'neither'}."
        )
    if images is not None and scorer is None:
        raise ConfigError("Expected a scorer callable when images= is given but got None.")
    data = images if images is not None else scores
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise ConfigError(f"Expected an existing batch file but got {str(path)!r}.")
        bid = batch_id or file_id(path)
        if images is not None or path.suffix.lower() in IMAGE_SUFFIXES:
            if scorer is None:
                raise ConfigError(f"Expected a scorer to score image file {path.name!r}.")
            return bid, lambda: _score(scorer, read_image_file(path)), path
        return bid, lambda: read_score_file(path, model), path
    if images is not None:
        arr = images
        bid = batch_id or (content_id(arr) if isinstance(arr, np.ndarray) else "invalid-input")
        score_fn: Scorer = scorer  # type: ignore[assignment]  # checked above
        return bid, lambda: _score(score_fn, validate_images(arr)), None
    frame = scores
    bid = batch_id or (content_id(frame) if isinstance(frame, pd.DataFrame) else "invalid-input")
    return bid, lambda: complete_scores(frame, model), None


def _score(scorer: Scorer, images: np.ndarray) -> pd.DataFrame:
    try:
        out = scorer(images)
    except InvalidBatchError:
        raise
    except ValueError as exc:
        # Bad input (the library's validation errors are ValueErrors). Anything else
        # (out of memory, a bug) propagates: a good batch must not be quarantined.
        raise InvalidBatchError(
            f"Expected the scorer to accept the batch but it raised {exc!r}."
        ) from exc
    out = validate_scores(out)
    if len(out) != len(images):
        raise InvalidBatchError(
            f"Expected one score row per image ({len(images)}) but the scorer returned {len(out)}."
        )
    return out


def _raise_alerts(
    log: ScoreLog, model: ModelRef, config: MonitorConfig, record: BatchRecord
) -> tuple[Alert, ...]:
    """Evaluate the rules on the history up to ``record`` and store the alerts in the outbox."""
    history = [
        r
        for r in log.history(model.name, model.version)
        if r.model.calibration_sha256 == model.calibration_sha256 and r.seq <= record.seq
    ]
    html = None
    if config.report_dir is not None:
        from odin_monitor.monitoring.reports import report_paths

        html = str(report_paths(config.report_dir, model, record.batch_id)[0])
    alerts = tuple(replace(a, report_path=html) for a in evaluate_rules(config.rules, history))
    if alerts:
        log.enqueue_alerts(
            ((a.alert_id, a.rule, a.to_dict()) for a in alerts), [n.name for n in config.notifiers]
        )
    return alerts


def _already_logged(
    log: ScoreLog, model: ModelRef, config: MonitorConfig, existing: BatchRecord
) -> BatchResult:
    """The result for a batch id already committed: nothing is recomputed.

    Its alerts are raised again, because a crash after the commit must not lose them
    (alert ids are deterministic and the outbox ignores repeats).
    """
    alerts = _raise_alerts(log, model, config, existing)
    delivered, failed = deliver_pending(log, config.notifiers)
    report = log.get_report(existing.batch_id) or {}
    return BatchResult(
        existing.batch_id,
        existing,
        duplicate=True,
        alerts=alerts,
        html_path=report.get("html_path"),
        json_path=report.get("json_path"),
        project_id=report.get("project_id"),
        snapshot_id=report.get("snapshot_id"),
        errors=(f"{failed} alert deliveries pending in the outbox",) if failed else (),
        delivered=delivered,
        undelivered=failed,
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
) -> BatchResult:
    """Run one monitoring step for a batch of images or of precomputed scores.

    Args:
        model: The detector's metadata.
        config: Storage, rules and notifiers.
        images: float32 (N, C, H, W) in [0, 1], or a ``.npy``/``.npz`` path.
        scores: Scored DataFrame or a CSV/Parquet serving log (no model run).
        scorer: ``images -> scores`` callable (required with ``images``).
        batch_id: Idempotency key; default: sha256 of the content/file.
        reference: In-distribution validation scores; stored once per model
            version, then read back from the log.
        created_at: ISO-8601 batch timestamp (default: now).

    Returns:
        A :class:`BatchResult`; ``result.exit_code`` is the cron exit code.

    Raises:
        ConfigError: On misuse (both/neither input, no scorer, no reference stored).

    Example:
        >>> # result = process_batch(model, cfg, scores="serving-2024-06-01.parquet")
    """
    log = config.log
    if reference is not None:
        log.write_reference(model, reference)
    bid, compute, source = _load(model, images, scores, scorer, batch_id)

    existing = log.get_batch(bid)
    if existing is not None:
        return _already_logged(log, model, config, existing)
    try:
        frame = compute()
    except InvalidBatchError as exc:
        reason = str(exc)
        moved = None
        if source is not None and source.exists():
            moved = str(move_to_quarantine(source, config.quarantine_dir, bid))
        log.quarantine(
            bid,
            reason,
            model=model,
            source_path=None if source is None else str(source),
            quarantined_path=moved,
        )
        logger.warning("batch %s quarantined: %s", bid, reason)
        delivered, failed = deliver_pending(log, config.notifiers)
        return BatchResult(bid, quarantine_reason=reason, delivered=delivered, undelivered=failed)

    record, created = log.write_batch(
        bid,
        model,
        frame,
        created_at=created_at,
        source="scorer" if images is not None else f"ingest:{source or 'frame'}",
    )
    if not created:  # another process committed this batch id meanwhile
        return _already_logged(log, model, config, record)
    # Alerts are decided and stored right after the commit, before the slow report, so a
    # crash from here on loses none of them.
    alerts = _raise_alerts(log, model, config, record)

    errors: list[str] = []
    html = json_path = project_id = snapshot_id = None
    if config.report_dir is not None or config.workspace_dir is not None:
        try:
            from odin_monitor.monitoring import reports

            snapshot = reports.build_report(
                frame,
                log.read_reference(model),
                model,
                alpha=config.report_alpha,
                batch_id=bid,
                timestamp=datetime.fromisoformat(record.created_at),
            )
            if config.report_dir is not None:
                h, j = reports.save_report(snapshot, config.report_dir, model, bid)
                html, json_path = str(h), str(j)
            if config.workspace_dir is not None:
                project_id, snapshot_id = reports.add_to_workspace(
                    snapshot, config.workspace_dir, model
                )
            log.record_report(
                bid,
                html_path=html,
                json_path=json_path,
                project_id=project_id,
                snapshot_id=snapshot_id,
            )
        except Exception as exc:  # the committed batch must survive a report failure
            logger.exception("report for batch %s failed", bid)
            errors.append(f"report: {type(exc).__name__}: {exc}")

    for notifier in config.notifiers:
        try:
            notifier.record_batch(record)
        except Exception as exc:
            logger.warning("notifier %s could not record batch %s: %s", notifier.name, bid, exc)
            errors.append(f"{notifier.name}: {type(exc).__name__}: {exc}")
    delivered, failed = deliver_pending(log, config.notifiers)
    if failed:
        errors.append(f"{failed} alert deliveries pending in the outbox")
    return BatchResult(
        bid,
        record,
        alerts=alerts,
        html_path=html,
        json_path=json_path,
        project_id=project_id,
        snapshot_id=snapshot_id,
        errors=tuple(errors),
        delivered=delivered,
        undelivered=failed,
    )
