"""The score log's SQLite layer: tables, migrations, connections and row mapping.

One file in WAL mode; every method of the stores built on :class:`Database` opens
its own short-lived connection, and writes go through :meth:`Database._transaction`
(``BEGIN IMMEDIATE``), so each is all or nothing.

Tables: ``batches`` (with the content hash of each batch), ``scores``,
``reference_sets``, ``reference_scores``, ``quarantine``, ``reports``, ``alerts``
and ``outbox``. Score logs written by older versions are migrated in place
(nullable columns added).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from odin_monitor.columns import SCORE_COLUMNS, SCORE_DTYPES
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.schema import ModelRef

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

BATCH_COLUMNS = (
    "seq, batch_id, created_at, model_name, model_version, calibration_sha256,"
    " threshold, threshold_spread, tpr_target, n_images, n_ood, source, content_sha256,"
    " rules_checked_at"
)


class Database:
    """A SQLite file holding the score log's tables (created or migrated on open).

    Args:
        path: Database file (created with its parent folder if missing).
        timeout: Seconds to wait for a lock held by another writer.
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


def score_rows(key: tuple[Any, ...], scores: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
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


def score_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Rows of ``scores``/``reference_scores`` as a frame with the canonical dtypes."""
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS)).astype(SCORE_DTYPES)


def batch_record(row: tuple[Any, ...]) -> BatchRecord:
    """A ``batches`` row (columns of :data:`BATCH_COLUMNS`) as a :class:`BatchRecord`."""
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


def model_history(con: sqlite3.Connection, model: ModelRef) -> list[BatchRecord]:
    """Batches of one model version and calibration, in commit order (inside ``con``)."""
    rows = con.execute(
        f"SELECT {BATCH_COLUMNS} FROM batches WHERE model_name = ? AND model_version = ?"
        " AND calibration_sha256 = ? ORDER BY seq",
        (model.name, model.version, model.calibration_sha256),
    ).fetchall()
    return [batch_record(r) for r in rows]
