"""Serving benchmark: latency and throughput of ``mlflow models serve`` on 127.0.0.1.

The real MLflow scoring server (uvicorn) is started on a free local port with the
``odin`` model folder, then, for each batch size:

1. one request is checked against in-process scoring of the same images
   (``OdinDetector.score_batch`` of the same model folder; max |difference| ≤ 1e-6);
2. the in-process scoring throughput is measured (median of a few repeats, while the
   server is idle), so the HTTP overhead shows as a ratio;
3. two warm-up requests (the checked one is the first), then ``requests_per_size``
   timed requests from a bounded pool of ``concurrency`` client threads, each request
   on its own connection, stopping early at ``duration_limit_s``.

Every non-200 answer or client exception counts as an error. The server is always
stopped by its process group, also on errors and Ctrl-C.

Run ``python -m mlflow_plugin.bench_serve --help``.

Example:
    >>> from mlflow_plugin.bench_serve import run_serve, format_markdown
    >>> result = run_serve(batch_sizes=(1, 32), requests_per_size=10)  # doctest: +SKIP
    >>> print(format_markdown(result))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlflow_plugin.serving import ServerError, running_server
from odin_monitor.bench.common import machine_info

__all__ = [
    "SCORE_TOLERANCE",
    "ServeBenchError",
    "ServeResult",
    "SizeResult",
    "format_markdown",
    "main",
    "run_serve",
]

#: Largest accepted |served score - in-process score| (odin_score, spread_score, msp).
SCORE_TOLERANCE = 1e-6
_FIT_IMAGES = 200
_TEMPERATURE = 1000.0
_EPSILON = 0.0014
_WARMUP_REQUESTS = 2
_PING_TIMEOUT_S = 180.0
_MAX_DISTINCT_BODIES = 8
_MAX_BODY_BYTES_PER_SIZE = 128 * 2**20
_COMPARED_COLUMNS = ("odin_score", "spread_score", "msp")

Log = Callable[[str], None]


#: The server could not be started or answered nothing usable.
ServeBenchError = ServerError


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeResult:
    """Measurements for one batch size.

    Attributes:
        batch_size: Images per request.
        planned: Timed requests asked for.
        requests: Timed requests sent and finished (fewer than ``planned`` only when
            ``duration_limit_s`` stopped the phase).
        errors: Timed and warm-up requests that got a non-200 answer or raised.
        error_samples: Up to five error messages.
        p50_ms: Median latency of the successful timed requests (ms).
        p95_ms: 95th percentile latency (ms).
        p99_ms: 99th percentile latency (ms).
        mean_ms: Mean latency (ms).
        max_ms: Largest latency (ms).
        wall_s: Wall time of the timed phase (first send to last answer).
        requests_per_s: ``requests / wall_s``.
        images_per_s: Images of the successful timed requests over ``wall_s``.
        inprocess_images_per_s: ``batch_size`` over the median in-process
            ``score_batch`` time.
        inprocess_median_s: Median in-process ``score_batch`` time for one batch.
        inprocess_repeats: Timed in-process repeats (after one warm-up call).
        http_over_inprocess: ``images_per_s / inprocess_images_per_s``.
        score_max_abs_diff: Largest |served - in-process| over ``odin_score``,
            ``spread_score`` and ``msp`` of the checked request (NaN if it failed).
        labels_match: ``predicted_class`` and ``is_ood`` equal on the checked request.
        body_mib: Size of one request body (MiB).
        distinct_bodies: Distinct request bodies cycled through.
        stopped_by_time: The phase stopped at ``duration_limit_s``.
    """

    batch_size: int
    planned: int
    requests: int
    errors: int
    error_samples: tuple[str, ...]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    wall_s: float
    requests_per_s: float
    images_per_s: float
    inprocess_images_per_s: float
    inprocess_median_s: float
    inprocess_repeats: int
    http_over_inprocess: float
    score_max_abs_diff: float
    labels_match: bool
    body_mib: float
    distinct_bodies: int
    stopped_by_time: bool

    @property
    def scores_match(self) -> bool:
        """Served scores equal in-process scores (within :data:`SCORE_TOLERANCE`)."""
        return (
            math.isfinite(self.score_max_abs_diff)
            and self.score_max_abs_diff <= SCORE_TOLERANCE
            and self.labels_match
        )


@dataclass(frozen=True)
class ServeResult:
    """A whole serving benchmark run.

    Attributes:
        command: The command that ran the benchmark.
        server_command: The ``mlflow models serve`` command line.
        machine: Date, CPU model, cores, torch threads, versions, load average.
        model: What was served (architecture, weights, calibration).
        model_uri: The model folder or URI given, or where the built model was saved.
        pretrained: The pretrained CIFAR-10 ResNet-20 was served (not random weights).
        images_source: Where the request images came from.
        concurrency: Client threads.
        workers: uvicorn workers.
        requests_per_size: Timed requests asked for per batch size.
        duration_limit_s: Time limit of each timed phase.
        server_start_s: Seconds from starting the server to the first 200 on ``/ping``.
        sizes: One :class:`SizeResult` per batch size.
        notes: Extra remarks (fallbacks, early stops).
    """

    command: str
    server_command: str
    machine: dict[str, str]
    model: str
    model_uri: str
    pretrained: bool
    images_source: str
    concurrency: int
    workers: int
    requests_per_size: int
    duration_limit_s: float
    server_start_s: float
    sizes: tuple[SizeResult, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> int:
        """Failed requests over all batch sizes."""
        return sum(s.errors for s in self.sizes)

    @property
    def ok(self) -> bool:
        """No failed request and every score check passed."""
        return self.errors == 0 and all(s.scores_match for s in self.sizes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``errors``, ``ok`` and each ``scores_match`` included)."""
        out = asdict(self)
        out["errors"] = self.errors
        out["ok"] = self.ok
        for d, s in zip(out["sizes"], self.sizes, strict=True):
            d["scores_match"] = s.scores_match
            d["error_samples"] = list(s.error_samples)
        out["notes"] = list(self.notes)
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# -- machine, command ------------------------------------------------------------------


