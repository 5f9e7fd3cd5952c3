"""Choose ``T`` and ``ε`` on validation data, as in the ODIN paper.

The paper's grid (:mod:`odin_monitor.grid`): ``T ∈ {1, 2, 5, 10, 20, 50, 100, 200,
500, 1000}`` and 21 evenly spaced ``ε`` in ``[0, 0.004]``; the pair minimising FPR at
``tpr_target`` on a validation OOD set (never the test OOD sets) wins. Ties go to the
higher AUROC, then the smaller ``T``, then the smaller ``ε``.

Without real OOD validation data the paper's synthetic sets are used (half
Gaussian, half Uniform noise, seeded), and the record says so.

The grid is computed by :func:`odin_monitor.scoring.grid_scores`, which shares work
(one backward per image per ``T``) and equals a naive loop over all pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from odin_monitor.detector import OdinDetector
from odin_monitor.errors import InputValidationError
from odin_monitor.grid import (
    GRID_METRICS,
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    CalibrationGrid,
    GridPoint,
    select_best,
    selection_key,
)
from odin_monitor.hyper import check_epsilon, check_grid, check_temperature
from odin_monitor.metrics import ood_metrics
from odin_monitor.normalization import Normalization
from odin_monitor.preprocess import Preprocessing
from odin_monitor.record import CalibrationRecord, ValidationSource, content_sha256
from odin_monitor.scoring import ProgressCallback, grid_scores
from odin_monitor.synthetic import gaussian_noise, uniform_noise
from odin_monitor.validation import as_image_tensor, check_tpr_target

if TYPE_CHECKING:
    import pandas as pd

# The grid's names stay importable from here (they lived here first).
__all__ = [
    "GRID_METRICS",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "CalibrationGrid",
    "CalibrationResult",
    "GridPoint",
    "calibrate",
    "select_best",
    "selection_key",
]


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` returns.

    Attributes:
        detector: The fitted detector at the chosen ``(T, ε)``.
        record: Its :class:`CalibrationRecord`.
        grid: The validation scores and metrics of every ``(T, ε)`` pair.
    """

    detector: OdinDetector
    record: CalibrationRecord
    grid: CalibrationGrid = field(repr=False)

    @property
    def chosen(self) -> tuple[float, float]:
        """``(T, ε)`` of the fitted detector (the record's)."""
        return (self.record.temperature, self.record.epsilon)

    @property
    def best(self) -> GridPoint:
        """The grid point of the chosen pair."""
        return self.grid.point(*self.chosen)

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The grid's ``T`` values."""
        return self.grid.temperatures

    @property
    def epsilons(self) -> tuple[float, ...]:
        """The grid's ``ε`` values."""
        return self.grid.epsilons

    @property
    def id_scores(self) -> np.ndarray:
        """float64 ``(len(T), len(ε), N_in)`` in-distribution validation scores."""
        return self.grid.id_scores

    @property
    def ood_scores(self) -> np.ndarray:
        """float64 ``(len(T), len(ε), N_out)`` OOD validation scores."""
        return self.grid.ood_scores

    def metric_matrix(self, name: str = "fpr_at_tpr") -> np.ndarray:
        """One metric as a ``(len(T), len(ε))`` matrix (for heatmaps)."""
        return self.grid.metric_matrix(name)

    def grid_frame(self) -> pd.DataFrame:
        """The grid as a DataFrame, one row per pair, with a ``chosen`` column."""
        return self.grid.frame(self.chosen)


