"""The served model's inference log cut into monitoring batches, each processed once.

The writer (:mod:`odin_monitor.inference_log`) leaves small Parquet parts in a
folder. A monitor cuts them into *windows*, by count (``window=N`` rows, parts split
where needed) or by time (``every=D`` seconds: a part belongs to the window of its
first row, and a window is cut once it has ended and ``grace`` seconds passed, so
parts still being flushed by other workers make it in). Each window becomes one
batch of :func:`~.pipeline.process_batch` (score log, report, alert rules).

Exactly once, across ``kill -9`` and restarts: a cut is recorded *before* its batch
is processed, in one score-log transaction that stores the window (its row spans,
its batch id = a hash of the spans) and advances each part's cursor; a window is
marked processed only once its batch is committed with its report (or quarantined).
A crash before the cut's commit leaves the rows uncut (cut again later); a crash
after it leaves a recorded window whose batch is processed, or revisited, with the
same id and content on the next pass. Two monitors never cut the same rows (the cut
is a write transaction).

Example:
    >>> # for result in run_inference_windows(folder, model, config, window=256): ...
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from odin_monitor.columns import SCORE_COLUMNS
from odin_monitor.inference_log import list_parts, part_rows, read_part
from odin_monitor.monitoring.batches import utcnow
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.pipeline import (
    MonitorConfig,
    batch_is_complete,
    process_batch,
    quarantine_batch,
    revisit_batch,
)
from odin_monitor.monitoring.result import BatchResult
from odin_monitor.monitoring.schema import ModelRef
from odin_monitor.monitoring.scorelog_db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inference_windows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    folder TEXT NOT NULL,
    spans TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    first_ts REAL NOT NULL,
    cut_at TEXT NOT NULL,
    processed_at TEXT
);
CREATE TABLE IF NOT EXISTS inference_parts (
    folder TEXT NOT NULL,
    part TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    done INTEGER NOT NULL,
    PRIMARY KEY (folder, part)
);
"""

Span = tuple[str, int, int]
"""Rows ``[start, stop)`` of one part file."""


@dataclass(frozen=True)
class Window:
    """A cut of the inference log: one monitoring batch.

    Attributes:
        batch_id: ``ilog-`` + a hash of the spans (the batch's idempotency key).
        folder: The inference log folder.
        spans: ``(part, start, stop)`` row ranges, in log order.
        n_rows: Rows in all.
        first_ts: Time of its first part's first row (seconds since the epoch).
    """

    batch_id: str
    folder: str
    spans: tuple[Span, ...]
    n_rows: int
    first_ts: float


def window_id(spans: tuple[Span, ...]) -> str:
    """The batch id of a window: a hash of its spans.

    Example:
        >>> window_id((("part-a.parquet", 0, 5),)).startswith("ilog-")
        True
    """
    digest = hashlib.sha256(json.dumps([list(s) for s in spans]).encode()).hexdigest()
    return "ilog-" + digest[:24]