def _machine_info() -> dict[str, str]:
    import mlflow

    return machine_info() | {"mlflow": str(mlflow.__version__)}


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith("bench_serve.py"):
        argv = ["python", "-m", "mlflow_plugin.bench_serve", *argv[1:]]
    elif argv and os.sep in argv[0] and not argv[0].endswith(".py"):
        argv[0] = Path(argv[0]).name  # a console script such as odin-monitor
    return " ".join(shlex.quote(a) for a in argv)


# -- model and images --------------------------------------------------------------------


def _data_dir(data_dir: Path | None) -> Path | None:
    """The data folder like ``odin_monitor.bench.common``; ``None`` when there is none."""
    from odin_monitor.bench.common import resolve_data_dir
    from odin_monitor.errors import DataLoadError

    if data_dir is not None:
        return resolve_data_dir(data_dir)  # an explicit folder must exist
    try:
        return resolve_data_dir(None)
    except DataLoadError:
        return None


def _real_images(data: Path | None) -> np.ndarray | None:
    if data is None:
        return None
    file = data / "cifar10_test_lossless.npz"
    if not file.is_file():
        return None
    from odin_monitor.data import load_images

    return load_images(file)


def _noise(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


def _build_model(
    folder: Path, data: Path | None, seed: int, log: Log
) -> tuple[str, bool, np.ndarray | None]:
    """Fit and save a ResNet-20 detector; returns (description, pretrained, images)."""
    import mlflow_plugin
    from odin_monitor.detector import OdinDetector
    from odin_monitor.modelref import model_from_reference
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

    ref = "odin_monitor.models:resnet20"
    weights = None if data is None else data / "cifar10_resnet20.pt"
    images = _real_images(data)
    if weights is not None and weights.is_file() and images is not None:
        net = model_from_reference(ref, weights)
        fit_x = images[:_FIT_IMAGES]
        desc = (
            f"CIFAR-10 ResNet-20, pretrained ({weights.name}); ODIN T={_TEMPERATURE:g}, "
            f"ε={_EPSILON:g}, δ fitted on the first {len(fit_x)} images of "
            "cifar10_test_lossless.npz (TPR 95%)"
        )
        pretrained = True
    else:
        torch.manual_seed(seed)
        net = model_from_reference(ref)
        fit_x = _noise(_FIT_IMAGES, (3, 32, 32), seed)
        desc = (
            "CIFAR-10 ResNet-20 architecture with RANDOM weights (no data folder with "
            f"cifar10_resnet20.pt and cifar10_test_lossless.npz); ODIN T={_TEMPERATURE:g}, "
            f"ε={_EPSILON:g}, δ fitted on {len(fit_x)} seeded uniform-noise images"
        )
        pretrained = False
        images = None
    log(f"fitting the detector on {len(fit_x)} images ({'pretrained' if pretrained else 'random'})")
    det = OdinDetector(
        net.eval(),
        temperature=_TEMPERATURE,
        epsilon=_EPSILON,
        normalization=CIFAR_RESNET_NORMALIZATION,
    ).fit(fit_x)
    log(f"saving the model to {folder}")
    mlflow_plugin.save_model(det, folder)
    return desc, pretrained, images


def _local_model(model_uri: str, tmp: Path, tracking_uri: str | None, log: Log) -> Path:
    p = Path(model_uri).expanduser()
    if p.is_dir():
        if not (p / "MLmodel").is_file():
            raise ServeBenchError(
                f"Expected an MLflow model folder (with an MLmodel file) at {p}, but it has "
                "no MLmodel file."
            )
        return p.resolve()
    import mlflow.artifacts

    log(f"downloading {model_uri}")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model_uri,
        dst_path=str(tmp / "downloaded"),
        tracking_uri=tracking_uri,
        registry_uri=tracking_uri,
    )
    return Path(local).resolve()