def _ood_sets(
    x_ood_val: Any,
    shape: tuple[int, int, int],
    n_synthetic: int,
    seed: int,
    ood_name: str | None,
) -> tuple[torch.Tensor, tuple[ValidationSource, ...]]:
    sets: dict[str, tuple[Any, int | None]]
    if x_ood_val is None:
        n_gauss = max(1, n_synthetic // 2)
        n_unif = max(1, n_synthetic - n_gauss)
        sets = {
            "gaussian": (gaussian_noise(n_gauss, shape, seed), seed),
            "uniform": (uniform_noise(n_unif, shape, seed + 1), seed + 1),
        }
        synthetic = True
    elif isinstance(x_ood_val, Mapping):
        if not x_ood_val:
            raise InputValidationError("Expected at least one OOD validation set, got {}.")
        sets = {str(k): (v, None) for k, v in x_ood_val.items()}
        synthetic = False
    else:
        sets = {ood_name or "ood_validation": (x_ood_val, None)}
        synthetic = False
    tensors, sources = [], []
    for name, (images, set_seed) in sets.items():
        t = as_image_tensor(images, f"x_ood_val[{name!r}]", image_shape=shape)
        tensors.append(t)
        sources.append(
            ValidationSource(
                role="ood",
                name=name,
                n_images=int(t.shape[0]),
                sha256=content_sha256(t),
                synthetic=synthetic,
                seed=set_seed,
            )
        )
    return torch.cat(tensors), tuple(sources)


def calibrate(
    model: nn.Module,
    x_id_val: Any,
    x_ood_val: Any = None,
    *,
    normalization: Normalization | None,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    tpr_target: float = 0.95,
    batch_size: int = 256,
    mixed_precision: bool = False,
    device: torch.device | str | None = None,
    seed: int = 0,
    n_synthetic: int | None = None,
    id_name: str = "in_distribution",
    ood_name: str | None = None,
    class_names: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    preprocessing: Preprocessing | Literal["auto"] | None = "auto",
) -> CalibrationResult:
    """Choose ``(T, ε)`` minimising FPR at ``tpr_target`` and fit δ.

    Args:
        model: Any module mapping ``(N, C, H, W)`` to logits ``(N, K)``.
        x_id_val: In-distribution validation images, raw pixels in [0, 1].
        x_ood_val: OOD validation images (one array, or a ``{name: array}`` mapping of
            several, pooled), never the test OOD sets. ``None`` = the paper's synthetic
            Gaussian + Uniform noise, seeded by ``seed``.
        normalization: The model's input normalisation, or ``None`` (raw pixels).
        temperatures: Grid of ``T`` (default: the paper's).
        epsilons: Grid of ``ε`` in pixel units (default: the paper's 21 values).
        tpr_target: TPR at which FPR is minimised and δ is set.
        batch_size: Images per chunk.
        mixed_precision: Autocast the model (bf16).
        device: Where to compute; default the model's device.
        seed: Seed of the synthetic sets.
        n_synthetic: Size of the synthetic set (default: as many as ``x_id_val``).
        id_name: Name of the in-distribution set in the record.
        ood_name: Name of a single OOD array in the record.
        class_names: Optional class names stored in the record.
        progress: Called with the number of images finished after each chunk;
            the total is ``2 * N_in + N_out``.
        preprocessing: How raw image files become the model's input, stored in the
            record (:class:`~odin_monitor.preprocess.Preprocessing`; the spec the images
            were loaded with, when loaded from files); ``"auto"``: an exact bilinear
            resize to the input size; ``None``: tensors only.

    Returns:
        :class:`CalibrationResult` with the fitted detector, its record and the grid.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        >>> res = calibrate(net, torch.rand(40, 3, 4, 4), normalization=None,
        ...                 temperatures=[1, 1000], epsilons=[0.0, 0.002])
        >>> len(res.grid.points), res.record.sources[1].name
        (4, 'gaussian')
    """
    temps = check_grid(temperatures, "temperatures", check_temperature)
    eps = check_grid(epsilons, "epsilons", check_epsilon)
    tpr = check_tpr_target(tpr_target)
    channels = None if normalization is None else normalization.channels
    x_id = as_image_tensor(x_id_val, "x_id_val", channels=channels)
    c, h, w = (int(s) for s in x_id.shape[1:])
    x_ood, ood_sources = _ood_sets(
        x_ood_val, (c, h, w), n_synthetic or int(x_id.shape[0]), seed, ood_name
    )

    def scores(x: torch.Tensor) -> np.ndarray:
        return grid_scores(
            model,
            x,
            temperatures=temps,
            epsilons=eps,
            normalization=normalization,
            batch_size=batch_size,
            mixed_precision=mixed_precision,
            device=device,
            progress=progress,
        ).numpy()

    s_id, s_ood = scores(x_id), scores(x_ood)
    grid = CalibrationGrid.from_scores(s_id, s_ood, temps, eps, tpr)
    best = grid.best
    detector = OdinDetector(
        model,
        temperature=best.temperature,
        epsilon=best.epsilon,
        normalization=normalization,
        tpr_target=tpr,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        device=device,
        class_names=class_names,
    ).fit(x_id, source_name=id_name, progress=progress)
    metrics = dict(ood_metrics(*grid.scores_at(best.temperature, best.epsilon), tpr))
    if grid.msp is not None:
        msp = ood_metrics(*grid.scores_at(1.0, 0.0), tpr)
        metrics.update({f"msp_{k}": v for k, v in msp.items()})
    names = ", ".join(s.name for s in ood_sources)
    record = detector.to_record(
        ood_sources=ood_sources,
        metrics=metrics,
        selection=(
            f"min fpr_at_tpr@{tpr:g} over {len(temps)}x{len(eps)} (T, epsilon) grid on OOD "
            f"validation [{names}]{' (synthetic)' if x_ood_val is None else ''}"
        ),
        preprocessing=preprocessing,
    )
    return CalibrationResult(detector=detector, record=record, grid=grid)
