"""Command line of the Spark benchmark (``python -m odin_monitor.bench.spark``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from odin_monitor.bench.common import Stopwatch, publish, stderr_log
from odin_monitor.bench.spark.report import format_markdown
from odin_monitor.bench.spark.results import SparkUnavailable
from odin_monitor.bench.spark.run import run_spark

__all__ = ["main"]


def _parser(prog: str = "python -m odin_monitor.bench.spark") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog="example: odin-monitor bench spark --n-images 5000 --markdown spark.md",
        description="Write N real CIFAR-10 images as files, score them with "
        'spark.read.format("binaryFile") + mlflow.pyfunc.spark_udf in local mode and '
        "in-process, check the scores are equal, report images/s of both. Exit code 1 if "
        "the scores differ; 0 with a 'skipped' line without pyspark, Java or the data.",
    )
    p.add_argument("--data-dir", type=Path, help="data folder (default $ODIN_SHARED_DATA, "
                   "else ../shared/data)")  # fmt: skip
    p.add_argument("--n-images", type=int, default=5000, help="files (default 5000, max 10000)")
    p.add_argument("--file-format", choices=["PNG", "JPEG"], default="PNG")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--partitions", type=int, default=2, help="coalesce to this many (default 2)")
    p.add_argument("--passes", type=int, default=2, help="timed Spark passes (default 2)")
    p.add_argument("--markdown", type=Path, help="write the markdown report here")
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit code (1 when the scores differ)."""
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    log = stderr_log(Stopwatch())

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        result = run_spark(
            data_dir=args.data_dir,
            n_images=args.n_images,
            file_format=args.file_format,
            master=args.master,
            partitions=args.partitions,
            passes=args.passes,
            log=log,
        )
    except SparkUnavailable as err:
        print(f"skipped: {err}", file=sys.stderr)
        return 0
    publish(format_markdown(result), args.markdown, args.json, result.to_dict())
    if not result.scores_match:
        log("Spark scores differ from in-process scores")
    return 0 if result.scores_match else 1