def plan_windows(
    parts: list[tuple[str, float, int, int]],
    *,
    window: int | None = None,
    every: float | None = None,
    now: float,
    grace: float = 2.0,
) -> list[tuple[tuple[Span, ...], float]]:
    """Pure: which windows the unconsumed rows make, as ``(spans, first_ts)``.

    Args:
        parts: ``(part, first_ts, n_rows, done)`` in log order (``done`` rows cut before).
        window: Rows per window (exactly; what is left waits for more rows).
        every: Seconds per window, aligned on the epoch; a window is cut once
            ``now >= end + grace``. A part belongs to the window of its first row.
        now: The current time (seconds since the epoch).
        grace: Seconds a time window stays open after its end for late parts.

    Example:
        >>> plan_windows([("a", 0.0, 3, 0), ("b", 1.0, 3, 0)], window=4, now=9.0)
        [((('a', 0, 3), ('b', 0, 1)), 0.0)]
    """
    if (window is None) == (every is None):
        raise ConfigError("Expected exactly one of window (rows) or every (seconds).")
    left = [(p, ts, d, n) for p, ts, n, d in parts if d < n]
    out: list[tuple[tuple[Span, ...], float]] = []
    if window is not None:
        spans: list[Span] = []
        need, first = window, 0.0
        for part, ts, start, stop in left:
            while start < stop:
                if not spans:
                    first = ts
                take = min(need, stop - start)
                spans.append((part, start, start + take))
                start += take
                need -= take
                if need == 0:
                    out.append((tuple(spans), first))
                    spans, need = [], window
        return out
    assert every is not None
    buckets: dict[int, list[tuple[Span, float]]] = {}
    for part, ts, start, stop in left:
        buckets.setdefault(math.floor(ts / every), []).append(((part, start, stop), ts))
    for key in sorted(buckets):
        if now >= (key + 1) * every + grace:
            members = buckets[key]
            out.append((tuple(s for s, _ in members), members[0][1]))
    return out


class WindowStore(Database):
    """The ``inference_windows`` and ``inference_parts`` tables, in the score log's file.

    Args:
        path: The score log (``ScoreLog.path``).
    """

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        super().__init__(path, timeout)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    def cut(
        self,
        folder: str | Path,
        calibration_sha256: str,
        *,
        window: int | None = None,
        every: float | None = None,
        now: float | None = None,
        grace: float = 2.0,
    ) -> list[Window]:
        """Record the windows the log's new rows make, in one transaction; return them."""
        key = str(Path(folder).resolve())
        now = time.time() if now is None else now
        names = list_parts(folder, calibration_sha256)
        with self._connect() as con:
            known = {
                p: (n, d)
                for p, n, d in con.execute(
                    "SELECT part, n_rows, done FROM inference_parts WHERE folder = ?", (key,)
                )
            }
        sizes = {
            p.name: known[p.name][0] if p.name in known else part_rows(Path(folder, p.name))
            for p in names
            if p.name not in known or known[p.name][1] < known[p.name][0]
        }
        cut: list[Window] = []
        with self._transaction() as con:
            done = {
                p: d
                for p, d in con.execute(
                    "SELECT part, done FROM inference_parts WHERE folder = ?", (key,)
                )
            }
            parts = [
                (p.name, p.first_ts, sizes[p.name], done.get(p.name, 0))
                for p in names
                if p.name in sizes
            ]
            for spans, first_ts in plan_windows(
                parts, window=window, every=every, now=now, grace=grace
            ):
                w = Window(window_id(spans), key, spans, sum(b - a for _, a, b in spans), first_ts)
                con.execute(
                    "INSERT INTO inference_windows (batch_id, folder, spans, n_rows, first_ts,"
                    " cut_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        w.batch_id,
                        key,
                        json.dumps([list(s) for s in spans]),
                        w.n_rows,
                        first_ts,
                        utcnow(),
                    ),
                )
                for part, _, stop in spans:
                    con.execute(
                        "INSERT INTO inference_parts VALUES (?, ?, ?, ?) ON CONFLICT (folder, part)"
                        " DO UPDATE SET done = MAX(done, excluded.done)",
                        (key, part, sizes[part], stop),
                    )
                cut.append(w)
        return cut

    def pending(self, folder: str | Path) -> list[Window]:
        """Recorded windows not yet marked processed, oldest first."""
        key = str(Path(folder).resolve())
        with self._connect() as con:
            rows = con.execute(
                "SELECT batch_id, spans, n_rows, first_ts FROM inference_windows"
                " WHERE folder = ? AND processed_at IS NULL ORDER BY seq",
                (key,),
            ).fetchall()
        return [
            Window(
                b, key, tuple((p, int(a), int(z)) for p, a, z in json.loads(s)), int(n), float(t)
            )
            for b, s, n, t in rows
        ]

    def mark_processed(self, batch_id: str) -> None:
        """Record that a window's batch is committed and reported (or quarantined)."""
        with self._transaction() as con:
            con.execute(
                "UPDATE inference_windows SET processed_at = ? WHERE batch_id = ?",
                (utcnow(), batch_id),
            )

    def windows(self, folder: str | Path | None = None) -> list[dict[str, object]]:
        """All recorded windows (for inspection and tests), oldest first."""
        sql = "SELECT batch_id, folder, spans, n_rows, first_ts, cut_at, processed_at"
        sql += " FROM inference_windows"
        args: tuple[str, ...] = ()
        if folder is not None:
            sql, args = sql + " WHERE folder = ?", (str(Path(folder).resolve()),)
        cols = ("batch_id", "folder", "spans", "n_rows", "first_ts", "cut_at", "processed_at")
        with self._connect() as con:
            return [
                dict(zip(cols, r, strict=True)) for r in con.execute(sql + " ORDER BY seq", args)
            ]


