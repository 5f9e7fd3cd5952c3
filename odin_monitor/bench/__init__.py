"""Benchmarks: ODIN's detection quality on real data, its speed, and serving it over HTTP.

One package per benchmark, each split by role (running, results, report, command line):

* :mod:`odin_monitor.bench.quality`: MSP vs ODIN like the paper's Tables 2 and 3;
* :mod:`odin_monitor.bench.speed`: images/s and ratios to a plain forward, the paper's
  per-image loop, pytorch-ood, and grid vs naive calibration;
* :mod:`odin_monitor.bench.serve`: latency and throughput of ``mlflow models serve``,
  float-JSON vs base64-image requests;
* :mod:`odin_monitor.bench.spark`: ``binaryFile`` + ``spark_udf`` on real image files vs
  in-process scoring of the same files;
* :mod:`odin_monitor.bench.decode`: decode ms/image (Pillow vs torchvision.io) beside
  the ODIN pass;
* :mod:`odin_monitor.bench.files`, :mod:`odin_monitor.bench.resnet20`: real images as
  encoded files; the pretrained ResNet-20 detector the serving and Spark runs share;
* :mod:`odin_monitor.bench.per_image`, :mod:`odin_monitor.bench.peers`: the comparison
  implementations; :mod:`odin_monitor.bench.common`: data folder, models, machine facts,
  tables; ``gpu_check.sh``: the one-shot GPU speed run.

The benchmarks sit above the core and :mod:`mlflow_plugin` (only ``serve`` and
``spark`` import the plugin); neither imports them. ``quality``, ``speed`` and ``decode``
import neither MLflow nor Evidently, so they run on a bare GPU box. Command lines:
``python -m odin_monitor.bench.quality|speed|serve|spark|decode --help`` or
``odin-monitor bench ...``.
Submodules are imported lazily (``from odin_monitor.bench import quality``).
"""

from __future__ import annotations

__all__ = [
    "common",
    "decode",
    "files",
    "peers",
    "per_image",
    "quality",
    "resnet20",
    "serve",
    "spark",
    "speed",
]
