from __future__ import annotations

import threading
import time

from odin_monitor.monitoring.delivery import deliver_pending
from odin_monitor.monitoring.notifiers import WebhookNotifier
from tests.monitoring.helpers import Hook, free_port, make_alert


def enqueue(log, notifier, n: int) -> list[str]:
    alerts = [make_alert(i) for i in range(n)]
    log.enqueue_alerts([(a.alert_id, a.rule, a.to_dict()) for a in alerts], [notifier.name])
    return [a.alert_id for a in alerts]


def test_dead_endpoint_keeps_alert_in_outbox_until_server_is_up(log):
    port = free_port()  # nothing listens here yet
    notifier = WebhookNotifier(
        f"http://127.0.0.1:{port}/alerts", retries=1, backoff=0.01, timeout=1.0
    )
    alert = make_alert()
    log.enqueue_alerts([(alert.alert_id, alert.rule, alert.to_dict())], [notifier.name])
    assert deliver_pending(log, [notifier]) == (0, 1)
    assert [r[0] for r in log.pending_deliveries()] == ["a0"]
    server = Hook(port=port)
    time.sleep(0.1)  # past the retry time (backoff 0.01 s)
    try:
        assert deliver_pending(log, [notifier]) == (1, 0)
        assert server.received[0]["alert_id"] == "a0"
        assert log.pending_deliveries() == []
        assert deliver_pending(log, [notifier]) == (0, 0)  # delivered once
    finally:
        server.close()


def test_dead_endpoint_costs_one_attempt_per_pass_however_long_the_outbox(log):
    port = free_port()  # nothing listens
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/a", retries=3, backoff=0.5)
    enqueue(log, notifier, 5)
    assert deliver_pending(log, [notifier]) == (0, 1)  # the other 4 wait for the next pass
    assert sorted(r["attempts"] for r in log.outbox()) == [0, 0, 0, 0, 1]
    row = next(r for r in log.outbox() if r["attempts"])
    assert row["next_attempt_at"] > time.time()  # backoff lives in the row, not in a sleep
    assert deliver_pending(log, [notifier]) == (0, 1)  # the failed row is not due: another
    assert sorted(r["attempts"] for r in log.outbox()) == [0, 0, 0, 1, 1]
    server = Hook(port=port)
    try:
        time.sleep(0.8)  # past both retry times (0.5 s)
        assert deliver_pending(log, [notifier]) == (5, 0)
        assert sorted(server.posts) == [f"a{i}" for i in range(5)]  # each exactly once
        assert server.keys == server.posts  # Idempotency-Key: the alert id
        assert deliver_pending(log, [notifier]) == (0, 0)
    finally:
        server.close()


def test_budget_bounds_a_pass_and_cuts_the_attempt_timeout(log):
    server = Hook(delay=3.0)
    notifier = WebhookNotifier(server.url, timeout=30.0)
    try:
        enqueue(log, notifier, 3)
        start = time.monotonic()
        assert deliver_pending(log, [notifier], budget=0.5) == (0, 1)
        assert time.monotonic() - start < 2.5  # not 3 x 30 s
        (row,) = [r for r in log.outbox() if r["attempts"]]
        assert "timed out" in row["last_error"]
    finally:
        server.close()


def test_delivered_row_is_marked_once_and_a_second_drain_skips_a_claimed_row(log, hook):
    notifier = WebhookNotifier(hook.url)
    (alert_id,) = enqueue(log, notifier, 1)
    assert log.claim_delivery(alert_id, "webhook", lease=60.0)
    assert deliver_pending(log, [notifier]) == (0, 0)  # held by another drain: not sent
    assert hook.posts == []
    assert log.mark_delivery(alert_id, "webhook") is True
    assert log.mark_delivery(alert_id, "webhook") is False  # a success is recorded once
    (row,) = log.outbox()
    assert (row["status"], row["attempts"]) == ("delivered", 1)


def test_concurrent_drains_post_each_alert_once(log):
    server = Hook(delay=0.3)
    notifier = WebhookNotifier(server.url, timeout=10.0)
    try:
        ids = enqueue(log, notifier, 4)
        threads = [
            threading.Thread(target=deliver_pending, args=(log, [notifier])) for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(server.posts) == sorted(ids)
        assert {(r["status"], r["attempts"]) for r in log.outbox()} == {("delivered", 1)}
    finally:
        server.close()


def test_flaky_endpoint_is_retried_on_a_later_pass_and_posted_once_after_success(log, hook):
    hook.statuses = [500]
    notifier = WebhookNotifier(hook.url, backoff=0.05)
    enqueue(log, notifier, 1)
    assert deliver_pending(log, [notifier]) == (0, 1)
    time.sleep(0.2)
    assert deliver_pending(log, [notifier]) == (1, 0)
    assert deliver_pending(log, [notifier]) == (0, 0)
    assert hook.posts == ["a0", "a0"] and [r["alert_id"] for r in hook.received] == ["a0"]


def test_background_drain_returns_within_budget_and_finishes_later(log):
    from odin_monitor.monitoring.delivery import deliver_in_background, flush_deliveries

    server = Hook(delay=2.0)
    notifier = WebhookNotifier(server.url, timeout=20.0)
    try:
        enqueue(log, notifier, 2)
        start = time.monotonic()
        status = deliver_in_background(log, [notifier], budget=0.2)
        assert time.monotonic() - start < 1.5
        assert status.running and status.pending == 2
        assert flush_deliveries(30.0)
        assert log.pending_deliveries() == []
        assert sorted(server.posts) == ["a0", "a1"]  # the in-flight POST was not repeated
    finally:
        server.close()
