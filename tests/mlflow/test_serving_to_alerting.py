"""End to end: `mlflow models serve` (2 workers) → inference log → monitor → alerts.

Real images: the pretrained ResNet-20 with CIFAR-10 test images, then a spike of Tiny
ImageNet crops, when ../shared/data is present; else the demo's detector (a small CNN
trained on scikit-learn's digits, calibrated on the demo's quick grid) with digits, then a
spike of the demo's real-photo crops. The model is served with 2 workers and a bounded
client. The served model logs every scored row
(ODIN_INFERENCE_LOG); `odin-monitor monitor --inference-log` cuts the log into
batches; the spike's alert reaches a real Alertmanager and its webhook receiver, and
a real Prometheus scraping /metrics with the SHIPPED rules (examples/prometheus/
odin_rules.yml, only their `for:` durations shortened) fires ``OdinOODRateHigh``.
Servers on 127.0.0.1 (free ports), stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import mlflow_plugin
from mlflow_plugin.serving import running_server
from odin_monitor.demo_data import calibrate_demo, digits_demo, stream
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

# What the client sends, 20 images a request: the demo's held-out "production"
# digits (like the calibration set), then a spike of the demo's photo crops only.
ID_REQUESTS, OOD_REQUESTS, PER_REQUEST = 10, 5, 20
RULES = Path(__file__).resolve().parents[2] / "examples" / "prometheus" / "odin_rules.yml"
PROMETHEUS = shutil.which("prometheus")


def _cifar_model(folder: Path, data_dir: Path) -> Path:
    """ResNet-20 on real CIFAR-10 images, the spike real Tiny ImageNet crops."""
    from odin_monitor import calibrate
    from odin_monitor.data import load_images
    from odin_monitor.modelref import model_from_reference
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

    model = model_from_reference("odin_monitor.models:resnet20", data_dir / "cifar10_resnet20.pt")
    x_id = load_images(data_dir / "cifar10_test_lossless.npz")
    x_ood = load_images(data_dir / "ood_tinyimagenet_crop.npz", limit=OOD_REQUESTS * PER_REQUEST)
    result = calibrate(model, x_id[:500], normalization=CIFAR_RESNET_NORMALIZATION,
                       temperatures=[1, 1000], epsilons=[0.0, 0.0014])  # fmt: skip
    path = folder / "model"
    mlflow_plugin.save_model(result, path, input_kind="tensor")
    prod = x_id[500 : 500 + ID_REQUESTS * PER_REQUEST]
    batches = np.concatenate([prod, x_ood]).reshape(-1, PER_REQUEST, *x_id.shape[1:])
    np.save(folder / "requests.npy", batches)
    return path


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real images: CIFAR-10 + Tiny ImageNet with ResNet-20 when ../shared/data is there,
    else the offline demo's detector, trained and calibrated by the demo's own functions."""
    from tests.conftest import SHARED_DATA

    folder = tmp_path_factory.mktemp("odin-e2e")
    if (SHARED_DATA / "cifar10_resnet20.pt").is_file():
        return _cifar_model(folder, SHARED_DATA)
    data = digits_demo(seed=0)
    result = calibrate_demo(data)
    path = folder / "model"
    mlflow_plugin.save_model(result, path, input_kind="tensor")
    batches = stream(data, ID_REQUESTS + OOD_REQUESTS, PER_REQUEST, ID_REQUESTS, 1.0, seed=0)
    np.save(folder / "requests.npy", np.stack(batches))
    return path


def post(url: str, x) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps({"inputs": x.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def serve_and_send(model: Path, folder: Path, tmp_path: Path, monkeypatch) -> pd.DataFrame:
    requests = np.load(model.parent / "requests.npy")
    monkeypatch.setenv("ODIN_INFERENCE_LOG", str(folder))
    monkeypatch.setenv("ODIN_MODEL_NAME", "odin-e2e")
    with running_server(model, workers=2, log_file=tmp_path / "serve.log", timeout=180) as server:
        for x in requests:
            assert len(post(f"{server.url}/invocations", x)["predictions"]) == PER_REQUEST
        want = len(requests) * PER_REQUEST
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = list_parts(folder)
            if sum(len(read_part(folder / p.name)) for p in parts) >= want:
                break
            time.sleep(0.2)
    rows = pd.concat([read_part(folder / p.name) for p in list_parts(folder)], ignore_index=True)
    assert len(rows) == want and rows["request_id"].nunique() == len(requests)
    return rows


def shortened_rules(folder: Path) -> Path:
    """The shipped rules with every ``for:`` at 1s; the expressions are the shipped ones."""
    shipped = yaml.safe_load(RULES.read_text())
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"])
                rule["for"] = "1s"
    for g0, g1 in zip(shipped["groups"], rules["groups"], strict=True):
        for r0, r1 in zip(g0["rules"], g1["rules"], strict=True):
            assert {k: v for k, v in r0.items() if k != "for"} == {
                k: v for k, v in r1.items() if k != "for"
            }
    path = folder / "odin_rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def start_prometheus(folder: Path, metrics_port: int, am_url: str):
    folder.mkdir(parents=True, exist_ok=True)
    rules = shortened_rules(folder)
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{rules.name}]\n"
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


def query(prom_url: str, expr: str) -> list[dict]:
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]


