"""Start the real ``evidently ui`` on a workspace written by the pipeline and query it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from odin_monitor.monitoring import MonitorConfig, ScoreLog, process_batch
from odin_monitor.monitoring.reports import PANEL_TITLE
from tests.monitoring.helpers import free_port, make_model, make_scores

RATES = [0.05, 0.08, 0.2]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _post(url: str, payload: dict):
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    model = make_model()
    cfg = MonitorConfig(
        log=ScoreLog(root / "scores.db"),
        quarantine_dir=root / "q",
        workspace_dir=root / "workspace",
        rules=(),
        notifiers=(),
    )
    reference = make_scores(400, 0.05, model, seed=99)
    for i, rate in enumerate(RATES):
        process_batch(
            model,
            cfg,
            scores=make_scores(200, rate, model, seed=i),
            reference=reference,
            batch_id=f"batch-{i}",
            created_at=f"2024-06-0{i + 1}T12:00:00+00:00",
        )
    port = free_port()
    exe = Path(sys.executable).with_name("evidently")
    env = {**os.environ, "PYTHONPATH": ""}  # the UI must not need odin_monitor
    proc = subprocess.Popen(
        [
            str(exe),
            "ui",
            "--workspace",
            str(root / "workspace"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(root),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/version")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.poll() is not None else ""
                    pytest.fail(f"evidently ui did not start: {err[-2000:]}")
                time.sleep(0.3)
        yield base, model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def test_ui_serves_project_snapshots_and_ood_rate_series(ui):
    base, model = ui
    projects = _get(f"{base}/api/projects")
    (project,) = [p for p in projects if p["name"] == model.name]
    pid = project["id"]
    snapshots = _get(f"{base}/api/projects/{pid}/snapshots")
    assert len(snapshots) == len(RATES)
    series = _post(
        f"{base}/api/v2/snapshots/{pid}/data_series_batch",
        {
            "series_filter": [
                {
                    "tags": [],
                    "metadata": {},
                    "metric": "evidently:metric_v2:OdinOODRate",
                    "metric_labels": {},
                }
            ]
        },
    )
    (s,) = series["series"]
    assert s["metric_type"] == "evidently:metric_v2:OdinOODRate"
    assert s["values"] == pytest.approx(RATES)
    dashboard = _get(f"{base}/api/v2/dashboards/{pid}")
    assert PANEL_TITLE in json.dumps(dashboard)
