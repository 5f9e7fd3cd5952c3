"""Quality benchmark: the ODIN paper's Tables 2 and 3 on real data (MSP vs ODIN).

Protocol (Liang, Li & Srikant, ICLR 2018, section 4 and appendix), as run here:

* **In-distribution**: ``cifar10_test_lossless.npz`` (the first 1,000 CIFAR-10 test
  images, lossless), split by a seeded permutation into a validation half and a
  test half (500/500).
* **OOD sources**: Tiny ImageNet crop, Tiny ImageNet resize (Pillow), Tiny ImageNet
  resize (the ODIN authors' own files), and seeded Gaussian and Uniform noise. The
  three Tiny ImageNet files hold the *same* 10,000 source images (row ``i`` is
  ``test_i`` in each), so one seeded split of the row indices is shared by all three:
  no source image is in a validation split of one and a test split of another.
  Each source gives ``n_ood_val`` validation and ``n_ood_test`` test images,
  disjoint.
* **Table 2** (the paper's protocol): for each test source, ``(T, ε)`` is the pair of
  the grid with the lowest FPR at 95% TPR on the ID validation half vs *that
  source's held-out validation split* (disjoint images, as the paper held out 1,000
  images of each OOD set); metrics are then read on the ID test half vs the source's
  test split. MSP is ``T = 1, ε = 0``.
* **Table 3** (transfer): rows = test sources; columns = the validation set the
  pair was chosen on: each source's validation split, Gaussian+Uniform pooled
  (what :func:`odin_monitor.calibrate` does without OOD data), and "no OOD data" =
  the paper's default ``T = 1000, ε = 0.0014``.

The grid is computed with :func:`odin_monitor.scoring.grid_scores` (one backward per
``T``), selection uses :func:`odin_monitor.calibration.select_best`, metrics
:func:`odin_monitor.ood_metrics`: the benchmark measures the library itself.

Modules, by role:

* :mod:`~odin_monitor.bench.quality.config`: the data files, the protocol's constants,
  :class:`QualityConfig`;
* :mod:`~odin_monitor.bench.quality.data`: the seeded, disjoint splits;
* :mod:`~odin_monitor.bench.quality.run`: :func:`run_quality` (results in
  :mod:`~odin_monitor.bench.quality.results`);
* :mod:`~odin_monitor.bench.quality.report`: :func:`format_markdown`, and
  :mod:`~odin_monitor.bench.quality.plots`: ROC, histograms, grid heatmap;
* :mod:`~odin_monitor.bench.quality.cli`: ``python -m odin_monitor.bench.quality --help``
  (also ``odin-monitor bench quality``).
"""

from __future__ import annotations

from odin_monitor.bench.quality.cli import main
from odin_monitor.bench.quality.config import (
    ID_FILE,
    NO_OOD,
    OOD_FILES,
    POOLED_SYNTHETIC,
    QUALITY_QUICK_EPSILONS,
    QUALITY_QUICK_TEMPERATURES,
    QualityConfig,
)
from odin_monitor.bench.quality.report import format_markdown
from odin_monitor.bench.quality.results import Choice, DepthQuality, QualityResult
from odin_monitor.bench.quality.run import run_quality

__all__ = [
    "ID_FILE",
    "NO_OOD",
    "OOD_FILES",
    "POOLED_SYNTHETIC",
    "QUALITY_QUICK_EPSILONS",
    "QUALITY_QUICK_TEMPERATURES",
    "Choice",
    "DepthQuality",
    "QualityConfig",
    "QualityResult",
    "format_markdown",
    "main",
    "run_quality",
]
