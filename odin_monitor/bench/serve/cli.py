"""Command line of the serving benchmark (``python -m odin_monitor.bench.serve``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from odin_monitor.bench.common import Stopwatch, publish, stderr_log
from odin_monitor.bench.files import FILE_FORMATS
from odin_monitor.bench.serve.bodies import FORMATS
from odin_monitor.bench.serve.report import format_markdown
from odin_monitor.bench.serve.run import run_serve

__all__ = ["main"]


def _parser(prog: str = "python -m odin_monitor.bench.serve") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog="example: odin-monitor bench serve --batch-sizes 1 32 256 --concurrency 4 "
        "--markdown docs/results/serve_cpu.md",
        description="p50/p95/p99 latency and throughput of `mlflow models serve` of an odin "
        "model on 127.0.0.1, under a bounded concurrent load: float-JSON requests to a tensor "
        "model and base64-image requests to an image model of the same detector, beside "
        "in-process scoring with and without decoding; exit code 1 if any request failed or "
        "the served scores differ from in-process scores.",
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
    p.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=list(FORMATS),
        help="request kinds: float (float JSON to a tensor model), image (base64 "
        "files to an image model of the same detector); default both",
    )
    p.add_argument(
        "--file-format",
        choices=sorted(FILE_FORMATS),
        default="PNG",
        help="encoding of the image requests' files (default PNG, lossless)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="score on the compiled step in the servers (ODIN_COMPILE=true) and in process",
    )
    p.add_argument(
        "--no-serving-tunings",
        action="store_true",
        help="serve with ODIN_MALLOC_TUNING=false and ODIN_SCORER_THREAD=false (how a "
        "served model ran before them; default: both auto, as in every scoring server)",
    )
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
    log = stderr_log(Stopwatch())

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
        formats=args.formats,
        file_format=args.file_format,
        compile=args.compile,
        serving_tunings=not args.no_serving_tunings,
        log=log,
    )
    publish(format_markdown(result), args.markdown, args.json, result.to_dict())
    if result.errors:
        log(f"{result.errors} request(s) failed")
    if not all(s.scores_match for s in result.sizes):
        log("served scores differ from in-process scores")
    return 0 if result.ok else 1
