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

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odin_monitor.columns import SCORE_COLUMNS, SCORE_DTYPES
from odin_monitor.monitoring.errors import BatchIdConflictError, ScoreLogError
from odin_monitor.monitoring.schema import ModelRef, validate_scores

AlertRows = Iterable[tuple[str, str, dict[str, Any]]]
"""Alerts as stored: ``(alert_id, rule, payload)``."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    calibration_sha256 TEXT NOT NULL,
    threshold REAL NOT NULL,
    threshold_spread REAL NOT NULL,
    tpr_target REAL NOT NULL,
    n_images INTEGER NOT NULL,
    n_ood INTEGER NOT NULL,
    source TEXT NOT NULL,
    content_sha256 TEXT,
    rules_checked_at TEXT
);
CREATE INDEX IF NOT EXISTS batches_model ON batches (model_name, model_version, seq);
CREATE TABLE IF NOT EXISTS scores (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id),
    idx INTEGER NOT NULL,
    odin_score REAL NOT NULL,
    spread_score REAL,
    msp REAL,
    predicted_class INTEGER NOT NULL,
    is_ood INTEGER NOT NULL,
    PRIMARY KEY (batch_id, idx)
);
CREATE TABLE IF NOT EXISTS reference_sets (
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    calibration_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    n_images INTEGER NOT NULL,
    PRIMARY KEY (model_name, model_version, calibration_sha256)
);
CREATE TABLE IF NOT EXISTS reference_scores (
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    calibration_sha256 TEXT NOT NULL,
    idx INTEGER NOT NULL,
    odin_score REAL NOT NULL,
    spread_score REAL,
    msp REAL,
    predicted_class INTEGER NOT NULL,
    is_ood INTEGER NOT NULL,
    PRIMARY KEY (model_name, model_version, calibration_sha256, idx)
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    model_name TEXT,
    model_version TEXT,
    reason TEXT NOT NULL,
    source_path TEXT,
    quarantined_path TEXT
);
CREATE TABLE IF NOT EXISTS reports (
    batch_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    html_path TEXT,
    json_path TEXT,
    project_id TEXT,
    snapshot_id TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    rule TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id),
    notifier TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    next_attempt_at REAL,
    claimed_until REAL,
    PRIMARY KEY (alert_id, notifier)
);
"""

# Columns added after the first release: (table, column, SQL type). Nullable, so old
# rows stay valid (NULL content hash: not comparable; NULL rules_checked_at: the rules
# are evaluated again on the next visit; NULL retry/claim times: due now).
_MIGRATIONS = (
    ("batches", "content_sha256", "TEXT"),
    ("batches", "rules_checked_at", "TEXT"),
    ("outbox", "next_attempt_at", "REAL"),
    ("outbox", "claimed_until", "REAL"),
)

_BATCH_COLUMNS = (
    "seq, batch_id, created_at, model_name, model_version, calibration_sha256,"
    " threshold, threshold_spread, tpr_target, n_images, n_ood, source, content_sha256,"
    " rules_checked_at"
)


def utcnow() -> str:
    """Current UTC time as an ISO-8601 string (the log's timestamp format)."""
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class BatchRecord:
    """A committed batch, as stored in the ``batches`` table.

    Attributes:
        seq: Monotone sequence number (insertion order; the MLflow step).
        batch_id: Caller- or content-derived id, unique in the log.
        created_at: ISO-8601 UTC timestamp of the commit.
        model: The detector that scored it.
        n_images: Batch size.
        n_ood: Number of images flagged OOD.
        source: ``"scorer"`` or ``"ingest:<path>"``.
        content_sha256: Hash of the batch's content (None for batches logged by
            versions before 0.2, which stored none).
        rules_checked: Whether the alert rules were evaluated on this batch and their
            alerts stored (always true for batches committed with their alerts).
    """

    seq: int
    batch_id: str
    created_at: str
    model: ModelRef
    n_images: int
    n_ood: int
    source: str
    content_sha256: str | None = None
    rules_checked: bool = False

    @property
    def ood_rate(self) -> float:
        """Share of the batch flagged OOD."""
        return self.n_ood / self.n_images


