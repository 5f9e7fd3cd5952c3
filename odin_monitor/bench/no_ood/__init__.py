"""Calibration without OOD data (issue 12): the no-OOD rules against an OOD-tuned detector.

Without real OOD validation data, :func:`odin_monitor.calibrate` must choose ``(T, ε)``
by a rule. This benchmark compares the rules on the shared real data at each ResNet
depth, with the protocol stated before any test result
(:data:`~odin_monitor.bench.no_ood.config.PROTOCOL`): R0 noise, R1 the paper's default,
R2 Generalized-ODIN's mean-ID-score ε search, R4 jigsaw (the library's default), against
REF (tuned on a TIN-crop validation split) and MSP, on TIN crop, both TIN resizes,
Gaussian and Uniform test sets.

Modules, by role:

* :mod:`~odin_monitor.bench.no_ood.config`: the protocol, grids, :class:`NoOodConfig`;
* :mod:`~odin_monitor.bench.no_ood.data`: the protocol's seeded splits;
* :mod:`~odin_monitor.bench.no_ood.cache`: score grids computed once (``--cache``);
* :mod:`~odin_monitor.bench.no_ood.rules`: the rules, the goal, the selection;
* :mod:`~odin_monitor.bench.no_ood.run`: :func:`run_no_ood` (results in
  :mod:`~odin_monitor.bench.no_ood.results`);
* :mod:`~odin_monitor.bench.no_ood.report`: :func:`format_markdown`;
* :mod:`~odin_monitor.bench.no_ood.cli`: ``python -m odin_monitor.bench.no_ood --help``
  (also ``odin-monitor bench no-ood``).
"""

from __future__ import annotations

from odin_monitor.bench.no_ood.cli import main
from odin_monitor.bench.no_ood.config import NO_OOD_RULES, PROTOCOL, NoOodConfig
from odin_monitor.bench.no_ood.report import format_markdown
from odin_monitor.bench.no_ood.results import DepthNoOod, NoOodResult, RuleChoice
from odin_monitor.bench.no_ood.run import evaluate, run_no_ood

__all__ = [
    "NO_OOD_RULES",
    "PROTOCOL",
    "DepthNoOod",
    "NoOodConfig",
    "NoOodResult",
    "RuleChoice",
    "evaluate",
    "format_markdown",
    "main",
    "run_no_ood",
]
