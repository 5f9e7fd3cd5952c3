"""Alert notifiers (log, JSON webhook, MLflow) and their delivery from the outbox.

Delivery goes through the score log's ``outbox`` table: alerts are persisted
with one pending row per notifier in the batch's own commit, *before* any delivery
attempt, so none is lost. :func:`deliver_pending` makes one attempt per due row
(per-attempt timeout, no sleeping: a failed row gets a retry time with exponential
backoff, and after one failure a notifier is not tried again in the same pass, so
a dead endpoint costs one attempt per pass however long the outbox). Each row is
claimed before its attempt, so two drains never send it twice at once, and a
success is recorded exactly once. :func:`deliver_in_background` runs it in one
daemon thread per notifier and waits at most a time budget: scoring never waits
longer on a notifier; :func:`flush_deliveries` waits (bounded) at process exit.

A receiver that times out after accepting a POST gets it again on the retry (the
sender cannot tell); each POST carries ``Idempotency-Key: <alert_id>`` so the
receiver can drop repeats.

Example:
    >>> LogNotifier().name
    'log'
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.errors import ConfigError, DeliveryError
from odin_monitor.monitoring.scorelog import BatchRecord, ScoreLog

logger = logging.getLogger(__name__)


class Notifier(Protocol):
    """Sends alerts; ``send`` raises on failure (the alert stays in the outbox)."""

    @property
    def name(self) -> str:
        """Outbox key of this notifier."""
        ...

    def send(self, alert: Alert) -> None:
        """Deliver one alert or raise."""
        ...

    def record_batch(self, record: BatchRecord) -> None:
        """Observe every committed batch (no-op for most notifiers)."""
        ...


class LogNotifier:
    """Writes each alert as one log line (``WARNING`` on ``odin_monitor.alerts``).

    Example:
        >>> LogNotifier(level=logging.ERROR).level
        40
    """

    def __init__(
        self,
        logger_name: str = "odin_monitor.alerts",
        level: int = logging.WARNING,
        name: str = "log",
    ) -> None:
        self.name = name
        self.level = level
        self._logger = logging.getLogger(logger_name)

    def send(self, alert: Alert) -> None:
        """Log the alert message and its JSON."""
        self._logger.log(self.level, "ODIN ALERT %s | %s", alert.message, alert.to_json())

    def record_batch(self, record: BatchRecord) -> None:
        """No-op."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Treat a redirect as a failed delivery.

    urllib would follow a 301/302/303 with a GET and no body: the alert would be lost
    while the redirect target answers 2xx.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