def _score_rows(key: tuple[Any, ...], scores: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Yield one insert tuple per image, prefixed by ``key``."""
    cols = [scores[c].tolist() for c in SCORE_COLUMNS]
    for i, (odin, spread, msp, cls, ood) in enumerate(zip(*cols, strict=True)):
        yield (
            *key,
            i,
            float(odin),
            None if pd.isna(spread) else float(spread),
            None if pd.isna(msp) else float(msp),
            int(cls),
            int(bool(ood)),
        )


def scores_sha256(scores: pd.DataFrame) -> str:
    """Hash of a validated score frame (canonical columns, dtypes and values).

    Example:
        >>> frame = pd.DataFrame({"odin_score": [0.2], "spread_score": [1.0], "msp": [0.9],
        ...                       "predicted_class": [3], "is_ood": [False]})
        >>> scores_sha256(frame) == scores_sha256(frame.copy())
        True
    """
    h = hashlib.sha256(b"odin-scores-v1")
    frame = validate_scores(scores)
    for col in SCORE_COLUMNS:
        values = np.ascontiguousarray(frame[col].to_numpy())
        h.update(f"{col}:{values.dtype}:{values.shape}".encode())
        h.update(values.tobytes())
    return h.hexdigest()


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS)).astype(SCORE_DTYPES)


class ScoreLog:
    """SQLite score log; each method opens its own short-lived connection.

    Args:
        path: Database file (created with its parent folder if missing).
        timeout: Seconds to wait for a lock held by another writer.

    Example:
        >>> import tempfile, os
        >>> log = ScoreLog(os.path.join(tempfile.mkdtemp(), "s.db"))
        >>> log.pending_deliveries()
        []
    """

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            self._migrate(con)

    @staticmethod
    def _migrate(con: sqlite3.Connection) -> None:
        """Add the columns newer versions need to a score log written by an older one."""

        def missing() -> list[tuple[str, str, str]]:
            have = {
                (table, row[1])
                for table in {t for t, _, _ in _MIGRATIONS}
                for row in con.execute(f"PRAGMA table_info({table})")
            }
            return [m for m in _MIGRATIONS if (m[0], m[1]) not in have]

        if not missing():
            return
        con.execute("BEGIN IMMEDIATE")  # another process may be migrating too
        try:
            for table, column, sql_type in missing():
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

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
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if row is not None:  # another process committed it meanwhile
                check_same_content(_record(row), content)
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
                    _score_rows((batch_id,), scores),
                )
                if alerts_for is not None:
                    history = _model_history(con, model)
                    _insert_alerts(con, alerts_for(history), notifiers)
        record = self.get_batch(batch_id)
        if record is None:  # pragma: no cover - would mean the commit was lost
            raise ScoreLogError(f"Batch {batch_id!r} was committed but cannot be read back.")
        return record, row is None

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """Return the stored record of ``batch_id``, or None."""
        with self._connect() as con:
            row = con.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        return None if row is None else _record(row)

    def store_alerts_of(self, batch_id: str, alerts: AlertRows, notifiers: Iterable[str]) -> None:
        """Store alerts re-evaluated for a committed batch and mark its rules checked.

        For batches committed without their alerts (by an older version, or through
        :meth:`write_batch` without ``alerts_for``). Idempotent: stored alerts and
        outbox rows are left as they are.
        """
        with self._transaction() as con:
            _insert_alerts(con, alerts, list(notifiers))
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
        sql = f"SELECT {_BATCH_COLUMNS} FROM batches WHERE model_name = ?"
        args: tuple[Any, ...] = (model_name,)
        if model_version is not None:
            sql += " AND model_version = ?"
            args += (model_version,)
        with self._connect() as con:
            return [_record(r) for r in con.execute(sql + " ORDER BY seq", args)]

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
        return _frame(rows)

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
                _score_rows(key, scores),
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
        return _frame(rows)

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

    # ------------------------------------------------------------ alerts/outbox
    def enqueue_alerts(self, alerts: AlertRows, notifiers: Iterable[str]) -> None:
        """Persist alerts ``(alert_id, rule, payload)`` and one pending row per notifier.

        Idempotent: an alert id already stored is left as is.
        """
        with self._transaction() as con:
            _insert_alerts(con, alerts, list(notifiers))

    def alert_payloads(self) -> list[dict[str, Any]]:
        """Every stored alert payload, oldest first."""
        with self._connect() as con:
            return [
                json.loads(r[0])
                for r in con.execute("SELECT payload FROM alerts ORDER BY created_at, alert_id")
            ]

    def pending_deliveries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Undelivered ``(alert_id, notifier, payload)``, oldest first (due or not)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT o.alert_id, o.notifier, a.payload FROM outbox o JOIN alerts a"
                " ON a.alert_id = o.alert_id WHERE o.status = 'pending'"
                " ORDER BY a.created_at, o.alert_id, o.notifier"
            ).fetchall()
        return [(a, n, json.loads(p)) for a, n, p in rows]

    def due_deliveries(
        self, notifiers: Iterable[str], now: float | None = None
    ) -> list[tuple[str, str, int, dict[str, Any]]]:
        """Pending rows of ``notifiers`` whose retry time has come and that nobody holds.

        Returns:
            ``(alert_id, notifier, attempts, payload)``, oldest first.
        """
        names = list(notifiers)
        if not names:
            return []
        now = time.time() if now is None else now
        marks = ", ".join("?" * len(names))
        with self._connect() as con:
            rows = con.execute(
                "SELECT o.alert_id, o.notifier, o.attempts, a.payload FROM outbox o"
                " JOIN alerts a ON a.alert_id = o.alert_id WHERE o.status = 'pending'"
                f" AND o.notifier IN ({marks})"
                " AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?)"
                " AND (o.claimed_until IS NULL OR o.claimed_until <= ?)"
                " ORDER BY a.created_at, o.alert_id, o.notifier",
                (*names, now, now),
            ).fetchall()
        return [(a, n, int(k), json.loads(p)) for a, n, k, p in rows]

    def claim_delivery(self, alert_id: str, notifier: str, *, lease: float) -> bool:
        """Take one pending row for ``lease`` seconds; False if delivered or held elsewhere.

        Two drains (threads or processes) therefore never send the same row at once.
        A drain that dies mid-send releases the row when the lease runs out.
        """
        now = time.time()
        with self._transaction() as con:
            cur = con.execute(
                "UPDATE outbox SET claimed_until = ? WHERE alert_id = ? AND notifier = ?"
                " AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= ?)",
                (now + lease, alert_id, notifier, now),
            )
            return cur.rowcount == 1

    def mark_delivery(
        self,
        alert_id: str,
        notifier: str,
        *,
        error: str | None = None,
        retry_in: float = 0.0,
    ) -> bool:
        """Record one attempt on a pending outbox row and release its claim.

        Args:
            alert_id: The alert.
            notifier: The notifier's outbox key.
            error: None when delivered; else why the attempt failed (the row stays
                pending and counts the attempt).
            retry_in: After a failure, seconds before the row is due again.

        Returns:
            True if the row changed; False if it was already delivered (a delivered
            row is never counted or marked twice).
        """
        status = "delivered" if error is None else "pending"
        next_at = None if error is None else time.time() + max(0.0, retry_in)
        with self._transaction() as con:
            cur = con.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                " updated_at = ?, next_attempt_at = ?, claimed_until = NULL"
                " WHERE alert_id = ? AND notifier = ? AND status = 'pending'",
                (status, error, utcnow(), next_at, alert_id, notifier),
            )
            return cur.rowcount == 1

    def outbox(self) -> list[dict[str, Any]]:
        """All outbox rows as dicts (for inspection and tests)."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [
                dict(r) for r in con.execute("SELECT * FROM outbox ORDER BY alert_id, notifier")
            ]


