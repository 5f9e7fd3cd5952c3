"""Durable, server-less score log (SQLite in WAL mode).

Every scored batch is written in **one transaction** (batch row + one row per
image) before any report is built, so a crash mid-batch leaves no partial batch
and never loses a committed one. Writing a batch id twice is idempotent: the
existing record is returned, nothing is duplicated.

Tables: ``batches``, ``scores``, ``reference_sets``, ``reference_scores``,
``quarantine``, ``reports``, ``alerts`` and ``outbox`` (alerts awaiting delivery
per notifier).

Example:
    >>> import tempfile, os
    >>> log = ScoreLog(os.path.join(tempfile.mkdtemp(), "scores.db"))
    >>> log.batch_ids()
    []
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from odin_monitor.monitoring.errors import ScoreLogError
from odin_monitor.monitoring.schema import SCORE_COLUMNS, ModelRef, validate_scores

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
    source TEXT NOT NULL
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
    PRIMARY KEY (alert_id, notifier)
);
"""


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
    """

    seq: int
    batch_id: str
    created_at: str
    model: ModelRef
    n_images: int
    n_ood: int
    source: str

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


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    return df.astype(
        {
            "odin_score": "float64",
            "spread_score": "float64",
            "msp": "float64",
            "predicted_class": "int64",
            "is_ood": "bool",
        }
    )


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
    ) -> tuple[BatchRecord, bool]:
        """Write a scored batch atomically; idempotent on ``batch_id``.

        Returns:
            ``(record, created)``; ``created`` is False when the id already existed
            (the stored record is returned and nothing is written).

        Example:
            >>> # rec, created = log.write_batch("b1", model, scores)
        """
        if not isinstance(batch_id, str) or not batch_id:
            raise ScoreLogError(f"Expected a non-empty string batch_id but got {batch_id!r}.")
        existing = self.get_batch(batch_id)
        if existing is not None:
            return existing, False
        scores = validate_scores(scores)
        created_at = created_at or utcnow()
        n_ood = int(scores["is_ood"].sum())
        with self._transaction() as con:
            row = con.execute("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO batches (batch_id, created_at, model_name, model_version, "
                    "calibration_sha256, threshold, threshold_spread, tpr_target, n_images, "
                    "n_ood, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    ),
                )
                con.executemany(
                    "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                    _score_rows((batch_id,), scores),
                )
        record = self.get_batch(batch_id)
        if record is None:  # pragma: no cover - would mean the commit was lost
            raise ScoreLogError(f"Batch {batch_id!r} was committed but cannot be read back.")
        return record, row is None

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """Return the stored record of ``batch_id``, or None."""
        with self._connect() as con:
            row = con.execute(
                "SELECT seq, batch_id, created_at, model_name, model_version, calibration_sha256,"
                " threshold, threshold_spread, tpr_target, n_images, n_ood, source"
                " FROM batches WHERE batch_id = ?",
                (batch_id,),
            ).fetchone()
        return None if row is None else _record(row)

    def batch_ids(self) -> list[str]:
        """All committed batch ids in commit order."""
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT batch_id FROM batches ORDER BY seq")]

    def history(self, model_name: str, model_version: str | None = None) -> list[BatchRecord]:
        """Committed batches of a model (optionally one version) in commit order."""
        sql = (
            "SELECT seq, batch_id, created_at, model_name, model_version, calibration_sha256,"
            " threshold, threshold_spread, tpr_target, n_images, n_ood, source"
            " FROM batches WHERE model_name = ?"
        )
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
    def enqueue_alerts(
        self, alerts: Iterable[tuple[str, str, dict[str, Any]]], notifiers: Iterable[str]
    ) -> None:
        """Persist alerts ``(alert_id, rule, payload)`` and one pending row per notifier.

        Idempotent: an alert id already stored is left as is.
        """
        names = list(notifiers)
        now = utcnow()
        with self._transaction() as con:
            for alert_id, rule, payload in alerts:
                con.execute(
                    "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?)",
                    (alert_id, now, rule, json.dumps(payload, sort_keys=True)),
                )
                for name in names:
                    con.execute(
                        "INSERT OR IGNORE INTO outbox (alert_id, notifier, status, updated_at)"
                        " VALUES (?, ?, 'pending', ?)",
                        (alert_id, name, now),
                    )

    def alert_payloads(self) -> list[dict[str, Any]]:
        """Every stored alert payload, oldest first."""
        with self._connect() as con:
            return [
                json.loads(r[0])
                for r in con.execute("SELECT payload FROM alerts ORDER BY created_at, alert_id")
            ]

    def pending_deliveries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Undelivered ``(alert_id, notifier, payload)``, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT o.alert_id, o.notifier, a.payload FROM outbox o JOIN alerts a"
                " ON a.alert_id = o.alert_id WHERE o.status = 'pending'"
                " ORDER BY a.created_at, o.alert_id, o.notifier"
            ).fetchall()
        return [(a, n, json.loads(p)) for a, n, p in rows]

    def mark_delivery(self, alert_id: str, notifier: str, *, error: str | None = None) -> None:
        """Mark one outbox row delivered (``error is None``) or count a failed attempt."""
        status = "delivered" if error is None else "pending"
        with self._transaction() as con:
            con.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                " updated_at = ? WHERE alert_id = ? AND notifier = ?",
                (status, error, utcnow(), alert_id, notifier),
            )

    def outbox(self) -> list[dict[str, Any]]:
        """All outbox rows as dicts (for inspection and tests)."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [
                dict(r) for r in con.execute("SELECT * FROM outbox ORDER BY alert_id, notifier")
            ]


def _record(row: tuple[Any, ...]) -> BatchRecord:
    (seq, batch_id, created_at, name, version, sha, thr, thr_s, tpr, n, n_ood, source) = row
    model = ModelRef(name, version, sha, float(thr), float(thr_s), float(tpr))
    return BatchRecord(int(seq), batch_id, created_at, model, int(n), int(n_ood), source)
