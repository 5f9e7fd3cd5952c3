"""Shared test helpers (importable from subprocesses as tests.monitoring.helpers)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.schema import ModelRef

T, K = 1000.0, 10


def make_model() -> ModelRef:
    return ModelRef(
        name="resnet-cifar",
        version="3",
        calibration_sha256="c0ffee" * 10 + "beef",
        threshold=0.10045,
        threshold_spread=float(T * np.log(K * 0.10045)),
        tpr_target=0.95,
        temperature=T,
        n_classes=K,
    )


def make_scores(n: int, ood_rate: float, model: ModelRef, seed: int = 0) -> pd.DataFrame:
    """Scores whose share below the threshold is exactly round(n * ood_rate)."""
    rng = np.random.default_rng(seed)
    n_ood = round(n * ood_rate)
    below = model.threshold - rng.uniform(1e-6, 3e-4, n_ood)
    above = model.threshold + rng.uniform(1e-6, 1.5e-3, n - n_ood)
    odin = rng.permutation(np.concatenate([below, above]))
    return pd.DataFrame(
        {
            "odin_score": odin,
            "spread_score": T * np.log(K * odin),
            "msp": rng.uniform(0.3, 1.0, n),
            "predicted_class": rng.integers(0, 4, n).astype("int64"),
            "is_ood": odin < model.threshold,
        }
    )


def fake_scorer_for(model: ModelRef):
    """Deterministic scorer: images darker than 0.2 on average are OOD."""

    def scorer(images: np.ndarray) -> pd.DataFrame:
        means = images.reshape(len(images), -1).mean(axis=1).astype(float)
        odin = model.threshold + (means - 0.2) * 1e-3
        return pd.DataFrame(
            {
                "odin_score": odin,
                "spread_score": T * np.log(K * odin),
                "msp": 0.5 + 0.5 * means,
                "predicted_class": (means * 10).astype("int64") % 4,
                "is_ood": odin < model.threshold,
            }
        )

    scorer.calls = 0  # type: ignore[attr-defined]

    def counting(images: np.ndarray) -> pd.DataFrame:
        counting.calls += 1  # type: ignore[attr-defined]
        return scorer(images)

    counting.calls = 0  # type: ignore[attr-defined]
    return counting


def make_alert(i: int = 0) -> Alert:
    return Alert(
        alert_id=f"a{i}",
        rule="binomial_spike",
        model_name="m",
        model_version="1",
        calibration_sha256="ab" * 32,
        batch_ids=(f"b{i}",),
        observed_rate=0.2,
        expected_rate=0.05,
        n_images=100,
        n_ood=20,
        statistic=20.0,
        p_value=1e-6,
        threshold=0.01,
        report_path="/r.html",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(port: int, handler) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A threading HTTP server on 127.0.0.1:``port``, serving from a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def stop_http(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


class Hook:
    """A real local HTTP server; answers the scripted status codes, then 200."""

    def __init__(self, port: int | None = None, statuses=(), delay: float = 0.0):
        self.received: list[dict] = []
        self.posts: list[str] = []  # alert id of every POST, answered 2xx or not
        self.keys: list[str | None] = []  # Idempotency-Key headers
        self.delay = delay  # seconds before answering (a slow endpoint)
        self.statuses = list(statuses)
        self.port = port or free_port()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append(json.loads(body)["alert_id"])
                hook.keys.append(self.headers.get("Idempotency-Key"))
                if hook.delay:
                    time.sleep(hook.delay)
                code = hook.statuses.pop(0) if hook.statuses else 200
                if code == 200:
                    hook.received.append(json.loads(body))
                self.send_response(code)
                if code in (301, 302, 303, 307):
                    self.send_header("Location", hook.url)
                self.end_headers()

            def do_GET(self):  # where urllib would follow a redirect, body dropped
                hook.received.append({"GET": self.path})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server, self.thread = serve_in_thread(self.port, Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def close(self):
        stop_http(self.server)


class JsonReceiver:
    """A local HTTP server keeping every JSON body POSTed to it (an Alertmanager webhook)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.port = free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server, self.thread = serve_in_thread(self.port, Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if predicate(body):
                    return body
            time.sleep(0.1)
        raise AssertionError(f"no matching body within {timeout}s; got {self.bodies}")

    def close(self) -> None:
        stop_http(self.server)


def alertmanager_binary() -> str | None:
    import shutil

    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def wait_http(url: str, timeout: float = 30.0, proc=None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout}s")


def start_alertmanager(folder, webhook_url: str, port: int | None = None):
    """A real Alertmanager on 127.0.0.1 (no cluster), routing everything to ``webhook_url``.

    Returns ``(process, base_url)``; stop it with :func:`stop_process`.
    """
    import subprocess
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alertmanager.yml").write_text(
        "route:\n  receiver: hook\n  group_by: [alertname, model, version]\n"
        "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: hook\n    webhook_configs:\n"
        f"      - url: {webhook_url}\n        send_resolved: true\n"
    )
    port = port or free_port()
    proc = subprocess.Popen(
        [
            alertmanager_binary(),
            f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=open(folder / "alertmanager.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/-/ready", proc=proc)
    except AssertionError:
        stop_process(proc)
        raise AssertionError((folder / "alertmanager.log").read_text()[-2000:]) from None
    return proc, base


def stop_process(proc, timeout: float = 10.0) -> None:
    """Stop a server we started, by its PID (SIGTERM, then SIGKILL)."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