# -- requests ----------------------------------------------------------------------------


def _request(
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
class _Outcome:
    latency_s: float
    status: int
    error: str | None


def _post(port: int, body: bytes, timeout: float) -> tuple[_Outcome, bytes]:
    t0 = time.perf_counter()
    status, data = _request(port, "POST", "/invocations", body, timeout)
    latency = time.perf_counter() - t0
    error = None
    if status != 200:
        text = data[:300].decode(errors="replace")
        error = f"HTTP {status}: {text}" if status else text
    return _Outcome(latency, status, error), data


def _load(
    port: int,
    bodies: Sequence[bytes],
    n: int,
    concurrency: int,
    duration_limit_s: float,
    timeout: float,
) -> tuple[list[_Outcome], float, bool]:
    """``n`` requests from ``concurrency`` threads; returns outcomes, wall time, early stop."""
    lock = threading.Lock()
    counter = {"next": 0}
    outcomes: list[_Outcome] = []
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
            outcome, _ = _post(port, bodies[i % len(bodies)], timeout)
            with lock:
                outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        for f in futures:
            f.result()
    wall = time.perf_counter() - t0
    return outcomes, wall, stopped.is_set()


def _frame(payload: bytes) -> pd.DataFrame:
    return pd.DataFrame(json.loads(payload)["predictions"])


def _compare(served: pd.DataFrame, expected: pd.DataFrame) -> tuple[float, bool]:
    if len(served) != len(expected) or not set(_COMPARED_COLUMNS) <= set(served.columns):
        return float("nan"), False
    diff = max(
        float(np.max(np.abs(served[c].to_numpy(np.float64) - expected[c].to_numpy(np.float64))))
        for c in _COMPARED_COLUMNS
    )
    labels = bool(
        np.array_equal(served["predicted_class"].to_numpy(), expected["predicted_class"])
        and np.array_equal(served["is_ood"].to_numpy(bool), expected["is_ood"].to_numpy(bool))
    )
    return diff, labels


def _inprocess(det: Any, x: np.ndarray) -> tuple[float, int]:
    """Median seconds of ``det.score_batch(x)`` after one warm-up call, and the repeats."""
    det.score_batch(x)
    repeats = max(3, min(30, math.ceil(256 / len(x))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.score_batch(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), repeats


def _batches(pool: np.ndarray, batch_size: int, count: int) -> list[np.ndarray]:
    """``count`` batches of consecutive images, cycling through ``pool``."""
    out = []
    for k in range(count):
        idx = (np.arange(batch_size) + k * batch_size) % len(pool)
        out.append(np.ascontiguousarray(pool[idx], dtype=np.float32))
    return out


def _pct(latencies: np.ndarray, q: float) -> float:
    return float(np.percentile(latencies, q)) * 1e3 if latencies.size else float("nan")


def _measure_size(
    port: int,
    det: Any,
    pool: np.ndarray,
    batch_size: int,
    *,
    requests: int,
    concurrency: int,
    duration_limit_s: float,
    log: Log,
) -> SizeResult:
    body_bytes = 20 * batch_size * int(np.prod(pool.shape[1:]))  # ~20 characters a value
    distinct = max(1, min(_MAX_DISTINCT_BODIES, requests, _MAX_BODY_BYTES_PER_SIZE // body_bytes))
    batches = _batches(pool, batch_size, distinct)
    bodies = [json.dumps({"inputs": b.tolist()}).encode() for b in batches]
    body_mib = len(bodies[0]) / 2**20
    timeout = max(120.0, duration_limit_s)

    log(f"batch {batch_size}: in-process score_batch")
    expected = det.score_batch(batches[0]).to_frame()
    median_s, repeats = _inprocess(det, batches[0])
    inproc_ips = batch_size / median_s

    log(f"batch {batch_size}: check + warm-up ({_WARMUP_REQUESTS} requests, {body_mib:.2f} MiB)")
    errors: list[str] = []
    diff, labels = float("nan"), False
    for k in range(_WARMUP_REQUESTS):
        outcome, payload = _post(port, bodies[0], timeout)
        if outcome.error is not None:
            errors.append(f"warm-up: {outcome.error}")
        elif k == 0:
            try:
                diff, labels = _compare(_frame(payload), expected)
            except (ValueError, KeyError, TypeError) as err:
                errors.append(f"warm-up: unreadable answer ({type(err).__name__}: {err})")

    log(f"batch {batch_size}: {requests} timed requests, concurrency {concurrency}")
    outcomes, wall, stopped = _load(port, bodies, requests, concurrency, duration_limit_s, timeout)
    errors += [o.error for o in outcomes if o.error is not None]
    ok = np.array([o.latency_s for o in outcomes if o.error is None], dtype=np.float64)
    images_per_s = ok.size * batch_size / wall if wall > 0 else float("nan")
    res = SizeResult(
        batch_size=batch_size,
        planned=requests,
        requests=len(outcomes),
        errors=len(errors),
        error_samples=tuple(errors[:5]),
        p50_ms=_pct(ok, 50),
        p95_ms=_pct(ok, 95),
        p99_ms=_pct(ok, 99),
        mean_ms=float(ok.mean()) * 1e3 if ok.size else float("nan"),
        max_ms=float(ok.max()) * 1e3 if ok.size else float("nan"),
        wall_s=wall,
        requests_per_s=len(outcomes) / wall if wall > 0 else float("nan"),
        images_per_s=images_per_s,
        inprocess_images_per_s=inproc_ips,
        inprocess_median_s=median_s,
        inprocess_repeats=repeats,
        http_over_inprocess=images_per_s / inproc_ips,
        score_max_abs_diff=diff,
        labels_match=labels,
        body_mib=body_mib,
        distinct_bodies=distinct,
        stopped_by_time=stopped,
    )
    log(
        f"batch {batch_size}: {res.requests} requests, {res.errors} errors, "
        f"p50 {res.p50_ms:.1f} ms, p95 {res.p95_ms:.1f} ms, {res.images_per_s:.1f} images/s "
        f"(in-process {inproc_ips:.1f}); max |served - in-process| = {diff:.2e}"
    )
    return res


# -- entry points ------------------------------------------------------------------------


def _check_args(
    batch_sizes: Sequence[int],
    concurrency: int,
    requests_per_size: int,
    duration_limit_s: float,
    workers: int,
) -> tuple[int, ...]:
    sizes = tuple(int(b) for b in batch_sizes)
    if not sizes or any(b < 1 for b in sizes):
        raise ValueError(f"Expected batch sizes >= 1, but got {tuple(batch_sizes)}.")
    for name, value in (
        ("concurrency", concurrency),
        ("requests_per_size", requests_per_size),
        ("workers", workers),
    ):
        if int(value) < 1:
            raise ValueError(f"Expected {name} >= 1, but got {value}.")
    if not duration_limit_s > 0:
        raise ValueError(f"Expected duration_limit_s > 0, but got {duration_limit_s}.")
    return sizes


def run_serve(
    *,
    model_uri: str | None = None,
    data_dir: Path | None = None,
    batch_sizes: Sequence[int] = (1, 32, 256),
    concurrency: int = 4,
    requests_per_size: int = 40,
    duration_limit_s: float = 120.0,
    port: int | None = None,
    tracking_uri: str | None = None,
    workers: int = 1,
    seed: int = 0,
    log: Log | None = None,
) -> ServeResult:
    """Benchmark ``mlflow models serve`` of an ``odin`` model on 127.0.0.1.

    Args:
        model_uri: A local model folder, or any MLflow model URI (downloaded to a
            temporary folder first). ``None``: build the pretrained CIFAR-10 ResNet-20
            detector (T=1000, ε=0.0014, δ from 200 lossless CIFAR-10 test images) from
            the data folder, or a random-weight ResNet-20 fitted on noise without one.
        data_dir: The data folder; default ``$ODIN_SHARED_DATA``, else ``../shared/data``.
            Also the source of the request images when the model takes 3×32×32 images
            (else seeded uniform noise).
        batch_sizes: Images per request, one measurement each.
        concurrency: Client threads sending requests at once.
        requests_per_size: Timed requests per batch size (after 2 warm-up requests).
        duration_limit_s: No new timed request starts after this many seconds (per size).
        port: Server port; default a free one.
        tracking_uri: Tracking server for a ``runs:/``/``models:/`` URI (also given to
            the server).
        workers: uvicorn workers (``--workers``).
        seed: Seed of the noise images and the random-weight fallback.
        log: Called with one progress line per step; default silent.

    Returns:
        A :class:`ServeResult`; ``result.errors`` must be 0 and ``result.ok`` true.

    Raises:
        ValueError: A bad argument.
        ServeBenchError: The server exited or did not answer ``/ping`` in 180 s.

    Example:
        >>> result = run_serve(model_uri="odin_model", batch_sizes=(1, 4))  # doctest: +SKIP
        >>> result.errors, result.sizes[0].p50_ms <= result.sizes[0].p95_ms  # doctest: +SKIP
        (0, True)
    """
    import mlflow_plugin

    sizes = _check_args(batch_sizes, concurrency, requests_per_size, duration_limit_s, workers)
    say: Log = log or (lambda _line: None)
    command = _command_line()
    notes: list[str] = []
    data = _data_dir(data_dir)

    with tempfile.TemporaryDirectory(prefix="odin-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        if model_uri is None:
            folder = tmp / "model"
            desc, pretrained, images = _build_model(folder, data, seed, say)
            uri_text = "(built in a temporary folder)"
            if not pretrained:
                notes.append(
                    "No data folder with the pretrained weights: a random-weight ResNet-20 "
                    "fitted on uniform noise was served; the numbers time the pipeline, "
                    "not a useful detector."
                )
        else:
            folder = _local_model(model_uri, tmp, tracking_uri, say)
            desc, pretrained, images, uri_text = f"model {model_uri}", False, None, model_uri

        det = mlflow_plugin.load_model(str(folder), device="cpu")
        shape = tuple(int(s) for s in det.input_shape_)
        desc += f"; input {shape}, {det.n_classes_} classes, served batch_size {det.batch_size}"
        if images is None and shape == (3, 32, 32):
            images = _real_images(data)
        if images is not None and tuple(images.shape[1:]) == shape:
            source = f"cifar10_test_lossless.npz ({len(images)} images, cycled)"
        else:
            images = _noise(max(sizes) * 2, shape, seed)
            source = f"seeded uniform noise ({len(images)} images, seed {seed})"

        machine = _machine_info()
        results: list[SizeResult] = []
        say("starting mlflow models serve on 127.0.0.1")
        with running_server(
            folder,
            port=port,
            workers=workers,
            tracking_uri=tracking_uri,
            log_file=tmp / "server.log",
            timeout=_PING_TIMEOUT_S,
        ) as server:
            say(f"server pid {server.proc.pid} ready after {server.start_seconds:.1f} s")
            start_s, cmd = server.start_seconds, list(server.command)
            for b in sizes:
                r = _measure_size(
                    server.port,
                    det,
                    images,
                    b,
                    requests=requests_per_size,
                    concurrency=concurrency,
                    duration_limit_s=duration_limit_s,
                    log=say,
                )
                if r.stopped_by_time:
                    notes.append(
                        f"batch {b}: stopped at the {duration_limit_s:g} s limit after "
                        f"{r.requests} of {r.planned} requests."
                    )
                results.append(r)
        say(f"server pid {server.proc.pid} stopped (exit code {server.proc.returncode})")
        if hasattr(os, "getloadavg"):
            machine["load_average_1m_end"] = f"{os.getloadavg()[0]:.2f}"

    shown = [*cmd]
    shown[shown.index("-m") + 1] = "<model folder>" if model_uri is None else str(folder)
    return ServeResult(
        command=command,
        server_command=" ".join(shlex.quote(a) for a in shown),
        machine=machine,
        model=desc,
        model_uri=uri_text,
        pretrained=pretrained,
        images_source=source,
        concurrency=int(concurrency),
        workers=int(workers),
        requests_per_size=int(requests_per_size),
        duration_limit_s=float(duration_limit_s),
        server_start_s=start_s,
        sizes=tuple(results),
        notes=tuple(notes),
    )


def _f(value: float, digits: int = 1) -> str:
    return "—" if not math.isfinite(value) else f"{value:,.{digits}f}"


def format_markdown(result: ServeResult) -> str:
    """The result as a markdown report: header (command, machine, settings) and a table.

    Example:
        >>> text = format_markdown(run_serve(batch_sizes=(1,)))  # doctest: +SKIP
        >>> "| batch | requests | errors |" in text  # doctest: +SKIP
        True
    """
    m = result.machine
    lines = [
        "### `mlflow models serve`: latency and throughput on 127.0.0.1",
        "",
        f"Command: `{result.command}`",
        "",
        f"Server: `{result.server_command}` (started in {result.server_start_s:.1f} s)",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, torch threads "
        f"{m.get('torch_threads', '?')} (client and server alike); python {m.get('python', '?')}, "
        f"torch {m.get('torch', '?')}, mlflow {m.get('mlflow', '?')}; load average (1 min) "
        f"{m.get('load_average_1m', '?')} at the start, {m.get('load_average_1m_end', '?')} "
        f"at the end; {m.get('date', '?')}.",
        "",
        f"Model: {result.model}.",
        "",
        f"Load: {result.requests_per_size} timed requests per batch size after 2 warm-up "
        f"requests, {result.concurrency} concurrent client threads (a new connection per "
        f"request), {result.workers} uvicorn worker(s), limit {result.duration_limit_s:g} s "
        f'per batch size; JSON bodies `{{"inputs": images.tolist()}}` of float32 images '
        f"in [0, 1] from {result.images_source}, built before timing.",
        "",
    ]
    headers = [
        "batch", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "images/s",
        "in-process images/s", "HTTP/in-process",
    ]  # fmt: skip
    lines += [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" for _ in headers) + "|",
    ]
    for s in result.sizes:
        row = [
            str(s.batch_size),
            str(s.requests) if s.requests == s.planned else f"{s.requests} of {s.planned}",
            str(s.errors) if s.errors == 0 else f"**{s.errors}**",
            _f(s.p50_ms),
            _f(s.p95_ms),
            _f(s.p99_ms),
            _f(s.requests_per_s, 2),
            _f(s.images_per_s),
            _f(s.inprocess_images_per_s),
            _f(s.http_over_inprocess, 2),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Served scores vs in-process `score_batch` (one request per batch size):", ""]
    for s in result.sizes:
        verdict = "equal" if s.scores_match else "**DIFFER**"
        lines.append(
            f"- batch {s.batch_size}: max |served - in-process| over odin_score, spread_score, "
            f"msp = {s.score_max_abs_diff:.2e} (tolerance {SCORE_TOLERANCE:g}); predicted_class "
            f"and is_ood {'equal' if s.labels_match else 'differ'} → {verdict}; body "
            f"{s.body_mib:.2f} MiB; timed phase {s.wall_s:.1f} s."
        )
    lines += [
        "",
        "Columns: latency percentiles (numpy) over the successful timed requests, client side "
        "(send to last byte of the answer); req/s and images/s over the wall time of the timed "
        "phase; in-process images/s = batch size / median `score_batch` time of the same images "
        "in the benchmark process (same model folder, while the server was idle); "
        "HTTP/in-process = images/s ÷ in-process images/s. The client threads share the CPU "
        "with the server.",
    ]
    errors = [f"- batch {s.batch_size}: {e}" for s in result.sizes for e in s.error_samples]
    if errors:
        lines += ["", f"**{result.errors} failed request(s)**, first messages:", "", *errors]
    if result.notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in result.notes]]
    return "\n".join(lines) + "\n"


def _parser(prog: str = "python -m mlflow_plugin.bench_serve") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog="example: odin-monitor bench serve --batch-sizes 1 32 256 --concurrency 4 "
        "--markdown docs/results/serve_cpu.md",
        description="p50/p95/p99 latency and throughput of `mlflow models serve` of an odin "
        "model on 127.0.0.1, under a bounded concurrent load; exit code 1 if any request "
        "failed or the served scores differ from in-process scores.",
    )
    p.add_argument("--model-uri", help="model folder or MLflow URI (default: build ResNet-20)")
    p.add_argument("--data-dir", type=Path, help="data folder (default $ODIN_SHARED_DATA, "
                   "else ../shared/data)")  # fmt: skip
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    p.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--requests-per-size", type=int, default=40, help="timed requests per size")
    p.add_argument("--duration-limit-s", type=float, default=120.0, help="per batch size")
    p.add_argument("--port", type=int, help="server port (default: a free one)")
    p.add_argument("--tracking-uri", help="for runs:/ and models:/ URIs")
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", type=Path, help="write the markdown report here")
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit code (1 on any failed request).

    Example:
        >>> main(["--batch-sizes", "1", "--requests-per-size", "5"])  # doctest: +SKIP
        0
    """
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    t0 = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {line}", file=sys.stderr, flush=True)

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    result = run_serve(
        model_uri=args.model_uri,
        data_dir=args.data_dir,
        batch_sizes=args.batch_sizes,
        concurrency=args.concurrency,
        requests_per_size=args.requests_per_size,
        duration_limit_s=args.duration_limit_s,
        port=args.port,
        tracking_uri=args.tracking_uri,
        workers=args.workers,
        seed=args.seed,
        log=log,
    )
    text = format_markdown(result)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    if result.errors:
        log(f"{result.errors} request(s) failed")
    if not all(s.scores_match for s in result.sizes):
        log("served scores differ from in-process scores")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
