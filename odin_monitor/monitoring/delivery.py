"""Delivery of stored alerts to the notifiers, from the score log's outbox.

Alerts are persisted with one pending row per notifier in the batch's own commit,
*before* any delivery attempt, so none is lost (:mod:`~.outbox`).
:func:`deliver_pending` makes one attempt per due row (per-attempt timeout, no
sleeping: a failed row gets a retry time with exponential backoff, and after one
failure a notifier is not tried again in the same pass, so a dead endpoint costs
one attempt per pass however long the outbox). Each row is claimed before its
attempt, so two drains never send it twice at once, and a success is recorded
exactly once. :func:`deliver_in_background` runs it in one daemon thread per
notifier and waits at most a time budget: scoring never waits longer on a
notifier; :func:`flush_deliveries` waits (bounded) at process exit.

Example:
    >>> from odin_monitor.monitoring.notifiers import LogNotifier
    >>> retry_delay(LogNotifier(), 1)
    1.0
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.notifiers import Notifier
from odin_monitor.monitoring.scorelog import ScoreLog

logger = logging.getLogger(__name__)


MAX_RETRY_DELAY = 600.0
"""Longest wait (seconds) between two attempts of one outbox row."""


def retry_delay(notifier: Notifier, attempts: int) -> float:
    """Seconds before a row that failed ``attempts`` times is due again.

    ``backoff * 2**(attempts - 1)`` with the notifier's ``backoff`` (default 1 s),
    capped at :data:`MAX_RETRY_DELAY`.

    Example:
        >>> from odin_monitor.monitoring.notifiers import LogNotifier
        >>> retry_delay(LogNotifier(), 3)
        4.0
    """
    base = float(getattr(notifier, "backoff", 1.0))
    return min(MAX_RETRY_DELAY, base * 2.0 ** max(0, attempts - 1))


def deliver_pending(
    log: ScoreLog, notifiers: Sequence[Notifier], *, budget: float | None = None
) -> tuple[int, int]:
    """Make one attempt on every due outbox row of the configured notifiers.

    Never sleeps. A row is claimed before its attempt (so a concurrent drain skips
    it), marked delivered exactly once on success, or given a retry time
    (:func:`retry_delay`) on failure. After a failure, the notifier's other rows wait
    for the next pass. With a ``budget`` (seconds), no attempt starts after the
    deadline and each attempt's timeout is cut to the time left (for notifiers
    with ``send_once(alert, timeout)``; others are called as ``send(alert)``).

    Returns:
        ``(delivered, failed)`` counts of this pass; failures stay pending.
    """
    by_name = {n.name: n for n in notifiers}
    deadline = None if budget is None else time.monotonic() + budget
    delivered = failed = 0
    broken: set[str] = set()
    # Notifiers with `in_order` (Alertmanager: a resolution must not overtake its alert)
    # take their rows strictly oldest first: a row waiting for its retry holds the rest.
    ordered = {n.name for n in notifiers if getattr(n, "in_order", False)}
    queues: dict[str, list[str]] = {name: [] for name in ordered}
    if ordered:
        for alert_id, name, _ in log.pending_deliveries():
            if name in queues:
                queues[name].append(alert_id)
    for alert_id, name, attempts, payload in log.due_deliveries(by_name):
        if name in broken:
            continue
        if name in queues and queues[name][:1] != [alert_id]:
            broken.add(name)  # an older row is not due yet: wait for it
            continue
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        notifier = by_name[name]
        timeout = float(getattr(notifier, "timeout", 30.0))
        if remaining is not None:
            timeout = min(timeout, remaining)
        if not log.claim_delivery(alert_id, name, lease=timeout + 60.0):
            if name in queues:
                broken.add(name)  # held by another drain: the rest waits behind it
            continue  # delivered or being sent by another drain
        try:
            send_once = getattr(notifier, "send_once", None)
            if send_once is not None:
                send_once(Alert.from_dict(payload), timeout=timeout)
            else:
                notifier.send(Alert.from_dict(payload))
        except Exception as exc:  # a notifier must never break the loop
            broken.add(name)
            log.mark_delivery(
                alert_id,
                name,
                error=f"{type(exc).__name__}: {exc}",
                retry_in=retry_delay(notifier, attempts + 1),
            )
            logger.warning("alert %s not delivered by %s: %s", alert_id, name, exc)
            failed += 1
        else:
            if log.mark_delivery(alert_id, name):
                delivered += 1
            if name in queues:
                queues[name].pop(0)
    return delivered, failed


@dataclass
class _Drain:
    """A background delivery thread of this process for one score log and notifier."""

    thread: threading.Thread
    log: ScoreLog
    notifier: Notifier
    again: bool = False
    delivered: int = 0


_DrainKey = tuple[Path, str]
_DRAINS: dict[_DrainKey, _Drain] = {}
_DRAINS_LOCK = threading.Lock()


def _drain_loop(key: _DrainKey) -> None:
    while True:
        with _DRAINS_LOCK:
            drain = _DRAINS[key]
            drain.again = False
            log, notifier = drain.log, drain.notifier
        try:
            delivered, _ = deliver_pending(log, [notifier])
        except Exception:  # e.g. the database is locked for too long: retried next time
            logger.exception("delivering the outbox of %s to %s failed", *key)
            delivered = 0
        with _DRAINS_LOCK:
            drain.delivered += delivered
            if not drain.again:
                del _DRAINS[key]
                return


@dataclass(frozen=True)
class DeliveryStatus:
    """What :func:`deliver_in_background` saw within its budget.

    Attributes:
        delivered: Rows delivered by this process's drains while waiting.
        pending: Rows of the configured notifiers still pending when it returned
            (failed, not yet due, or still being sent in the background).
        running: Whether a background drain was still running.
    """

    delivered: int
    pending: int
    running: bool


def deliver_in_background(
    log: ScoreLog, notifiers: Sequence[Notifier], *, budget: float
) -> DeliveryStatus:
    """Drain the outbox in daemon threads; wait for them at most ``budget`` seconds.

    One drain thread per score log and notifier in this process, so a slow webhook
    never holds back the log line or the JSONL file. If a drain is running, it is
    asked to make another pass instead of starting a second one. A drain still
    running after ``budget`` keeps going in the background (its attempt ends with
    its own timeout); :func:`flush_deliveries` waits for it, bounded, and runs at
    interpreter exit.

    Example:
        >>> # status = deliver_in_background(log, [WebhookNotifier(url)], budget=1.0)
    """
    path = log.path.resolve()
    drains: list[_Drain] = []
    before = 0
    with _DRAINS_LOCK:
        for notifier in notifiers:
            key = (path, notifier.name)
            drain = _DRAINS.get(key)
            if drain is None:
                thread = threading.Thread(
                    target=_drain_loop, args=(key,), daemon=True, name=f"odin-outbox-{key[1]}"
                )
                drain = _DRAINS[key] = _Drain(thread, log, notifier)
                thread.start()
            else:
                drain.again = True
                drain.notifier = notifier
            drains.append(drain)
            before += drain.delivered
    deadline = time.monotonic() + max(0.0, budget)
    for drain in drains:
        drain.thread.join(max(0.0, deadline - time.monotonic()))
    with _DRAINS_LOCK:
        delivered = sum(d.delivered for d in drains) - before
    names = {n.name for n in notifiers}
    pending = sum(1 for _, n, _ in log.pending_deliveries() if n in names)
    return DeliveryStatus(delivered, pending, any(d.thread.is_alive() for d in drains))


def flush_deliveries(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds in all for this process's delivery threads.

    Returns:
        True if none is left running.
    """
    deadline = time.monotonic() + timeout
    while True:
        with _DRAINS_LOCK:
            threads = [d.thread for d in _DRAINS.values()]
        if not threads:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        threads[0].join(remaining)


EXIT_FLUSH_SECONDS = 10.0
"""How long interpreter exit waits for deliveries still in flight."""

atexit.register(lambda: flush_deliveries(EXIT_FLUSH_SECONDS))