def firing(prom_url: str) -> set[str]:
    body = json.loads(urllib.request.urlopen(f"{prom_url}/api/v1/alerts", timeout=5).read())
    return {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"}


def wait_until(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout}s: {what}")


def move_in(src: Path, dst: Path) -> None:
    """Hand the served model's log parts to the monitor's folder, each atomically."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in list_parts(src):
        tmp = dst / f".{part.name}.tmp"
        shutil.copyfile(src / part.name, tmp)
        os.replace(tmp, dst / part.name)


@pytest.mark.skipif(
    alertmanager_binary() is None or PROMETHEUS is None,
    reason="needs the Debian packages prometheus and prometheus-alertmanager",
)
def test_served_predictions_reach_alertmanager_and_prometheus(
    demo_model: Path, tracking: str, tmp_path: Path, monkeypatch
) -> None:
    served = tmp_path / "ilog-served"
    rows = serve_and_send(demo_model, served, tmp_path, monkeypatch)
    # The requests were sent one after the other: their order is the timestamps' order.
    in_order = rows.sort_values("timestamp", kind="stable")["request_id"].unique()
    spike = rows["request_id"].isin(in_order[-OOD_REQUESTS:])
    assert rows.loc[~spike, "is_ood"].mean() < 0.2  # digits: mostly in distribution
    assert rows.loc[spike, "is_ood"].mean() > 0.5  # photo crops: the spike is in the log

    receiver = JsonReceiver()
    am, am_url = start_alertmanager(tmp_path / "am", receiver.url)
    metrics_port = free_port()
    prom, prom_url = start_prometheus(tmp_path / "prom", metrics_port, am_url)
    folder = tmp_path / "ilog"
    folder.mkdir()
    args = [
        "monitor", "--inference-log", str(folder), "--window", "100",
        "--model-uri", str(demo_model), "--monitor-dir", str(tmp_path / "mon"),
        "--tracking-uri", tracking, "--device", "cpu",
        "--metrics-port", str(metrics_port), "--alertmanager-url", am_url,
        "--max-scans", "30", "--interval", "1",
    ]  # fmt: skip
    monitor_log = open(tmp_path / "monitor.log", "wb")  # noqa: SIM115
    monitor = subprocess.Popen(
        [sys.executable, "-c", "from odin_monitor.cli import main; main()", *args],
        stdout=monitor_log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Prometheus holds the monitored model's counters at 0 before the first batch,
        # so increase() counts that batch too.
        scored = "odin_images_scored_total"
        wait_until(lambda: len(query(prom_url, f"{scored} == 0")) == 10, 90, "zero series", monitor)
        move_in(served, folder)
        # The shipped 15-minute OOD-rate rule fires in Prometheus (while the monitor
        # still serves /metrics) and reaches Alertmanager.
        wait_until(lambda: "OdinOODRateHigh" in firing(prom_url), 60, "OdinOODRateHigh", monitor)
        assert "OdinNoBatches" not in firing(prom_url)
        fired = receiver.wait_for(
            lambda b: any(a["labels"]["alertname"] == "OdinOODRateHigh" for a in b["alerts"])
        )
        alert = next(a for a in fired["alerts"] if a["labels"]["alertname"] == "OdinOODRateHigh")
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["window"] == "15m"
        assert monitor.wait(timeout=120) == 3, (tmp_path / "monitor.log").read_text()[-3000:]
        # 300 rows: 3 windows of exactly 100, each processed once, the spike last.
        from odin_monitor.monitoring import ScoreLog

        log = ScoreLog(tmp_path / "mon" / "scores.db")
        records = [log.get_batch(b) for b in log.batch_ids()]
        assert [r.n_images for r in records] == [100, 100, 100]
        # Every logged row in exactly one window (windows follow the log's part order, and
        # two workers' parts overlap in time, so the spike's rows may spread over windows;
        # the spike alert below is what must follow).
        assert sum(r.n_ood for r in records) == int(rows["is_ood"].sum())
        fired = receiver.wait_for(
            lambda b: any(a["labels"]["alertname"] == "OdinOODSpike" for a in b["alerts"])
        )
        assert fired["status"] == "firing"
    finally:
        stop_process(monitor)
        monitor_log.close()
        stop_process(prom)
        stop_process(am)
        receiver.close()
