"""Running the serving benchmark: build or fetch the model, start the server, measure.

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
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlflow_plugin.serving import ServerError, running_server
from odin_monitor.bench.common import Log, command_line, machine_info, resolve_data_dir
from odin_monitor.bench.serve.client import (
    batches,
    compare,
    inprocess_seconds,
    latency_percentile_ms,
    load,
    post,
    predictions_frame,
)
from odin_monitor.bench.serve.results import ServeResult, SizeResult
from odin_monitor.errors import DataLoadError
from odin_monitor.synthetic import uniform_noise

__all__ = ["run_serve"]

_FIT_IMAGES = 200
_TEMPERATURE = 1000.0
_EPSILON = 0.0014
_WARMUP_REQUESTS = 2
_PING_TIMEOUT_S = 180.0
_MAX_DISTINCT_BODIES = 8
_MAX_BODY_BYTES_PER_SIZE = 128 * 2**20


def _machine_info() -> dict[str, str]:
    import mlflow

    return machine_info() | {"mlflow": str(mlflow.__version__)}


def _data_dir(data_dir: Path | None) -> Path | None:
    """The data folder as :func:`resolve_data_dir` finds it, or ``None`` without one."""
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
        fit_x = uniform_noise(_FIT_IMAGES, (3, 32, 32), seed)
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
    mlflow_plugin.save_model(det, folder, input_kind="tensor")  # the float-JSON route
    return desc, pretrained, images


def _local_model(model_uri: str, tmp: Path, tracking_uri: str | None, log: Log) -> Path:
    p = Path(model_uri).expanduser()
    if p.is_dir():
        if not (p / "MLmodel").is_file():
            raise ServerError(
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
    chosen = batches(pool, batch_size, distinct)
    bodies = [json.dumps({"inputs": b.tolist()}).encode() for b in chosen]
    body_mib = len(bodies[0]) / 2**20
    timeout = max(120.0, duration_limit_s)

    log(f"batch {batch_size}: in-process score_batch")
    expected = det.score_batch(chosen[0]).to_frame()
    median_s, repeats = inprocess_seconds(det, chosen[0])
    inproc_ips = batch_size / median_s

    log(f"batch {batch_size}: check + warm-up ({_WARMUP_REQUESTS} requests, {body_mib:.2f} MiB)")
    errors: list[str] = []
    diff, labels = float("nan"), False
    for k in range(_WARMUP_REQUESTS):
        outcome, payload = post(port, bodies[0], timeout)
        if outcome.error is not None:
            errors.append(f"warm-up: {outcome.error}")
        elif k == 0:
            try:
                diff, labels = compare(predictions_frame(payload), expected)
            except (ValueError, KeyError, TypeError) as err:
                errors.append(f"warm-up: unreadable answer ({type(err).__name__}: {err})")

    log(f"batch {batch_size}: {requests} timed requests, concurrency {concurrency}")
    outcomes, wall, stopped = load(port, bodies, requests, concurrency, duration_limit_s, timeout)
    errors += [o.error for o in outcomes if o.error is not None]
    ok = np.array([o.latency_s for o in outcomes if o.error is None], dtype=np.float64)
    images_per_s = ok.size * batch_size / wall if wall > 0 else float("nan")
    res = SizeResult(
        batch_size=batch_size,
        planned=requests,
        requests=len(outcomes),
        errors=len(errors),
        error_samples=tuple(errors[:5]),
        p50_ms=latency_percentile_ms(ok, 50),
        p95_ms=latency_percentile_ms(ok, 95),
        p99_ms=latency_percentile_ms(ok, 99),
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
        ServerError: The server exited or did not answer ``/ping`` in 180 s.

    Example:
        >>> result = run_serve(model_uri="odin_model", batch_sizes=(1, 4))  # doctest: +SKIP
        >>> result.errors, result.sizes[0].p50_ms <= result.sizes[0].p95_ms  # doctest: +SKIP
        (0, True)
    """
    import mlflow_plugin

    sizes = _check_args(batch_sizes, concurrency, requests_per_size, duration_limit_s, workers)
    say: Log = log or (lambda _line: None)
    command = command_line()
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
            c, h, w = shape  # an odin model takes (N, C, H, W) images
            images = uniform_noise(max(sizes) * 2, (c, h, w), seed)
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
