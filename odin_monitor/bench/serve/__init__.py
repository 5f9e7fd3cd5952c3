"""Serving benchmark: latency and throughput of ``mlflow models serve`` on 127.0.0.1.

* :mod:`~odin_monitor.bench.serve.run`: build or fetch the model, start the server,
  measure each batch size (:func:`run_serve`);
* :mod:`~odin_monitor.bench.serve.client`: requests, the bounded concurrent load, the
  comparison of served and in-process scores;
* :mod:`~odin_monitor.bench.serve.results`: :class:`ServeResult`, :class:`SizeResult`;
* :mod:`~odin_monitor.bench.serve.report`: :func:`format_markdown`;
* :mod:`~odin_monitor.bench.serve.cli`: ``python -m odin_monitor.bench.serve --help``
  (also ``odin-monitor bench serve``);
* :mod:`~odin_monitor.bench.serve.tuning_ab`: the serving-process tunings (malloc, one
  scorer thread) on and off, one model served four ways side by side.

This benchmark imports :mod:`mlflow_plugin` (the benchmarks sit above the core and the
plugin; neither imports them).

Example:
    >>> from odin_monitor.bench.serve import run_serve, format_markdown
    >>> result = run_serve(batch_sizes=(1, 32), requests_per_size=10)  # doctest: +SKIP
    >>> print(format_markdown(result))  # doctest: +SKIP
"""

from __future__ import annotations

from odin_monitor.bench.serve.cli import main
from odin_monitor.bench.serve.report import format_markdown
from odin_monitor.bench.serve.results import SCORE_TOLERANCE, ServeResult, SizeResult
from odin_monitor.bench.serve.run import run_serve

__all__ = [
    "SCORE_TOLERANCE",
    "ServeResult",
    "SizeResult",
    "format_markdown",
    "main",
    "run_serve",
]
