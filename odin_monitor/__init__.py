"""odin-monitor: ODIN out-of-distribution detection for PyTorch image classifiers.

Score convention, everywhere: **higher = more in-distribution**.

Example:
    >>> from odin_monitor import OdinDetector, Normalization, calibrate, ood_metrics
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

# A model folder ships a partial copy of this package (what loading needs): span every
# copy on sys.path, so that the rest of an installed copy stays importable.
__path__ = pkgutil.extend_path(__path__, __name__)

from odin_monitor._version import __version__

# The public API is imported on first use (PEP 562), so that `import odin_monitor`
# (and the command line's --help) does not pay for torch, scikit-learn and pandas.
_LAZY: dict[str, str] = {
    "PAPER_EPSILONS": "odin_monitor.grid",
    "PAPER_TEMPERATURES": "odin_monitor.grid",
    "CalibrationResult": "odin_monitor.calibration",
    "GridPoint": "odin_monitor.grid",
    "calibrate": "odin_monitor.calibration",
    "BatchScores": "odin_monitor.detector",
    "OdinDetector": "odin_monitor.detector",
    "CalibrationError": "odin_monitor.errors",
    "DataLoadError": "odin_monitor.errors",
    "InputValidationError": "odin_monitor.errors",
    "ModelLoadError": "odin_monitor.errors",
    "NotFittedError": "odin_monitor.errors",
    "OdinError": "odin_monitor.errors",
    "CalibrationGrid": "odin_monitor.grid",
    "ood_metrics": "odin_monitor.metrics",
    "threshold_at_tpr": "odin_monitor.metrics",
    "Normalization": "odin_monitor.normalization",
    "CalibrationRecord": "odin_monitor.record",
    "ValidationSource": "odin_monitor.record",
    "OdinScores": "odin_monitor.scoring",
    "grid_scores": "odin_monitor.scoring",
    "max_softmax": "odin_monitor.scoring",
    "odin_scores": "odin_monitor.scoring",
    "spread_score": "odin_monitor.scoring",
}

if TYPE_CHECKING:
    from odin_monitor.calibration import CalibrationResult, calibrate
    from odin_monitor.detector import BatchScores, OdinDetector
    from odin_monitor.errors import (
        CalibrationError,
        DataLoadError,
        InputValidationError,
        ModelLoadError,
        NotFittedError,
        OdinError,
    )
    from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid, GridPoint
    from odin_monitor.metrics import ood_metrics, threshold_at_tpr
    from odin_monitor.normalization import Normalization
    from odin_monitor.record import CalibrationRecord, ValidationSource
    from odin_monitor.scoring import OdinScores, grid_scores, max_softmax, odin_scores, spread_score


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'odin_monitor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
