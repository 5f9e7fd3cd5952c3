"""Serving benchmark results: a :class:`SizeResult` per batch size, a :class:`ServeResult`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SCORE_TOLERANCE", "ServeResult", "SizeResult"]

#: Largest accepted |served score - in-process score| (odin_score, spread_score, msp).
SCORE_TOLERANCE = 1e-6


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
