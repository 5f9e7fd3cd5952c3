"""odin-monitor: ODIN out-of-distribution detection for PyTorch image classifiers.

Score convention, everywhere: **higher = more in-distribution**.

Example:
    >>> from odin_monitor import OdinDetector, Normalization, calibrate, ood_metrics
"""

from __future__ import annotations

import pkgutil

# A model folder ships a partial copy of this package (what loading needs): span every
# copy on sys.path, so that the rest of an installed copy stays importable.
__path__ = pkgutil.extend_path(__path__, __name__)

from odin_monitor._version import __version__
from odin_monitor.calibration import (
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    CalibrationResult,
    GridPoint,
    calibrate,
)
from odin_monitor.detector import BatchScores, OdinDetector
from odin_monitor.errors import (
    CalibrationError,
    DataLoadError,
    InputValidationError,
    ModelLoadError,
    NotFittedError,
    OdinError,
)
from odin_monitor.grid import CalibrationGrid
from odin_monitor.metrics import ood_metrics, threshold_at_tpr
from odin_monitor.normalization import Normalization
from odin_monitor.record import CalibrationRecord, ValidationSource
from odin_monitor.scoring import OdinScores, grid_scores, max_softmax, odin_scores, spread_score

__all__ = [
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "BatchScores",
    "CalibrationError",
    "CalibrationGrid",
    "CalibrationRecord",
    "CalibrationResult",
    "DataLoadError",
    "GridPoint",
    "InputValidationError",
    "ModelLoadError",
    "Normalization",
    "NotFittedError",
    "OdinDetector",
    "OdinError",
    "OdinScores",
    "ValidationSource",
    "__version__",
    "calibrate",
    "grid_scores",
    "max_softmax",
    "odin_scores",
    "ood_metrics",
    "spread_score",
    "threshold_at_tpr",
]
