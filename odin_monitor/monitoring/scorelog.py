"""Durable, server-less score log (SQLite in WAL mode).

Every scored batch is written in **one transaction** (batch row + one row per
image + the alerts its rules raise, with their outbox rows) before any report is
built, so a crash mid-batch leaves no partial batch, never loses a committed one,
and never leaves a committed batch without its alerts. Writing a batch id twice
with the same content is idempotent (the existing record is returned, nothing is
duplicated); a known id with different content raises :class:`BatchIdConflictError`.

Tables: ``batches`` (with the content hash of each batch), ``scores``,
``reference_sets``, ``reference_scores``, ``quarantine``, ``reports``, ``alerts``
and ``outbox`` (alerts awaiting delivery per notifier, with a per-row retry time
and a short claim so two drains never send the same row at once). Score logs
written by older versions are migrated in place (nullable columns added).

Example:
    >>> import tempfile, os
    >>> log = ScoreLog(os.path.join(tempfile.mkdtemp(), "scores.db"))
    >>> log.batch_ids()
    []
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from odin_monitor.monitoring.batches import (
    BatchRecord,
    check_same_content,
    scores_sha256,
    utcnow,
)
from odin_monitor.monitoring.errors import ScoreLogError
from odin_monitor.monitoring.outbox import AlertRows, OutboxStore, insert_alerts
from odin_monitor.monitoring.schema import ModelRef, validate_scores
from odin_monitor.monitoring.scorelog_db import (
    BATCH_COLUMNS,
    batch_record,
    model_history,
    score_frame,
    score_rows,
)

__all__ = ["AlertRows", "BatchRecord", "ScoreLog"]


class ScoreLog(OutboxStore):
    """SQLite score log; each method opens its own short-lived connection.

    Batches, reference scores, quarantine and report rows here; stored alerts and
    their outbox in :class:`~.outbox.OutboxStore`; tables, migrations and
    connections in :class:`~.scorelog_db.Database`.

    Args:
        path: Database file (created with its parent folder if missing).
        timeout: Seconds to wait for a lock held by another writer.

    Example:
        >>> import tempfile, os
        >>> log = ScoreLog(os.path.join(tempfile.mkdtemp(), "s.db"))
        >>> log.pending_deliveries()
        []
    """

    # ------------------------------------------------------------------ batches
    def write_batch(
        self,
        batch_id: str,
        model: ModelRef,
        scores: pd.DataFrame,
        *,
        source: str = "scorer",
        created_at: str | None = None,
        content_sha256: str | None = None,
        alerts_for: Callable[[list[BatchRecord]], AlertRows] | None = None,
        notifiers: Sequence[str] = (),
        resolutions_for: Callable[[list[BatchRecord]], AlertRows] | None = None,
        resolution_notifiers: Sequence[str] = (),
    ) -> tuple[BatchRecord, bool]:
        """Write a scored batch atomically, with its alerts; idempotent on ``batch_id``.

        Args:
            batch_id: Idempotency key, unique in the log.
            model: The detector that scored the batch.
            scores: One row per image (:data:`odin_monitor.columns.SCORE_COLUMNS`).
            source: ``"scorer"`` or ``"ingest:<path>"``.
            created_at: ISO-8601 timestamp (default: now).
            content_sha256: Hash of the batch's content, compared when the id is sent
                again (default: :func:`scores_sha256` of ``scores``).
            alerts_for: Called inside the commit's transaction with the history of
                ``model`` (same name, version and calibration; the new batch last);
                the alerts it returns are stored, with one pending outbox row per name
                in ``notifiers``, in the same transaction as the batch: a crash can
                never leave the batch committed without its alerts.
            notifiers: Outbox keys for the alerts of ``alerts_for``.
            resolutions_for: Like ``alerts_for``, for resolutions
                (:func:`~.alerts.resolutions`), stored in the same transaction.
            resolution_notifiers: Outbox keys for them (notifiers that resolve alerts).

        Returns:
            ``(record, created)``; ``created`` is False when the id already existed
            with the same content (the stored record is returned, nothing is written).

        Raises:
            BatchIdConflictError: The id is known with a different content hash.

        Example:
            >>> # rec, created = log.write_batch("b1", model, scores)
        """
        if not isinstance(batch_id, str) or not batch_id:
            raise ScoreLogError(f"Expected a non-empty string batch_id but got {batch_id!r}.")
        scores = validate_scores(scores)
        content = content_sha256 or scores_sha256(scores)
        existing = self.get_batch(batch_id)
        if existing is not None:
            check_same_content(existing, content)
            return existing, False
        created_at = created_at or utcnow()
        n_ood = int(scores["is_ood"].sum())
        with self._transaction() as con:
            row = con.execute(
                f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if row is not None:  # another process committed it meanwhile
                check_same_content(batch_record(row), content)
            else:
                con.execute(
                    "INSERT INTO batches (batch_id, created_at, model_name, model_version, "
                    "calibration_sha256, threshold, threshold_spread, tpr_target, n_images, "
                    "n_ood, source, content_sha256, rules_checked_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        batch_id,
                        created_at,
                        model.name,
                        model.version,
                        model.calibration_sha256,
                        float(model.threshold),
                        float(model.threshold_spread),
                        float(model.tpr_target),
                        len(scores),
                        n_ood,
                        source,
                        content,
                        None if alerts_for is None else utcnow(),
                    ),
                )
                con.executemany(
                    "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                    score_rows((batch_id,), scores),
                )
                if alerts_for is not None or resolutions_for is not None:
                    history = model_history(con, model)
                if alerts_for is not None:
                    insert_alerts(con, alerts_for(history), notifiers)
                if resolutions_for is not None and resolution_notifiers:
                    insert_alerts(con, resolutions_for(history), resolution_notifiers)
        record = self.get_batch(batch_id)
        if record is None:  # pragma: no cover - would mean the commit was lost
            raise ScoreLogError(f"Batch {batch_id!r} was committed but cannot be read back.")
        return record, row is None

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """Return the stored record of ``batch_id``, or None."""
        with self._connect() as con:
            row = con.execute(
                f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        return None if row is None else batch_record(row)

    def store_alerts_of(self, batch_id: str, alerts: AlertRows, notifiers: Iterable[str]) -> None:
        """Store alerts re-evaluated for a committed batch and mark its rules checked.

        For batches committed without their alerts (by an older version, or through
        :meth:`write_batch` without ``alerts_for``). Idempotent: stored alerts and
        outbox rows are left as they are.
        """
        with self._transaction() as con:
            insert_alerts(con, alerts, list(notifiers))
            con.execute(
                "UPDATE batches SET rules_checked_at = ? WHERE batch_id = ?"
                " AND rules_checked_at IS NULL",
                (utcnow(), batch_id),
            )

    def batch_ids(self) -> list[str]:
        """All committed batch ids in commit order."""
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT batch_id FROM batches ORDER BY seq")]

    def history(self, model_name: str, model_version: str | None = None) -> list[BatchRecord]:
        """Committed batches of a model (optionally one version) in commit order."""
        sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE model_name = ?"
        args: tuple[Any, ...] = (model_name,)
        if model_version is not None:
            sql += " AND model_version = ?"
            args += (model_version,)
        with self._connect() as con:
            return [batch_record(r) for r in con.execute(sql + " ORDER BY seq", args)]

    def read_scores(self, batch_id: str) -> pd.DataFrame:
        """The per-image scores of a committed batch (canonical columns/dtypes)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT odin_score, spread_score, msp, predicted_class, is_ood FROM scores"
                " WHERE batch_id = ? ORDER BY idx",
                (batch_id,),
            ).fetchall()
        if not rows:
            raise ScoreLogError(f"Expected a committed batch id but got unknown {batch_id!r}.")
        return score_frame(rows)

    # ---------------------------------------------------------------- reference
    def write_reference(self, model: ModelRef, scores: pd.DataFrame) -> bool:
        """Store the in-distribution reference scores of a model version (once).

        Returns:
            True if written, False if a reference for this model version and
            calibration hash already existed (it is kept unchanged).
        """
        scores = validate_scores(scores)
        key = (model.name, model.version, model.calibration_sha256)
        with self._transaction() as con:
            exists = con.execute(
                "SELECT 1 FROM reference_sets WHERE model_name = ? AND model_version = ?"
                " AND calibration_sha256 = ?",
                key,
            ).fetchone()
            if exists:
                return False
            con.execute(
                "INSERT INTO reference_sets VALUES (?, ?, ?, ?, ?)", (*key, utcnow(), len(scores))
            )
            con.executemany(
                "INSERT INTO reference_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                score_rows(key, scores),
            )
        return True

    def read_reference(self, model: ModelRef) -> pd.DataFrame:
        """The stored reference of ``model`` (name, version, calibration hash)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT odin_score, spread_score, msp, predicted_class, is_ood"
                " FROM reference_scores WHERE model_name = ? AND model_version = ?"
                " AND calibration_sha256 = ? ORDER BY idx",
                (model.name, model.version, model.calibration_sha256),
            ).fetchall()
        if not rows:
            raise ScoreLogError(
                f"Expected a stored reference for {model.name} v{model.version} "
                f"(calibration {model.calibration_sha256[:12]}) but got none; "
                "call ScoreLog.write_reference(model, validation_scores) first."
            )
        return score_frame(rows)

    # --------------------------------------------------------------- quarantine
    def quarantine(
        self,
        batch_id: str,
        reason: str,
        *,
        model: ModelRef | None = None,
        source_path: str | None = None,
        quarantined_path: str | None = None,
    ) -> int:
        """Record an unreadable batch with its reason; returns the quarantine row id."""
        with self._transaction() as con:
            cur = con.execute(
                "INSERT INTO quarantine (batch_id, created_at, model_name, model_version, reason,"
                " source_path, quarantined_path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    utcnow(),
                    model.name if model else None,
                    model.version if model else None,
                    reason,
                    source_path,
                    quarantined_path,
                ),
            )
            return int(cur.lastrowid or 0)

    def quarantined(self) -> list[dict[str, Any]]:
        """All quarantine rows as dicts, oldest first."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM quarantine ORDER BY id")]

    # ------------------------------------------------------------------ reports
    def record_report(
        self,
        batch_id: str,
        *,
        html_path: str | None,
        json_path: str | None,
        project_id: str | None = None,
        snapshot_id: str | None = None,
    ) -> None:
        """Remember where the report of a batch was written (upsert)."""
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, utcnow(), html_path, json_path, project_id, snapshot_id),
            )

    def get_report(self, batch_id: str) -> dict[str, Any] | None:
        """The report row of a batch, or None."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM reports WHERE batch_id = ?", (batch_id,)).fetchone()
        return None if row is None else dict(row)
