"""Alerts as Alertmanager alerts: API v2 payloads, fired and resolved through the outbox.

Each rule maps to one Alertmanager alert per model version, identified by its labels
(``alertname`` ``OdinOODSpike`` for the binomial spike test, ``OdinOODCusum`` for the
CUSUM; ``model``, ``version``, ``alias``, ``rule``, ``severity``), so Alertmanager
groups, routes, silences and inhibits them like any other. A firing alert carries
``startsAt`` (when the rule fired) and an ``endsAt`` ``hold`` seconds ahead (it stays
active that long unless resolved); when a later batch is back to normal the rule's
resolution (:func:`~.alerts.resolutions`) is posted with ``endsAt``, which resolves
it. Annotations carry the OOD rate, the expected rate, the p-value, the batch id and
the report path.

:class:`AlertmanagerNotifier` is a :class:`~.notifiers.Notifier` with
``wants_resolutions`` and ``in_order``: its rows wait in the score log's outbox while
Alertmanager is down and are retried, oldest first, in the background (never
blocking scoring).

Example:
    >>> AlertmanagerNotifier("http://127.0.0.1:9093/", alias="champion").endpoint
    'http://127.0.0.1:9093/api/v2/alerts'
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.errors import ConfigError, DeliveryError
from odin_monitor.monitoring.notifiers import _NO_REDIRECTS

#: Alertmanager ``alertname`` of each rule.
ALERTNAMES = {"binomial_spike": "OdinOODSpike", "cusum": "OdinOODCusum"}
#: Default ``severity`` label of each rule (a spike pages, a slow drift makes a ticket).
SEVERITIES = {"binomial_spike": "critical", "cusum": "warning"}


def _alertname(rule: str) -> str:
    return ALERTNAMES.get(rule) or "OdinOOD" + "".join(w.title() for w in rule.split("_"))


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def alertmanager_payload(
    alert: Alert,
    *,
    alias: str | None = None,
    severities: dict[str, str] | None = None,
    hold: float = 86_400.0,
    now: float | None = None,
    generator_url: str | None = None,
) -> list[dict[str, Any]]:
    """The API v2 body (a list of one alert) for a fired or resolved rule.

    Args:
        alert: A fired alert, or a resolution (``status="resolved"``).
        alias: The registry alias monitored (``champion``), as a label.
        severities: ``severity`` label per rule (default :data:`SEVERITIES`).
        hold: A firing alert's ``endsAt`` is this many seconds after ``now`` (or its
            start): it stays active that long unless a resolution comes first.
        now: Seconds since the epoch (default: the time of the call).
        generator_url: Link shown by Alertmanager (default: the report path, as a
            ``file://`` URL, when there is one).

    Example:
        >>> # (a,) = alertmanager_payload(alert, alias="champion")
        >>> # a["labels"]["alertname"], a["annotations"]["batch_id"] -> ('OdinOODSpike', 'b0')
    """
    sev = {**SEVERITIES, **(severities or {})}
    created = datetime.fromisoformat(alert.created_at)
    created = created if created.tzinfo else created.replace(tzinfo=timezone.utc)
    labels = {
        "alertname": _alertname(alert.rule),
        "model": alert.model_name,
        "version": alert.model_version,
        "alias": alias or "",
        "rule": alert.rule,
        "severity": sev.get(alert.rule, "warning"),
    }
    p_value = "" if alert.p_value is None else f"{alert.p_value:.3g}"
    annotations = {
        "summary": (
            f"{alert.model_name} v{alert.model_version}: OOD rate {alert.observed_rate:.1%} "
            f"vs expected {alert.expected_rate:.1%}"
            + (" (back to normal)" if alert.status == "resolved" else "")
        ),
        "description": alert.message,
        "ood_rate": f"{alert.observed_rate:.6g}",
        "expected_rate": f"{alert.expected_rate:.6g}",
        "p_value": p_value,
        "statistic": f"{alert.statistic:.6g}",
        "n_images": str(alert.n_images),
        "n_ood": str(alert.n_ood),
        "batch_id": alert.batch_ids[-1],
        "report_path": alert.report_path or "",
        "calibration_sha256": alert.calibration_sha256,
    }
    body: dict[str, Any] = {"labels": labels, "annotations": annotations}
    url = generator_url or (f"file://{alert.report_path}" if alert.report_path else None)
    if url:
        body["generatorURL"] = url
    if alert.status == "resolved":
        body["startsAt"] = body["endsAt"] = _rfc3339(created)
    else:
        sent = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
        body["startsAt"] = _rfc3339(created)
        body["endsAt"] = _rfc3339(max(created, sent) + timedelta(seconds=hold))
    return [body]


class AlertmanagerNotifier:
    """Posts fired and resolved rules to Alertmanager's ``/api/v2/alerts``.

    Args:
        url: Alertmanager's base URL, e.g. ``http://127.0.0.1:9093``.
        alias: Registry alias of the monitored model (a label).
        severities: ``severity`` per rule (default :data:`SEVERITIES`).
        hold: Seconds a fired alert stays active without a resolution.
        timeout: Seconds per attempt.
        backoff: Base of the outbox's per-row retry delay (seconds).
        name: Outbox key.

    Example:
        >>> AlertmanagerNotifier("http://127.0.0.1:9093").endpoint
        'http://127.0.0.1:9093/api/v2/alerts'
    """

    #: The outbox gives it resolutions too, and strictly oldest first.
    wants_resolutions = True
    in_order = True

    def __init__(
        self,
        url: str,
        *,
        alias: str | None = None,
        severities: dict[str, str] | None = None,
        hold: float = 86_400.0,
        timeout: float = 5.0,
        backoff: float = 1.0,
        name: str = "alertmanager",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"Expected Alertmanager's http(s):// base URL, e.g. http://127.0.0.1:9093, "
                f"but got {url!r}."
            )
        if timeout <= 0 or backoff < 0 or hold <= 0:
            raise ConfigError(
                "Expected timeout > 0, backoff >= 0, hold > 0 but got "
                f"{timeout}, {backoff}, {hold}."
            )
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"
        self.alias = alias
        self.severities = dict(severities or {})
        self.hold = float(hold)
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.name = name

    def send_once(self, alert: Alert, timeout: float | None = None) -> None:
        """One POST, no retry (the outbox schedules retries); raise on failure.

        Raises:
            DeliveryError: No 2xx answer (connection refused, timeout, HTTP error).
        """
        limit = self.timeout if timeout is None else max(0.05, min(self.timeout, timeout))
        payload = alertmanager_payload(
            alert, alias=self.alias, severities=self.severities, hold=self.hold
        )
        req = urllib.request.Request(
            self.endpoint,
            data=json.dumps(payload).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with _NO_REDIRECTS.open(req, timeout=limit) as resp:
                if 200 <= resp.status < 300:
                    return
                why = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        raise DeliveryError(
            f"Expected a 2xx answer from Alertmanager at {self.endpoint} but got {why}; "
            "the alert stays in the outbox."
        )

    def send(self, alert: Alert) -> None:
        """Same as :meth:`send_once` with the configured timeout."""
        self.send_once(alert)

    def record_batch(self, record: BatchRecord) -> None:
        """No-op (resolutions come through the outbox)."""
