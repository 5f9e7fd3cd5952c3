"""What a quality run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odin_monitor.bench.quality.config import QualityConfig

__all__ = ["Choice", "DepthQuality", "QualityResult"]


@dataclass(frozen=True)
class Choice:
    """The ``(T, ε)`` chosen on one validation set, with its validation FPR."""

    validation: str
    temperature: float
    epsilon: float
    val_fpr: float | None


@dataclass(frozen=True)
class DepthQuality:
    """Results of one ResNet depth.

    Attributes:
        depth: ResNet depth.
        id_test_accuracy: Top-1 accuracy on the in-distribution test half.
        choices: Validation column -> chosen pair (Table 3 columns; Table 2 uses the
            test source's own column).
        msp: Test source -> MSP metrics (``ood_metrics`` keys).
        odin: Test source -> ODIN metrics at the pair chosen on its own validation split.
        transfer: Test source -> validation column -> ODIN metrics at that column's pair.
        grid_fpr: Validation column -> validation FPR over the grid, ``(len(T), len(ε))``.
        seconds: Wall time of this depth.
        plots: Files written.
    """

    depth: int
    id_test_accuracy: float
    choices: dict[str, Choice]
    msp: dict[str, dict[str, float]]
    odin: dict[str, dict[str, float]]
    transfer: dict[str, dict[str, dict[str, float]]]
    grid_fpr: dict[str, np.ndarray] = field(repr=False)
    seconds: float = 0.0
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class QualityResult:
    """What :func:`run_quality` returns."""

    config: QualityConfig
    depths: tuple[DepthQuality, ...]
    machine: dict[str, str]
    command: str
    n_id_test: int
    sources: tuple[str, ...]
