"""Benchmarks: ODIN's detection quality on real data and its speed against peers.

* :mod:`odin_monitor.bench.quality`: MSP vs ODIN like the paper's Tables 2 and 3
  (:func:`~odin_monitor.bench.quality.run_quality`, ``format_markdown``);
* :mod:`odin_monitor.bench.speed`: images/s and ratios to a plain forward, the
  paper's per-image loop, pytorch-ood, and grid vs naive calibration
  (:func:`~odin_monitor.bench.speed.run_speed`, ``format_markdown``);
* :mod:`odin_monitor.bench.per_image`, :mod:`odin_monitor.bench.peers`: the
  comparison implementations; :mod:`odin_monitor.bench.common`: shared helpers.

Command lines: ``python -m odin_monitor.bench.quality --help`` and
``python -m odin_monitor.bench.speed --help``. Nothing here imports MLflow or
Evidently. Submodules are imported lazily (``from odin_monitor.bench import quality``).
"""

from __future__ import annotations

__all__ = ["common", "peers", "per_image", "quality", "speed"]
