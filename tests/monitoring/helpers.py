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

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
