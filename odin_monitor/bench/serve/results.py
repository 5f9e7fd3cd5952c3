"""Serving benchmark results: a :class:`SizeResult` per batch size, a :class:`ServeResult`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GOAL_IMAGE_OVER_FLOAT", "GOAL_IMAGE_OVER_INPROCESS", "SCORE_TOLERANCE",
           "Goal", "ServeResult", "SizeResult"]  # fmt: skip

#: Largest accepted |served score - in-process score| (odin_score, spread_score, msp).
SCORE_TOLERANCE = 1e-6
#: Issue 11: image requests at batch 256 reach this multiple of float-JSON images/s ...
GOAL_IMAGE_OVER_FLOAT = 3.0
#: ... and this fraction of in-process images/s including the decode.
GOAL_IMAGE_OVER_INPROCESS = 0.6


@dataclass(frozen=True)
class Goal:
    """One target of the report: what is compared, the measured ratio, the bound, met."""

    name: str
    measured: float
    bound: str
    met: bool


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
        format: The request kind: ``"float"`` (float JSON to a tensor model) or
            ``"image"`` (base64 files to an image model).
        inprocess_decode_images_per_s: ``batch_size`` over the median in-process time of
            ``preprocess_images`` + ``score_batch`` of the same files (image requests;
            NaN for float requests).
        decode_ms_per_image: Median ``preprocess_images`` time per image (ms; image only).
        odin_ms_per_image: Median ``score_batch`` time per image on decoded tensors (ms).
        http_over_inprocess_decode: ``images_per_s / inprocess_decode_images_per_s``.
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
    format: str = "float"
    inprocess_decode_images_per_s: float = float("nan")
    decode_ms_per_image: float = float("nan")
    odin_ms_per_image: float = float("nan")
    http_over_inprocess_decode: float = float("nan")

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
        server_start_s: Seconds from starting the (first) server to the first 200 on
            ``/ping``.
        sizes: One :class:`SizeResult` per (request kind, batch size).
        notes: Extra remarks (fallbacks, early stops).
        formats: The request kinds measured (``"float"``, ``"image"``).
        file_format: Encoding of the image requests' files (``"PNG"`` or ``"JPEG"``).
        servers: Per request kind: ``{"format", "command", "start_s"}`` of its server.
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
    formats: tuple[str, ...] = ("float",)
    file_format: str = "PNG"
    servers: tuple[dict[str, str], ...] = ()

    def size(self, fmt: str, batch_size: int) -> SizeResult | None:
        """The measurement of one request kind at one batch size, if made."""
        return next((s for s in self.sizes if s.format == fmt and s.batch_size == batch_size), None)

    def goals(self) -> list[Goal]:
        """Issue 11's serving goals, read at the largest batch size with both kinds.

        Empty when image requests were not measured.
        """
        sizes = [s.batch_size for s in self.sizes if s.format == "image"]
        if not sizes:
            return []
        b = max(sizes)
        image = self.size("image", b)
        assert image is not None
        out = []
        flt = self.size("float", b)
        if flt is not None:
            ratio = image.images_per_s / flt.images_per_s
            out.append(
                Goal(
                    f"image / float-JSON images/s, batch {b}",
                    ratio,
                    f"≥ {GOAL_IMAGE_OVER_FLOAT:g}",
                    ratio >= GOAL_IMAGE_OVER_FLOAT,
                )
            )
        ratio = image.http_over_inprocess_decode
        out.append(
            Goal(
                f"image served / in-process incl. decode, batch {b}",
                ratio,
                f"≥ {GOAL_IMAGE_OVER_INPROCESS:g}",
                ratio >= GOAL_IMAGE_OVER_INPROCESS,
            )
        )
        out.append(Goal("failed requests (all kinds, all sizes)", float(self.errors), "= 0",
                        self.errors == 0))  # fmt: skip
        return out

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
        out["goals"] = [asdict(g) for g in self.goals()]
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
