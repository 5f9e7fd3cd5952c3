"""One batch size of one request kind: the check, the in-process figures, the timed load.

For each (request kind, batch size):

1. the in-process reference: ``score_batch`` of the same images (for image requests,
   of :func:`~odin_monitor.preprocess.preprocess_images` of the same files), and its
   median time on already-decoded tensors; for image requests also the median time of
   the decode alone and of decode + ``score_batch`` (what the server has to do);
2. two warm-up requests, the first compared with the in-process scores;
3. the timed requests from a bounded pool of client threads (:func:`client.load`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from odin_monitor.bench.common import Log
from odin_monitor.bench.serve.bodies import float_body, image_body
from odin_monitor.bench.serve.client import (
    compare,
    inprocess_seconds,
    latency_percentile_ms,
    load,
    post,
    predictions_frame,
)
from odin_monitor.bench.serve.results import SizeResult

__all__ = ["RequestImages", "batch_indices", "measure_size", "median_seconds"]

WARMUP_REQUESTS = 2
_MAX_DISTINCT_BODIES = 8
_MAX_BODY_BYTES_PER_SIZE = 128 * 2**20


@dataclass(frozen=True)
class RequestImages:
    """The images requests are built from, in three forms of the same pixels.

    Attributes:
        floats: float32 ``(N, C, H, W)`` in [0, 1] (the float-JSON requests).
        files: One encoded file per image (the image requests).
        file_format: ``"PNG"`` or ``"JPEG"``.
        source: Where the images came from (for the report).
    """

    floats: np.ndarray
    files: tuple[bytes, ...]
    file_format: str
    source: str


def batch_indices(n: int, batch_size: int, count: int) -> list[np.ndarray]:
    """``count`` batches of consecutive indices into a pool of ``n``, cycling.

    Example:
        >>> [b.tolist() for b in batch_indices(5, 3, 2)]
        [[0, 1, 2], [3, 4, 0]]
    """
    return [(np.arange(batch_size) + k * batch_size) % n for k in range(count)]


def median_seconds(fn: Callable[[], Any], batch_size: int) -> tuple[float, int]:
    """Median seconds of ``fn()`` after one warm-up call, and the repeats (3 to 30)."""
    fn()
    repeats = max(3, min(30, math.ceil(256 / batch_size)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), repeats


def _bodies(
    fmt: str, images: RequestImages, batch_size: int, requests: int
) -> tuple[list[bytes], list[np.ndarray]]:
    def build(idx: np.ndarray) -> bytes:
        if fmt == "float":
            return float_body(images.floats[idx])
        return image_body([images.files[i] for i in idx])

    first_idx = batch_indices(len(images.floats), batch_size, 1)[0]
    first = build(first_idx)
    distinct = max(1, min(_MAX_DISTINCT_BODIES, requests, _MAX_BODY_BYTES_PER_SIZE // len(first)))
    chosen = batch_indices(len(images.floats), batch_size, distinct)
    return [first, *(build(idx) for idx in chosen[1:])], chosen


def measure_size(
    port: int,
    fmt: str,
    det: Any,
    images: RequestImages,
    batch_size: int,
    *,
    spec: Any,
    requests: int,
    concurrency: int,
    duration_limit_s: float,
    log: Log,
) -> SizeResult:
    """Measure one request kind (``"float"`` or ``"image"``) at one batch size."""
    from odin_monitor.preprocess import preprocess_images

    bodies, chosen = _bodies(fmt, images, batch_size, requests)
    body_mib = len(bodies[0]) / 2**20
    timeout = max(120.0, duration_limit_s)
    tag = f"{fmt} batch {batch_size}"

    log(f"{tag}: in-process score_batch")
    files: Sequence[bytes] = [images.files[i] for i in chosen[0]]
    decode_s = with_decode_s = float("nan")
    if fmt == "image":
        x, _ = preprocess_images(files, spec)
        decode_s, _ = median_seconds(lambda: preprocess_images(files, spec), batch_size)
        with_decode_s, _ = median_seconds(
            lambda: det.score_batch(preprocess_images(files, spec)[0]), batch_size
        )
    else:
        x = np.ascontiguousarray(images.floats[chosen[0]])
    expected = det.score_batch(x).to_frame()
    median_s, repeats = inprocess_seconds(det, x)
    inproc_ips = batch_size / median_s
    decode_ips = batch_size / with_decode_s

    log(f"{tag}: check + warm-up ({WARMUP_REQUESTS} requests, {body_mib:.2f} MiB)")
    errors: list[str] = []
    diff, labels = float("nan"), False
    for k in range(WARMUP_REQUESTS):
        outcome, payload = post(port, bodies[0], timeout)
        if outcome.error is not None:
            errors.append(f"warm-up: {outcome.error}")
        elif k == 0:
            try:
                diff, labels = compare(predictions_frame(payload), expected)
            except (ValueError, KeyError, TypeError) as err:
                errors.append(f"warm-up: unreadable answer ({type(err).__name__}: {err})")

    log(f"{tag}: {requests} timed requests, concurrency {concurrency}")
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
        distinct_bodies=len(bodies),
        stopped_by_time=stopped,
        format=fmt,
        inprocess_decode_images_per_s=decode_ips,
        decode_ms_per_image=decode_s * 1e3 / batch_size,
        odin_ms_per_image=median_s * 1e3 / batch_size,
        http_over_inprocess_decode=images_per_s / decode_ips,
    )
    extra = f", with decode {decode_ips:.1f}" if fmt == "image" else ""
    log(
        f"{tag}: {res.requests} requests, {res.errors} errors, p50 {res.p50_ms:.1f} ms, "
        f"p95 {res.p95_ms:.1f} ms, {res.images_per_s:.1f} images/s (in-process "
        f"{inproc_ips:.1f}{extra}); max |served - in-process| = {diff:.2e}"
    )
    return res
