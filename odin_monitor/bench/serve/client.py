"""The HTTP side of the serving benchmark: requests, a bounded concurrent load, comparisons."""

from __future__ import annotations

import http.client
import json
import math
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "COMPARED_COLUMNS",
    "Outcome",
    "batches",
    "compare",
    "inprocess_seconds",
    "latency_percentile_ms",
    "load",
    "post",
    "predictions_frame",
    "request",
]

#: Score columns compared between served and in-process answers.
COMPARED_COLUMNS = ("odin_score", "spread_score", "msp")


def request(
    port: int, method: str, path: str, body: bytes | None, timeout: float
) -> tuple[int, bytes]:
    """One request on a fresh connection; status 0 and the error text when it raised."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as err:
        return 0, f"{type(err).__name__}: {err}".encode()
    finally:
        conn.close()


@dataclass(frozen=True)
class Outcome:
    """One request: latency (s), HTTP status (0 when it raised) and the error, if any."""

    latency_s: float
    status: int
    error: str | None


def post(port: int, body: bytes, timeout: float) -> tuple[Outcome, bytes]:
    """POST ``body`` to ``/invocations``, timed; the outcome and the answer's bytes."""
    t0 = time.perf_counter()
    status, data = request(port, "POST", "/invocations", body, timeout)
    latency = time.perf_counter() - t0
    error = None
    if status != 200:
        text = data[:300].decode(errors="replace")
        error = f"HTTP {status}: {text}" if status else text
    return Outcome(latency, status, error), data


def load(
    port: int,
    bodies: Sequence[bytes],
    n: int,
    concurrency: int,
    duration_limit_s: float,
    timeout: float,
) -> tuple[list[Outcome], float, bool]:
    """``n`` requests from ``concurrency`` threads; returns outcomes, wall time, early stop."""
    lock = threading.Lock()
    counter = {"next": 0}
    outcomes: list[Outcome] = []
    stopped = threading.Event()
    t0 = time.perf_counter()

    def worker() -> None:
        while True:
            with lock:
                i = counter["next"]
                if i >= n:
                    return
                if time.perf_counter() - t0 >= duration_limit_s:
                    stopped.set()
                    return
                counter["next"] = i + 1
            outcome, _ = post(port, bodies[i % len(bodies)], timeout)
            with lock:
                outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        for f in futures:
            f.result()
    wall = time.perf_counter() - t0
    return outcomes, wall, stopped.is_set()


def predictions_frame(payload: bytes) -> pd.DataFrame:
    """The ``predictions`` of a scoring server's JSON answer as a DataFrame."""
    return pd.DataFrame(json.loads(payload)["predictions"])


def compare(served: pd.DataFrame, expected: pd.DataFrame) -> tuple[float, bool]:
    """Largest |served - expected| over :data:`COMPARED_COLUMNS`, and whether labels agree.

    ``(nan, False)`` when the answer has other rows or lacks a column.
    """
    if len(served) != len(expected) or not set(COMPARED_COLUMNS) <= set(served.columns):
        return float("nan"), False
    diff = max(
        float(np.max(np.abs(served[c].to_numpy(np.float64) - expected[c].to_numpy(np.float64))))
        for c in COMPARED_COLUMNS
    )
    labels = bool(
        np.array_equal(served["predicted_class"].to_numpy(), expected["predicted_class"])
        and np.array_equal(served["is_ood"].to_numpy(bool), expected["is_ood"].to_numpy(bool))
    )
    return diff, labels


def inprocess_seconds(det: Any, x: np.ndarray) -> tuple[float, int]:
    """Median seconds of ``det.score_batch(x)`` after one warm-up call, and the repeats."""
    det.score_batch(x)
    repeats = max(3, min(30, math.ceil(256 / len(x))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.score_batch(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), repeats


def batches(pool: np.ndarray, batch_size: int, count: int) -> list[np.ndarray]:
    """``count`` batches of consecutive images, cycling through ``pool``."""
    out = []
    for k in range(count):
        idx = (np.arange(batch_size) + k * batch_size) % len(pool)
        out.append(np.ascontiguousarray(pool[idx], dtype=np.float32))
    return out


def latency_percentile_ms(latencies: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of latencies in seconds, in ms (NaN when there are none)."""
    return float(np.percentile(latencies, q)) * 1e3 if latencies.size else float("nan")
