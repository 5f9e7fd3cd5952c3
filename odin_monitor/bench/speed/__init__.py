"""Speed benchmark: ODIN scoring against a plain forward, the paper's loop and pytorch-ood.

Same model, same inputs, one process, methods **interleaved** round by round (so
background load hits them alike), after one warm-up call each; the figure of a
method is the median of its rounds (``time.perf_counter``, with a device
synchronisation around each call on CUDA). Ratios are per image:
``(time per image of a method) / (time per image of a plain forward)``.

Methods, per (ResNet depth, batch size, precision):

* ``forward``: ``model(normalize(x))`` under ``torch.inference_mode()`` (the unit);
* ``odin (ours)``: :func:`odin_monitor.odin_scores` (forward with the input
  attached, input-only backward, no-grad forward);
* ``forward (channels_last input)``: the same plain forward on a channels_last copy
  of the batch. ``odin_scores`` feeds CPU batches channels_last (oneDNN runs faster
  on it), so this is the fair floor for ours on CPU: ratios to both are reported;
* ``pytorch-ood ODIN``: :mod:`odin_monitor.bench.peers` (fp32 only; skipped with a
  note when pytorch-ood is not installed);
* ``per-image loop (paper's code)``: :mod:`odin_monitor.bench.per_image`, batch
  size 1 with parameter gradients (fp32, on ``n_per_image`` images).

Peak memory: on CPU each method runs once in a fresh subprocess and reports the rise
of its peak RSS over the RSS after loading the model and data (the kernel's peak mark
``VmHWM`` is reset through ``/proc/self/clear_refs`` first; ``ru_maxrss`` elsewhere); on
CUDA ``torch.cuda.max_memory_allocated`` over the allocation before the call.

Calibration: the coarse-to-fine search :func:`odin_monitor.search.search_grid`
(calibrate's default), the halving search and :func:`odin_monitor.scoring.grid_scores`
(the full grid, shared work) vs a
naive loop calling :func:`odin_monitor.odin_scores` once per ``(T, ε)`` pair, on the
same ID and OOD sets (256 each by default); every grid goes through
:class:`odin_monitor.grid.CalibrationGrid`, and the chosen pairs must agree.

Modules, by role: :mod:`~odin_monitor.bench.speed.methods` (what is timed, on which
images), :mod:`~odin_monitor.bench.speed.timing` (interleaved rounds, peak memory),
:mod:`~odin_monitor.bench.speed.calibration` (searches, grid, naive loop),
:mod:`~odin_monitor.bench.speed.run` (:func:`run_speed`, the targets),
:mod:`~odin_monitor.bench.speed.results`, :mod:`~odin_monitor.bench.speed.report`
(:func:`format_markdown`) and :mod:`~odin_monitor.bench.speed.cli`
(``python -m odin_monitor.bench.speed --help``, also ``odin-monitor bench speed``).
"""

from __future__ import annotations

from odin_monitor.bench.speed.calibration import time_calibration
from odin_monitor.bench.speed.cli import main
from odin_monitor.bench.speed.methods import FORWARD, FORWARD_CL, OURS, PEER, PER_IMAGE
from odin_monitor.bench.speed.report import format_markdown
from odin_monitor.bench.speed.results import CalibrationTiming, SpeedResult, SpeedRow, TargetCheck
from odin_monitor.bench.speed.run import run_speed

__all__ = [
    "FORWARD",
    "FORWARD_CL",
    "OURS",
    "PEER",
    "PER_IMAGE",
    "CalibrationTiming",
    "SpeedResult",
    "SpeedRow",
    "TargetCheck",
    "format_markdown",
    "main",
    "run_speed",
    "time_calibration",
]
