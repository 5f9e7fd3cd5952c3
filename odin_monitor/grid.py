"""The ``T × ε`` calibration grid: scores of every pair → metrics → the chosen pair.

One object for what calibration computes and what plots, the MLflow artifacts and the
benchmarks read: :class:`CalibrationGrid` holds the validation scores of every pair
(in-distribution and OOD), the metrics of every pair (:class:`GridPoint`), the chosen
pair (:func:`select_best`) and the ROC curves of the chosen pair and of the MSP
baseline (:meth:`CalibrationGrid.curves`).

The paper's grid: ``T ∈ {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}`` and 21 evenly
spaced ``ε`` in ``[0, 0.004]``. Ties go to the higher AUROC, then the smaller ``T``,
then the smaller ``ε`` (:func:`selection_key`).

A pair may be left unscored (every one of its scores NaN, as successive halving
leaves the pairs that cannot win, :mod:`odin_monitor.search`): its metrics are NaN,
it is never chosen, and :attr:`CalibrationGrid.finished` says which pairs were scored.

Example:
    >>> rng = np.random.default_rng(0)
    >>> s_in, s_out = rng.uniform(0.5, 1, (2, 2, 50)), rng.uniform(0, 0.6, (2, 2, 40))
    >>> grid = CalibrationGrid.from_scores(s_in, s_out, (1.0, 1000.0), (0.0, 0.002))
    >>> len(grid.points), list(grid.curves((1000.0, 0.002)))
    (4, ['ODIN (T=1000, ε=0.002)', 'MSP (T=1, ε=0)'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from odin_monitor.errors import CalibrationError, InputValidationError
from odin_monitor.metrics import ood_metrics
from odin_monitor.validation import check_tpr_target

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GRID_METRICS",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "CalibrationGrid",
    "GridPoint",
    "select_best",
    "selection_key",
]

PAPER_TEMPERATURES: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
PAPER_EPSILONS: tuple[float, ...] = tuple(round(0.004 * i / 20, 12) for i in range(21))
GRID_METRICS = ("fpr_at_tpr", "detection_error", "auroc", "aupr_in", "aupr_out")
MSP_NAME = "MSP (T=1, ε=0)"


@dataclass(frozen=True)
class GridPoint:
    """Validation metrics of one ``(T, ε)`` pair."""

    temperature: float
    epsilon: float
    metrics: Mapping[str, float]


def selection_key(point: GridPoint) -> tuple[float, float, float, float]:
    """Order of preference: lower FPR, then higher AUROC, smaller ``T``, smaller ``ε``."""
    return (point.metrics["fpr_at_tpr"], -point.metrics["auroc"], point.temperature, point.epsilon)


def select_best(points: Sequence[GridPoint]) -> GridPoint:
    """The preferred pair of a grid under :func:`selection_key`; unscored pairs (NaN) never win."""
    scored = [p for p in points if not math.isnan(p.metrics["fpr_at_tpr"])]
    if not scored:
        raise CalibrationError(
            "Expected a calibration grid with at least one scored pair, but got "
            f"{len(points)} pairs and none scored."
        )
    return min(scored, key=selection_key)


@dataclass(frozen=True)
class CalibrationGrid:
    """Validation scores and metrics of every ``(T, ε)`` pair, and the chosen pair.

    Build it with :meth:`from_scores`.

    Attributes:
        temperatures: The grid's ``T`` values.
        epsilons: The grid's ``ε`` values.
        id_scores: float64 ``(len(T), len(ε), N_in)`` in-distribution validation scores
            (NaN for unscored pairs).
        ood_scores: float64 ``(len(T), len(ε), N_out)`` OOD validation scores.
        tpr_target: The TPR at which FPR is read.
        points: Metrics of every pair, temperature-major.
    """

    temperatures: tuple[float, ...]
    epsilons: tuple[float, ...]
    id_scores: np.ndarray = field(repr=False)
    ood_scores: np.ndarray = field(repr=False)
    tpr_target: float = 0.95
    points: tuple[GridPoint, ...] = field(default=(), repr=False)

    @classmethod
    def from_scores(
        cls,
        id_scores: np.ndarray,
        ood_scores: np.ndarray,
        temperatures: Sequence[float],
        epsilons: Sequence[float],
        tpr_target: float = 0.95,
    ) -> CalibrationGrid:
        """Compute the metrics of every pair from the score cubes.

        Args:
            id_scores: ``(len(T), len(ε), N_in)`` scores (higher = in-distribution);
                a pair whose every score (ID and OOD) is NaN is unscored.
            ood_scores: ``(len(T), len(ε), N_out)`` scores.
            temperatures: The ``T`` values, in the cubes' order.
            epsilons: The ``ε`` values, in the cubes' order.
            tpr_target: TPR at which FPR and detection error are read.

        Raises:
            InputValidationError: The cubes do not match the grid's shape.
        """
        temps = tuple(float(t) for t in temperatures)
        eps = tuple(float(e) for e in epsilons)
        s_in, s_out = np.asarray(id_scores), np.asarray(ood_scores)
        want = (len(temps), len(eps))
        if s_in.ndim != 3 or s_out.ndim != 3 or s_in.shape[:2] != want or s_out.shape[:2] != want:
            raise InputValidationError(
                f"Expected score cubes of shape ({want[0]}, {want[1]}, N), but got "
                f"{s_in.shape} and {s_out.shape}."
            )
        tpr = check_tpr_target(tpr_target)
        unscored = np.isnan(s_in).all(axis=2) & np.isnan(s_out).all(axis=2)
        nan_metrics = dict.fromkeys(GRID_METRICS, math.nan)
        points = tuple(
            GridPoint(
                temperature=t,
                epsilon=e,
                metrics=nan_metrics
                if unscored[i, j]
                else {
                    k: v
                    for k, v in ood_metrics(s_in[i, j], s_out[i, j], tpr).items()
                    if k in GRID_METRICS
                },
            )
            for i, t in enumerate(temps)
            for j, e in enumerate(eps)
        )
        return cls(temps, eps, s_in, s_out, tpr, points)

    @property
    def finished(self) -> np.ndarray:
        """Boolean ``(len(T), len(ε))``: the pairs scored on every image (not NaN)."""
        return ~np.isnan(self.metric_matrix("fpr_at_tpr"))

    @property
    def best(self) -> GridPoint:
        """The chosen pair (:func:`select_best`)."""
        return select_best(self.points)

    def index(self, temperature: float, epsilon: float) -> tuple[int, int]:
        """Position of a pair in the cubes.

        Raises:
            InputValidationError: The pair is not on the grid.
        """
        try:
            return self.temperatures.index(float(temperature)), self.epsilons.index(float(epsilon))
        except ValueError:
            raise InputValidationError(
                f"Expected a pair of the grid (T in {self.temperatures}, ε in {self.epsilons}), "
                f"but got T={temperature}, ε={epsilon}."
            ) from None

    def scores_at(self, temperature: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
        """``(id_scores, ood_scores)`` of one pair."""
        i, j = self.index(temperature, epsilon)
        return self.id_scores[i, j], self.ood_scores[i, j]

    @property
    def msp(self) -> GridPoint | None:
        """The MSP baseline (``T = 1``, ``ε = 0``) when the grid holds it."""
        if 1.0 not in self.temperatures or 0.0 not in self.epsilons:
            return None
        return self.point(1.0, 0.0)

    def metric_matrix(self, name: str = "fpr_at_tpr") -> np.ndarray:
        """One metric as a ``(len(T), len(ε))`` matrix (for heatmaps)."""
        if name not in GRID_METRICS:
            raise InputValidationError(f"Expected a metric in {GRID_METRICS}, but got {name!r}.")
        values = [p.metrics[name] for p in self.points]
        return np.asarray(values).reshape(len(self.temperatures), len(self.epsilons))

    def point(self, temperature: float, epsilon: float) -> GridPoint:
        """The :class:`GridPoint` of one pair."""
        i, j = self.index(temperature, epsilon)
        return self.points[i * len(self.epsilons) + j]

    def curves(
        self, chosen: tuple[float, float] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """ROC inputs ``{name: (id_scores, ood_scores)}``: the chosen pair, then MSP.

        Args:
            chosen: ``(T, ε)`` to show as ODIN; default :attr:`best`.
        """
        t, e = chosen if chosen is not None else (self.best.temperature, self.best.epsilon)
        out = {f"ODIN (T={t:g}, ε={e:g})": self.scores_at(t, e)}
        if self.msp is not None:
            out[MSP_NAME] = self.scores_at(1.0, 0.0)
        return out

    def frame(self, chosen: tuple[float, float] | None = None) -> pd.DataFrame:
        """The grid as a DataFrame, one row per pair, with a ``chosen`` column."""
        import pandas as pd

        t, e = chosen if chosen is not None else (self.best.temperature, self.best.epsilon)
        rows = [
            {
                "temperature": p.temperature,
                "epsilon": p.epsilon,
                **p.metrics,
                "chosen": (p.temperature, p.epsilon) == (t, e),
            }
            for p in self.points
        ]
        return pd.DataFrame(rows)
