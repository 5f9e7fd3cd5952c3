"""Start the real ``evidently ui`` on a workspace written by the pipeline and query it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
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
    model = replace(make_model(), epsilon=0.0014)
    cfg = MonitorConfig(
        log=ScoreLog(root / "scores.db"),
        quarantine_dir=root / "q",
        workspace_dir=root / "workspace",
        rules=(),
        notifiers=(),
    )
    reference = make_scores(400, 0.05, model, seed=99)
    frames = [make_scores(200, rate, model, seed=i) for i, rate in enumerate(RATES)]
    for i, frame in enumerate(frames):
        process_batch(
            model,
            cfg,
            scores=frame,
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
        yield base, model, frames
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
    base, model, _ = ui
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


def _series(base: str, pid: str, panel: dict) -> dict[tuple[str, str], list]:
    """What the UI plots for a panel: ``{(legend, label): values}`` from its own filters."""
    filters = [
        {k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")} for v in panel["values"]
    ]
    reply = _post(f"{base}/api/v2/snapshots/{pid}/data_series_batch", {"series_filter": filters})
    return {
        (panel["values"][s["filter_index"]]["legend"], s["params"].get("label", "")): s["values"]
        for s in reply["series"]
    }


def test_ui_dashboard_panels_plot_rate_reference_test_classes_and_size(ui):
    from scipy import stats

    base, model, frames = ui
    (project,) = [p for p in _get(f"{base}/api/projects") if p["name"] == model.name]
    pid = project["id"]
    panels = {p["title"]: p for p in _get(f"{base}/api/v2/dashboards/{pid}")["panels"]}
    n, p0, alpha = 200, 1 - model.tpr_target, 0.01
    critical = next(c for c in range(n + 2) if stats.binom.sf(c - 1, n, p0) <= alpha)
    rates = [f["is_ood"].sum() / len(f) for f in frames]

    line = _series(base, pid, panels["ODIN OOD rate per batch"])
    assert line[("OOD rate", "")] == pytest.approx(rates)
    assert line[("expected rate 1 − tpr_target", "expected_rate")] == pytest.approx([p0] * 3)
    assert line[("binomial test fails from", "critical_rate")] == pytest.approx([critical / n] * 3)

    failed = [
        stats.binomtest(int(f["is_ood"].sum()), n, p0, alternative="greater").pvalue <= alpha
        for f in frames
    ]
    assert failed == [False, False, True]  # 5%, 8%, 20% of 200 against 5%
    for title in ("ODIN binomial test per batch", "ODIN binomial test: batches shown"):
        test = _series(base, pid, panels[title])
        assert test[("FAIL", "FAIL")] == [float(x) for x in failed]
        assert test[("SUCCESS", "SUCCESS")] == [float(not x) for x in failed]
    assert panels["ODIN binomial test: batches shown"]["plot_params"] == {
        "plot_type": "pie",
        "aggregation": "sum",
    }

    by_class = _series(base, pid, panels["ODIN OOD rate per predicted class"])
    classes = sorted({int(c) for f in frames for c in f["predicted_class"]})
    assert sorted(int(label) for _, label in by_class) == classes
    for cls in classes:
        direct = [f.loc[f["predicted_class"] == cls, "is_ood"].mean() for f in frames]
        assert by_class[("class {{label}}", str(cls))] == pytest.approx(direct)

    size = _series(base, pid, panels["Batch size"])
    assert size == {("images", ""): [float(len(f)) for f in frames]}


def test_ui_project_description_and_text_panel_name_the_operating_point(ui):
    import re

    import numpy as np

    from tests.monitoring.helpers import K, T

    base, model, _ = ui
    (project,) = [p for p in _get(f"{base}/api/projects") if p["name"] == model.name]
    text = project["description"]
    dashboard = _get(f"{base}/api/v2/dashboards/{project['id']}")
    (panel,) = [p for p in dashboard["panels"] if p["title"] == "Monitored model"]
    assert panel["subtitle"] == text and panel["plot_params"] == {"plot_type": "text"}
    assert f"{model.name}, latest batch by version {model.version}:" in text
    found = re.search(
        r"T = ([0-9.eE+-]+), ε = ([0-9.eE+-]+), δ = ([0-9.eE+-]+) \(ODIN score S\) = "
        r"([0-9.eE+-]+) \(spread score T·log\(K·S\)\)",
        text,
    )
    assert found, text
    assert float(found.group(1)) == T and float(found.group(2)) == model.epsilon == 0.0014
    assert float(found.group(3)) == pytest.approx(model.threshold, rel=1e-5)
    assert float(found.group(4)) == pytest.approx(T * np.log(K * model.threshold), rel=1e-5)
