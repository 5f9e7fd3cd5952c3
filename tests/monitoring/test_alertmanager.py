"""Alerts through a real Alertmanager on 127.0.0.1: fired, retried, silenced, resolved."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from odin_monitor.monitoring import BinomialSpikeRule, MonitorConfig, process_batch
from odin_monitor.monitoring.alertmanager import AlertmanagerNotifier, alertmanager_payload
from odin_monitor.monitoring.alerts import resolutions
from odin_monitor.monitoring.delivery import deliver_pending
from tests.monitoring.helpers import (
    JsonReceiver,
    alertmanager_binary,
    free_port,
    make_alert,
    make_scores,
    start_alertmanager,
    stop_process,
)


def test_payload_labels_annotations_and_times():
    alert = replace(make_alert(), created_at="2026-01-02T03:04:05+00:00")
    (a,) = alertmanager_payload(alert, alias="champion", now=0.0, hold=60)
    assert a["labels"] == {
        "alertname": "OdinOODSpike",
        "model": "m",
        "version": "1",
        "alias": "champion",
        "rule": "binomial_spike",
        "severity": "critical",
    }
    ann = a["annotations"]
    assert ann["batch_id"] == "b0" and ann["report_path"] == "/r.html"
    assert float(ann["ood_rate"]) == 0.2 and float(ann["expected_rate"]) == 0.05
    assert float(ann["p_value"]) == 1e-6
    assert a["startsAt"] == "2026-01-02T03:04:05Z" and a["endsAt"] == "2026-01-02T03:05:05Z"
    (r,) = alertmanager_payload(replace(alert, status="resolved"))
    assert r["endsAt"] == r["startsAt"] == "2026-01-02T03:04:05Z"
    cusum = alertmanager_payload(replace(alert, rule="cusum", p_value=None))[0]
    assert cusum["labels"]["alertname"] == "OdinOODCusum" and cusum["annotations"]["p_value"] == ""


def test_each_rule_resolves_on_the_first_normal_batch(log, model):
    log.write_batch("a", model, make_scores(100, 0.05, model))
    log.write_batch("b", model, make_scores(100, 0.5, model, seed=1))
    rule = BinomialSpikeRule(alpha=0.01)
    assert resolutions([rule], log.history(model.name)) == []  # still firing
    log.write_batch("c", model, make_scores(100, 0.05, model, seed=2))
    (r,) = resolutions([rule], log.history(model.name))
    assert r.status == "resolved" and r.batch_ids == ("c",)
    log.write_batch("d", model, make_scores(100, 0.05, model, seed=3))
    assert resolutions([rule], log.history(model.name)) == []  # resolved once


def test_resolutions_reach_only_the_notifiers_that_want_them(tmp_path, log, model):
    from odin_monitor.monitoring import JsonlNotifier

    am = AlertmanagerNotifier(f"http://127.0.0.1:{free_port()}", timeout=0.2)
    config = MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(JsonlNotifier(tmp_path / "a.jsonl"), am),
        delivery_budget=0.0,
    )
    ref = make_scores(500, 0.05, model, seed=9)
    for i, rate in enumerate([0.05, 0.5, 0.05]):
        res = process_batch(
            model,
            config,
            scores=make_scores(100, rate, model, seed=i),
            batch_id=f"b{i}",
            reference=ref,
        )
        assert all(a.status == "firing" for a in res.alerts)
    rows = [(n, p["status"]) for _, n, p in log.pending_deliveries()]
    assert ("alertmanager", "resolved") in rows and ("jsonl", "resolved") not in rows


ALERTMANAGER = alertmanager_binary()


def am_alerts(base: str) -> list[dict]:
    return json.loads(urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5).read())


def silence(base: str, **matchers: str) -> str:
    now = datetime.now(timezone.utc)
    body = {
        "matchers": [
            {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()
        ],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "test",
        "comment": "maintenance",
    }
    req = urllib.request.Request(
        f"{base}/api/v2/silences",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(req, timeout=5).read())["silenceID"]


@pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="Alertmanager not installed (Debian package prometheus-alertmanager)",
)
def test_real_alertmanager_fires_retries_silences_and_resolves(tmp_path, log, model):
    receiver = JsonReceiver()
    port = free_port()
    am = AlertmanagerNotifier(f"http://127.0.0.1:{port}", alias="champion", timeout=2, backoff=0)
    config = MonitorConfig(
        log=log,
        quarantine_dir=tmp_path / "q",
        rules=(BinomialSpikeRule(alpha=0.01),),
        notifiers=(am,),
        delivery_budget=1.0,
    )
    ref = make_scores(500, 0.05, model, seed=9)

    def batch(bid: str, rate: float, seed: int, m=model):
        return process_batch(
            m, config, scores=make_scores(100, rate, m, seed=seed), batch_id=bid, reference=ref
        )

    batch("calm", 0.05, 0)
    spike = batch("spike", 0.5, 1)  # Alertmanager is down: the alert waits in the outbox
    assert spike.alerts and spike.undelivered == 1
    proc, base = start_alertmanager(tmp_path / "am", receiver.url, port=port)
    try:
        assert deliver_pending(log, [am]) == (1, 0)  # retried once it is up
        fired = receiver.wait_for(lambda b: b["status"] == "firing")
        (alert,) = fired["alerts"]
        assert fired["receiver"] == "hook" and fired["version"] == "4"
        assert alert["labels"]["alertname"] == "OdinOODSpike"
        assert alert["labels"]["alias"] == "champion" and alert["labels"]["model"] == model.name
        assert alert["annotations"]["batch_id"] == "spike"
        assert float(alert["annotations"]["ood_rate"]) == 0.5

        batch("normal-again", 0.05, 2)  # the rule's resolution goes out
        resolved = receiver.wait_for(lambda b: b["status"] == "resolved")
        assert resolved["alerts"][0]["annotations"]["batch_id"] == "normal-again"
        assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

        # A silence set in Alertmanager holds the next spike back from the receiver.
        other = replace(model, version="4")
        silence(base, alertname="OdinOODSpike", version="4")
        batch("calm-v4", 0.05, 3, other)
        assert batch("spike-v4", 0.5, 4, other).alerts
        deadline = time.monotonic() + 15
        state = None
        while time.monotonic() < deadline and state != "suppressed":
            found = [a for a in am_alerts(base) if a["labels"]["version"] == "4"]
            state = found[0]["status"]["state"] if found else None
            time.sleep(0.2)
        assert state == "suppressed" and found[0]["status"]["silencedBy"]
        time.sleep(2.5)  # > group_wait + group_interval: it would have been sent by now
        assert not [
            b for b in receiver.bodies if any(a["labels"]["version"] == "4" for a in b["alerts"])
        ]
    finally:
        stop_process(proc)
        receiver.close()