def read_window(w: Window) -> pd.DataFrame:
    """The rows of a window as log columns (raises ``OSError`` if a part is gone)."""
    frames = []
    for part, start, stop in w.spans:
        frame = read_part(Path(w.folder, part))
        frames.append(frame.iloc[start:stop])
    return pd.concat(frames, ignore_index=True)


def _created_at(rows: pd.DataFrame, w: Window) -> str:
    """The batch time: its last row's timestamp (ISO-8601 UTC)."""
    if len(rows) and "timestamp" in rows:
        last = pd.Timestamp(rows["timestamp"].max())
        last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
        return last.isoformat()
    return datetime.fromtimestamp(w.first_ts, timezone.utc).isoformat()


def process_window(
    w: Window, model: ModelRef, config: MonitorConfig, reference: pd.DataFrame | None = None
) -> BatchResult:
    """Process one recorded window through :func:`~.pipeline.process_batch` (idempotent)."""
    log = config.log
    if log.get_batch(w.batch_id) is not None:
        return revisit_batch(model, config, w.batch_id)
    try:
        rows = read_window(w)
    except (OSError, ValueError) as err:  # a part deleted or damaged under us
        reason = f"Expected the inference log parts of {w.batch_id} to be readable: {err}"
        return quarantine_batch(model, config, w.batch_id, reason, None)
    scores = rows[list(SCORE_COLUMNS)]
    return process_batch(
        model,
        config,
        scores=scores,
        batch_id=w.batch_id,
        created_at=_created_at(rows, w),
        reference=reference,
    )


def run_inference_windows(
    folder: str | Path,
    model: ModelRef,
    config: MonitorConfig,
    *,
    window: int | None = None,
    every: float | None = None,
    grace: float = 2.0,
    now: float | None = None,
    reference: pd.DataFrame | None = None,
) -> Iterator[BatchResult]:
    """One pass: cut new windows of ``folder``, then process every unprocessed one.

    Only parts of ``model``'s calibration are read (their names carry its hash).
    Windows recorded by an earlier, interrupted pass are processed first, with the
    same ids and content, so none is lost or processed twice. ``reference`` (the
    model's in-distribution scores) is stored once per model version, as in
    :func:`~.pipeline.process_batch`.

    Raises:
        ConfigError: Neither or both of ``window`` and ``every``, or a non-positive one.
    """
    if window is not None and window < 1:
        raise ConfigError(f"Expected window as a row count >= 1, e.g. 256, but got {window!r}.")
    if every is not None and not every > 0:
        raise ConfigError(f"Expected every as seconds > 0, e.g. 300, but got {every!r}.")
    store = WindowStore(config.log.path)
    store.cut(folder, model.calibration_sha256, window=window, every=every, now=now, grace=grace)
    for w in store.pending(folder):
        result = process_window(w, model, config, reference)
        if result.quarantined or batch_is_complete(config, w.batch_id):
            store.mark_processed(w.batch_id)
        yield result
