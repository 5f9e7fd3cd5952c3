"""Alert notifiers: a log line, a JSONL file, a JSON webhook (MLflow runs: :mod:`~.mlflow_runs`).

Each notifier sends one alert and raises on failure; the outbox keeps the alert
and :mod:`odin_monitor.monitoring.delivery` retries it. A receiver that times out
after accepting a POST gets it again on the retry (the sender cannot tell); each
POST carries ``Idempotency-Key: <alert_id>`` so the receiver can drop repeats.

Example:
    >>> LogNotifier().name
    'log'
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.errors import ConfigError, DeliveryError
from odin_monitor.monitoring.mlflow_runs import MlflowNotifier as MlflowNotifier  # re-export

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