class JsonlNotifier:
    """Appends each alert as one JSON line to a file (an audit trail people can grep).

    Example:
        >>> import tempfile, pathlib
        >>> JsonlNotifier(pathlib.Path(tempfile.mkdtemp()) / "alerts.jsonl").name
        'jsonl'
    """

    def __init__(self, path: str | Path, name: str = "jsonl") -> None:
        self.path = Path(path)
        self.name = name

    def send(self, alert: Alert) -> None:
        """Append the alert's JSON and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(alert.to_dict(), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record_batch(self, record: BatchRecord) -> None:
        """No-op."""


class WebhookNotifier:
    """POSTs the alert JSON to a URL (urllib), with timeout and exponential backoff.

    Args:
        url: Endpoint receiving ``application/json`` POSTs; 2xx means delivered.
            Each POST carries ``Idempotency-Key: <alert_id>``.
        timeout: Seconds per attempt.
        retries: Extra attempts after the first one, for direct :meth:`send` calls
            (the outbox retries a failed row on later passes instead).
        backoff: First retry delay in seconds, doubled on each retry (also the base
            of the outbox's per-row retry delay).
        headers: Extra HTTP headers (e.g. an auth token).
        name: Outbox key; give two webhooks different names.

    Example:
        >>> WebhookNotifier("http://127.0.0.1:9/hook", retries=0).retries
        0
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
        name: str = "webhook",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"Expected an http(s):// webhook URL but got {url!r}.")
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise ConfigError(
                f"Expected retries >= 0, timeout > 0, backoff >= 0 but got "
                f"{retries}, {timeout}, {backoff}."
            )
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        self.name = name

    def _post(self, alert: Alert, timeout: float) -> str | None:
        """One POST; None when answered 2xx, else why not."""
        req = urllib.request.Request(
            self.url,
            data=alert.to_json().encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": alert.alert_id,
                **self.headers,
            },
        )
        try:
            with _NO_REDIRECTS.open(req, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def send_once(self, alert: Alert, timeout: float | None = None) -> None:
        """One POST, no retry and no sleep (the outbox schedules retries); raise on failure.

        Args:
            alert: The alert to POST.
            timeout: Seconds for this attempt (default and cap: ``self.timeout``).

        Raises:
            DeliveryError: No 2xx answer (connection refused, timeout, HTTP error,
                redirect).
        """
        limit = self.timeout if timeout is None else max(0.05, min(self.timeout, timeout))
        why = self._post(alert, limit)
        if why is not None:
            raise DeliveryError(
                f"Expected a 2xx answer from {self.url} but got {why}; "
                "the alert stays in the outbox."
            )

    def send(self, alert: Alert) -> None:
        """POST the alert with in-call retries; raise :class:`DeliveryError` at the end.

        For direct use; the monitoring loop goes through the outbox and
        :meth:`send_once` instead, which never sleeps.
        """
        why: str | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            why = self._post(alert, self.timeout)
            if why is None:
                return
            logger.info("webhook %s attempt %d failed: %s", self.url, attempt + 1, why)
        raise DeliveryError(
            f"Expected a 2xx answer from {self.url} but got {why} after "
            f"{self.retries + 1} attempts; the alert stays in the outbox."
        )

    def record_batch(self, record: BatchRecord) -> None:
        """No-op."""


class MlflowNotifier:
    """Logs ``ood_rate`` per batch (step = batch seq) and alerts to an MLflow run.

    One monitoring run per model name and version in ``experiment_name``, found
    again by its tags. ``mlflow`` is imported lazily, only here.

    Example:
        >>> MlflowNotifier("sqlite:///mlflow.db").experiment_name
        'odin-monitoring'
    """

    def __init__(
        self, tracking_uri: str, experiment_name: str = "odin-monitoring", name: str = "mlflow"
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.name = name
        self._runs: dict[tuple[str, str], str] = {}

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def run_id(self, model_name: str, model_version: str) -> str:
        """Id of the monitoring run of a model version (created on first use)."""
        key = (model_name, model_version)
        if key in self._runs:
            return self._runs[key]
        client = self._client()
        exp = client.get_experiment_by_name(self.experiment_name)
        exp_id = exp.experiment_id if exp else client.create_experiment(self.experiment_name)
        found = client.search_runs(
            [exp_id],
            filter_string=(
                f"tags.`odin_monitor.model_name` = '{model_name}' and "
                f"tags.`odin_monitor.model_version` = '{model_version}'"
            ),
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
        else:
            run = client.create_run(
                exp_id,
                run_name=f"monitor-{model_name}-v{model_version}",
                tags={
                    "odin_monitor.model_name": model_name,
                    "odin_monitor.model_version": model_version,
                },
            )
            run_id = run.info.run_id
        self._runs[key] = run_id
        return run_id

    def record_batch(self, record: BatchRecord) -> None:
        """Log ``ood_rate``, ``n_images`` and ``n_ood`` at step ``record.seq``."""
        client = self._client()
        run_id = self.run_id(record.model.name, record.model.version)
        ts = int(time.time() * 1000)
        for key, value in (
            ("ood_rate", record.ood_rate),
            ("n_images", record.n_images),
            ("n_ood", record.n_ood),
        ):
            client.log_metric(run_id, key, float(value), timestamp=ts, step=record.seq)

    def send(self, alert: Alert) -> None:
        """Log ``alert_<rule>`` = statistic and the alert JSON as an artifact-free tag."""
        client = self._client()
        run_id = self.run_id(alert.model_name, alert.model_version)
        client.log_metric(
            run_id, f"alert_{alert.rule}", float(alert.statistic), timestamp=int(time.time() * 1000)
        )
        client.set_tag(run_id, f"odin_monitor.alert.{alert.alert_id}", alert.to_json()[:5000])


MAX_RETRY_DELAY = 600.0
"""Longest wait (seconds) between two attempts of one outbox row."""


def retry_delay(notifier: Notifier, attempts: int) -> float:
    """Seconds before a row that failed ``attempts`` times is due again.

    ``backoff * 2**(attempts - 1)`` with the notifier's ``backoff`` (default 1 s),
    capped at :data:`MAX_RETRY_DELAY`.

    Example:
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
    for alert_id, name, attempts, payload in log.due_deliveries(by_name):
        if name in broken:
            continue
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        notifier = by_name[name]
        timeout = float(getattr(notifier, "timeout", 30.0))
        if remaining is not None:
            timeout = min(timeout, remaining)
        if not log.claim_delivery(alert_id, name, lease=timeout + 60.0):
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
