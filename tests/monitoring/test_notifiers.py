from __future__ import annotations

import logging

import pytest

from odin_monitor.monitoring.errors import DeliveryError
from odin_monitor.monitoring.notifiers import LogNotifier, MlflowNotifier, WebhookNotifier
from tests.monitoring.helpers import make_alert


def test_webhook_delivers(hook):
    WebhookNotifier(hook.url, retries=0).send(make_alert())
    assert hook.received[0]["alert_id"] == "a0"
    assert hook.received[0]["batch_ids"] == ["b0"]


def test_webhook_retries_after_server_errors(hook):
    hook.statuses = [500, 500]
    WebhookNotifier(hook.url, retries=2, backoff=0.01).send(make_alert())
    assert len(hook.received) == 1 and hook.statuses == []


def test_webhook_gives_up_after_retries(hook):
    hook.statuses = [500, 503, 500]
    with pytest.raises(DeliveryError, match="Expected a 2xx answer"):
        WebhookNotifier(hook.url, retries=1, backoff=0.01).send(make_alert())
    assert hook.received == []


def test_log_notifier_writes_a_line(caplog):
    with caplog.at_level(logging.WARNING, logger="odin_monitor.alerts"):
        LogNotifier().send(make_alert())
    assert "ODIN ALERT [binomial_spike]" in caplog.text


def test_webhook_rejects_bad_url():
    with pytest.raises(ValueError, match="Expected an http"):
        WebhookNotifier("ftp://x")


def test_mlflow_notifier_still_imports_from_notifiers():
    # It moved to mlflow_runs (tested in test_mlflow_runs.py); old imports keep working.
    from odin_monitor.monitoring import mlflow_runs

    assert MlflowNotifier is mlflow_runs.MlflowNotifier


def test_webhook_redirect_is_a_failed_delivery(hook):
    # Following a 301 would re-send the POST as a bodiless GET answered 200: alert lost.
    hook.statuses = [301, 301]
    with pytest.raises(DeliveryError, match="HTTP 301"):
        WebhookNotifier(hook.url, retries=1, backoff=0.01).send(make_alert())
    assert hook.received == []


# ------------------------------------------------- outbox: bounded, exactly once, background
