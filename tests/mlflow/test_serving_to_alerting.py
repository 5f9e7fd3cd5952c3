"""End to end: `mlflow models serve` (2 workers) → inference log → monitor → alerts.

The served model logs every scored row (ODIN_INFERENCE_LOG); `odin-monitor monitor
--inference-log` cuts the log into batches; the spike's alert reaches a real
Alertmanager and its webhook receiver, and a real Prometheus scraping /metrics
fires a rule. Tiny model, bounded client, servers on 127.0.0.1 stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from odin_mlflow_testing import images

from mlflow_plugin.serving import running_server
from odin_monitor.cli import main
from odin_monitor.inference_log import list_parts, read_part
from tests.monitoring.helpers import (
    JsonReceiver,
    alertmanager_binary,
    free_port,
    start_alertmanager,
    stop_process,
    wait_http,
)

pytestmark = pytest.mark.slow

# What the client sends: in-distribution images like the calibration set, then a
# spike of bright images the tiny detector flags (100% OOD), 20 images a request.
ID_REQUESTS, OOD_REQUESTS, PER_REQUEST = 10, 5, 20


def post(url: str, x) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps({"inputs": x.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def serve_and_send(model: Path, folder: Path, tmp_path: Path, monkeypatch) -> pd.DataFrame:
    monkeypatch.setenv("ODIN_INFERENCE_LOG", str(folder))
    monkeypatch.setenv("ODIN_MODEL_NAME", "odin-e2e")
    with running_server(model, workers=2, log_file=tmp_path / "serve.log", timeout=180) as server:
        for i in range(ID_REQUESTS + OOD_REQUESTS):
            x = images(PER_REQUEST, seed=100 + i).numpy()
            if i >= ID_REQUESTS:
                x = 0.8 + 0.2 * x
            assert len(post(f"{server.url}/invocations", x)["predictions"]) == PER_REQUEST
        want = (ID_REQUESTS + OOD_REQUESTS) * PER_REQUEST
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = list_parts(folder)
            if sum(len(read_part(folder / p.name)) for p in parts) >= want:
                break
            time.sleep(0.2)
    rows = pd.concat([read_part(folder / p.name) for p in list_parts(folder)], ignore_index=True)
    assert len(rows) == want and rows["request_id"].nunique() == ID_REQUESTS + OOD_REQUESTS
    return rows


PROMETHEUS = shutil.which("prometheus")


def start_prometheus(folder: Path, metrics_port: int, am_url: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yml").write_text(
        "groups:\n  - name: odin-e2e\n    interval: 1s\n    rules:\n"
        "      - alert: OdinBatchSpike\n"
        "        expr: odin_batch_p_value < 0.01 and odin_batch_ood_rate > odin_expected_ood_rate\n"
        "        labels: {severity: critical}\n"
    )
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am_url[7:]}']}}]}}]}}\n"
        "scrape_configs:\n  - job_name: odin\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    port = free_port()
    log = open(folder / "prometheus.log", "wb")  # noqa: SIM115  # closed with the process
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/-/ready", proc=proc, timeout=60)
    except AssertionError:
        stop_process(proc)
        raise
    return proc, base


@pytest.mark.skipif(
    alertmanager_binary() is None or PROMETHEUS is None,
    reason="needs the Debian packages prometheus and prometheus-alertmanager",
)
def test_served_predictions_reach_alertmanager_and_prometheus(
    saved_model: Path, tracking: str, tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "ilog"
    rows = serve_and_send(saved_model, folder, tmp_path, monkeypatch)
    assert rows["is_ood"].iloc[-PER_REQUEST:].mean() > 0.5  # the spike is in the log

    receiver = JsonReceiver()
    am, am_url = start_alertmanager(tmp_path / "am", receiver.url)
    metrics_port = free_port()
    prom, prom_url = start_prometheus(tmp_path / "prom", metrics_port, am_url)
    try:
        args = [
            "monitor", "--inference-log", str(folder), "--window", "100",
            "--model-uri", str(saved_model), "--monitor-dir", str(tmp_path / "mon"),
            "--tracking-uri", tracking, "--device", "cpu",
            "--metrics-port", str(metrics_port), "--alertmanager-url", am_url,
            "--max-scans", "8", "--interval", "1",
        ]  # fmt: skip
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 3, result.output  # an alert fired
        # 300 rows: 3 windows of exactly 100, each processed once, the spike last.
        from odin_monitor.monitoring import ScoreLog

        log = ScoreLog(tmp_path / "mon" / "scores.db")
        records = [log.get_batch(b) for b in log.batch_ids()]
        assert [r.n_images for r in records] == [100, 100, 100]
        assert records[-1].n_ood > 50

        fired = receiver.wait_for(
            lambda b: any(a["labels"]["alertname"] == "OdinOODSpike" for a in b["alerts"])
        )
        assert fired["status"] == "firing"
        deadline = time.monotonic() + 30
        names: set[str] = set()
        while time.monotonic() < deadline and "OdinBatchSpike" not in names:
            body = json.loads(urllib.request.urlopen(f"{prom_url}/api/v1/alerts", timeout=5).read())
            names = {a["labels"]["alertname"] for a in body["data"]["alerts"]
                     if a["state"] == "firing"}  # fmt: skip
            time.sleep(0.5)
        assert "OdinBatchSpike" in names
        receiver.wait_for(
            lambda b: any(a["labels"]["alertname"] == "OdinBatchSpike" for a in b["alerts"])
        )
    finally:
        stop_process(prom)
        stop_process(am)
        receiver.close()
