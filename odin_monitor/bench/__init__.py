"""Benchmarks: ODIN's detection quality on real data, its speed, and serving it over HTTP.

One package per benchmark, each split by role (running, results, report, command line):

* :mod:`odin_monitor.bench.quality`: MSP vs ODIN like the paper's Tables 2 and 3;
* :mod:`odin_monitor.bench.speed`: images/s and ratios to a plain forward, the paper's
  per-image loop, pytorch-ood, and grid vs naive calibration;
* :mod:`odin_monitor.bench.serve`: latency and throughput of ``mlflow models serve``;
* :mod:`odin_monitor.bench.per_image`, :mod:`odin_monitor.bench.peers`: the comparison
  implementations; :mod:`odin_monitor.bench.common`: data folder, models, machine facts,
  tables; ``gpu_check.sh``: the one-shot GPU speed run.

The benchmarks sit above the core and :mod:`mlflow_plugin` (only ``serve`` imports the
plugin); neither imports them. ``quality`` and ``speed`` import neither MLflow nor
Evidently, so they run on a bare GPU box. Command lines: ``python -m
odin_monitor.bench.quality|speed|serve --help`` or ``odin-monitor bench ...``.
Submodules are imported lazily (``from odin_monitor.bench import quality``).
"""

from __future__ import annotations

__all__ = ["common", "peers", "per_image", "quality", "serve", "speed"]