def _record(row: tuple[Any, ...]) -> BatchRecord:
    (seq, batch_id, created_at, name, version, sha, thr, thr_s, tpr, n, n_ood, source) = row[:12]
    content, checked = row[12:14]
    model = ModelRef(name, version, sha, float(thr), float(thr_s), float(tpr))
    return BatchRecord(
        int(seq),
        batch_id,
        created_at,
        model,
        int(n),
        int(n_ood),
        source,
        content_sha256=content,
        rules_checked=checked is not None,
    )


def check_same_content(existing: BatchRecord, content_sha256: str) -> None:
    """Raise :class:`BatchIdConflictError` if a known batch id comes with other content.

    A record without a stored hash (logged by an older version) cannot be compared
    and is accepted as the same batch.
    """
    if existing.content_sha256 is None or existing.content_sha256 == content_sha256:
        return
    raise BatchIdConflictError(
        f"Expected batch id {existing.batch_id!r} to name the batch already logged "
        f"({existing.n_images} images at {existing.created_at}, content "
        f"sha256 {existing.content_sha256[:12]}) but got different content "
        f"(sha256 {content_sha256[:12]}); give this batch a new --batch-id/batch_id "
        "(batch ids are idempotency keys: only an identical re-send is a no-op)."
    )


def _model_history(con: sqlite3.Connection, model: ModelRef) -> list[BatchRecord]:
    """Batches of one model version and calibration, in commit order (inside ``con``)."""
    rows = con.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE model_name = ? AND model_version = ?"
        " AND calibration_sha256 = ? ORDER BY seq",
        (model.name, model.version, model.calibration_sha256),
    ).fetchall()
    return [_record(r) for r in rows]


def _insert_alerts(con: sqlite3.Connection, alerts: AlertRows, notifiers: Sequence[str]) -> None:
    now = utcnow()
    for alert_id, rule, payload in alerts:
        con.execute(
            "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?)",
            (alert_id, now, rule, json.dumps(payload, sort_keys=True)),
        )
        for name in notifiers:
            con.execute(
                "INSERT OR IGNORE INTO outbox (alert_id, notifier, status, updated_at)"
                " VALUES (?, ?, 'pending', ?)",
                (alert_id, name, now),
            )
