"""Spark benchmark: ``binaryFile`` + ``spark_udf`` on real image files vs in-process.

* :mod:`~odin_monitor.bench.spark.run`: :func:`run_spark` (files, Spark, in-process,
  comparison);
* :mod:`~odin_monitor.bench.spark.results`: :class:`SparkResult`, :class:`SparkUnavailable`;
* :mod:`~odin_monitor.bench.spark.report`: :func:`format_markdown`;
* :mod:`~odin_monitor.bench.spark.cli`: ``python -m odin_monitor.bench.spark --help``
  (also ``odin-monitor bench spark``).

Needs pyspark (``pip install -e '.[spark]'``) and Java 17+; without them, or without
the data folder, :func:`run_spark` raises :class:`SparkUnavailable` saying which.

Example:
    >>> from odin_monitor.bench.spark import run_spark, format_markdown
    >>> print(format_markdown(run_spark(n_images=200)))  # doctest: +SKIP
"""

from __future__ import annotations

from odin_monitor.bench.spark.cli import main
from odin_monitor.bench.spark.report import format_markdown
from odin_monitor.bench.spark.results import SCORE_TOLERANCE, SparkResult, SparkUnavailable
from odin_monitor.bench.spark.run import run_spark, spark_unavailable

__all__ = [
    "SCORE_TOLERANCE",
    "SparkResult",
    "SparkUnavailable",
    "format_markdown",
    "main",
    "run_spark",
    "spark_unavailable",
]
