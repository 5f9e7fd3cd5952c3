"""The score log's outbox: stored alerts and their delivery state per notifier.

Alerts are stored with one pending row per notifier in the same transaction as the
batch that raised them (:func:`insert_alerts`), *before* any delivery attempt, so
none is lost. A row has a retry time (per-row backoff) and a short claim, so two
drains never send the same row at once; a delivered row is marked exactly once.
Sending is :mod:`odin_monitor.monitoring.delivery`'s job.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from odin_monitor.monitoring.batches import utcnow
from odin_monitor.monitoring.scorelog_db import Database

AlertRows = Iterable[tuple[str, str, dict[str, Any]]]
"""Alerts as stored: ``(alert_id, rule, payload)``."""


class OutboxStore(Database):
    """The ``alerts`` and ``outbox`` tables of a score log (see :class:`~.scorelog.ScoreLog`)."""

    def enqueue_alerts(self, alerts: AlertRows, notifiers: Iterable[str]) -> None:
        """Persist alerts ``(alert_id, rule, payload)`` and one pending row per notifier.

        Idempotent: an alert id already stored is left as is.
        """
        with self._transaction() as con:
            insert_alerts(con, alerts, list(notifiers))

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


def insert_alerts(con: sqlite3.Connection, alerts: AlertRows, notifiers: Sequence[str]) -> None:
    """Store alerts and one pending outbox row per notifier inside ``con``'s transaction.

    Idempotent: an alert id or outbox row already stored is left as it is.
    """
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
