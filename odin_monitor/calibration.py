"""Choose ``T`` and ``ε`` on validation data, as in the ODIN paper.

The paper's grid: ``T ∈ {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}`` and 21 evenly
spaced ``ε`` in ``[0, 0.004]``; the pair minimising FPR at ``tpr_target`` on a
validation OOD set (never the test OOD sets) wins. Ties go to the higher AUROC,
then the smaller ``T``, then the smaller ``ε`` (the key of :func:`selection_key`).

Without real OOD validation data the paper's synthetic sets are used (half
Gaussian, half Uniform noise, seeded), and the record says so.

The grid is computed by :func:`odin_monitor.scoring.grid_scores`, which shares work
(one backward per image per ``T``) and equals a naive loop over all pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from odin_monitor.detector import OdinDetector
from odin_monitor.errors import CalibrationError, InputValidationError
from odin_monitor.metrics import ood_metrics
from odin_monitor.normalization import Normalization
from odin_monitor.record import CalibrationRecord, ValidationSource, content_sha256
from odin_monitor.scoring import ProgressCallback, grid_scores
from odin_monitor.synthetic import gaussian_noise, uniform_noise
from odin_monitor.validation import as_image_tensor, check_tpr_target

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GRID_METRICS",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "CalibrationResult",
    "GridPoint",
    "calibrate",
    "select_best",
    "selection_key",
]

PAPER_TEMPERATURES: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
PAPER_EPSILONS: tuple[float, ...] = tuple(round(0.004 * i / 20, 12) for i in range(21))
GRID_METRICS = ("fpr_at_tpr", "detection_error", "auroc", "aupr_in", "aupr_out")


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
    """The preferred pair of a grid under :func:`selection_key`."""
    if not points:
        raise CalibrationError("Expected a non-empty calibration grid.")
    return min(points, key=selection_key)


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` returns.

    Attributes:
        detector: The fitted detector at the chosen ``(T, ε)``.
        record: Its :class:`CalibrationRecord`.
        grid: Metrics of every pair, temperature-major.
        temperatures: The grid's ``T`` values.
        epsilons: The grid's ``ε`` values.
        id_scores: float64 ``(len(T), len(ε), N_in)`` validation scores.
        ood_scores: float64 ``(len(T), len(ε), N_out)`` validation scores.
    """

    detector: OdinDetector
    record: CalibrationRecord
    grid: tuple[GridPoint, ...]
    temperatures: tuple[float, ...]
    epsilons: tuple[float, ...]
    id_scores: np.ndarray = field(repr=False)
    ood_scores: np.ndarray = field(repr=False)

    @property
    def best(self) -> GridPoint:
        """The chosen pair."""
        return select_best(self.grid)

    def metric_matrix(self, name: str = "fpr_at_tpr") -> np.ndarray:
        """One metric as a ``(len(T), len(ε))`` matrix (for heatmaps)."""
        if name not in GRID_METRICS:
            raise InputValidationError(f"Expected a metric in {GRID_METRICS}, but got {name!r}.")
        values = [p.metrics[name] for p in self.grid]
        return np.asarray(values).reshape(len(self.temperatures), len(self.epsilons))

    def grid_frame(self) -> pd.DataFrame:
        """The grid as a DataFrame, one row per pair, with a ``chosen`` column."""
        import pandas as pd

        best = self.best
        rows = [
            {
                "temperature": p.temperature,
                "epsilon": p.epsilon,
                **p.metrics,
                "chosen": p is best,
            }
            for p in self.grid
        ]
        return pd.DataFrame(rows)


def _as_hyper(values: Sequence[float], name: str, allow_zero: bool) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise InputValidationError(f"Expected `{name}` to be a list of numbers.") from err
    if not out:
        raise InputValidationError(f"Expected at least one value in `{name}`, but got none.")
    bad = [v for v in out if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero)]
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise InputValidationError(f"Expected every value of `{name}` {bound}, but got {bad}.")
    if len(set(out)) != len(out):
        raise InputValidationError(f"Expected distinct values in `{name}`, but got {out}.")
    return out


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

    Returns:
        :class:`CalibrationResult` with the fitted detector, its record and the grid.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        >>> res = calibrate(net, torch.rand(40, 3, 4, 4), normalization=None,
        ...                 temperatures=[1, 1000], epsilons=[0.0, 0.002])
        >>> len(res.grid), res.record.sources[1].name
        (4, 'gaussian')
    """
    temps = _as_hyper(temperatures, "temperatures", allow_zero=False)
    eps = _as_hyper(epsilons, "epsilons", allow_zero=True)
    tpr = check_tpr_target(tpr_target)
    channels = None if normalization is None else normalization.channels
    x_id = as_image_tensor(x_id_val, "x_id_val", channels=channels)
    c, h, w = (int(s) for s in x_id.shape[1:])
    x_ood, ood_sources = _ood_sets(
        x_ood_val, (c, h, w), n_synthetic or int(x_id.shape[0]), seed, ood_name
    )
    common = {
        "temperatures": temps,
        "epsilons": eps,
        "normalization": normalization,
        "batch_size": batch_size,
        "mixed_precision": mixed_precision,
        "device": device,
        "progress": progress,
    }
    s_id = grid_scores(model, x_id, **common).numpy()  # type: ignore[arg-type]
    s_ood = grid_scores(model, x_ood, **common).numpy()  # type: ignore[arg-type]
    grid = tuple(
        GridPoint(
            temperature=t,
            epsilon=e,
            metrics={
                k: v
                for k, v in ood_metrics(s_id[i, j], s_ood[i, j], tpr).items()
                if k in GRID_METRICS
            },
        )
        for i, t in enumerate(temps)
        for j, e in enumerate(eps)
    )
    best = select_best(grid)
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
    i, j = temps.index(best.temperature), eps.index(best.epsilon)
    metrics = dict(ood_metrics(s_id[i, j], s_ood[i, j], tpr))
    if 1.0 in temps and 0.0 in eps:
        msp = ood_metrics(
            s_id[temps.index(1.0), eps.index(0.0)], s_ood[temps.index(1.0), eps.index(0.0)], tpr
        )
        metrics.update({f"msp_{k}": v for k, v in msp.items()})
    names = ", ".join(s.name for s in ood_sources)
    record = detector.to_record(
        ood_sources=ood_sources,
        metrics=metrics,
        selection=(
            f"min fpr_at_tpr@{tpr:g} over {len(temps)}x{len(eps)} (T, epsilon) grid on OOD "
            f"validation [{names}]{' (synthetic)' if x_ood_val is None else ''}"
        ),
    )
    return CalibrationResult(
        detector=detector,
        record=record,
        grid=grid,
        temperatures=temps,
        epsilons=eps,
        id_scores=s_id,
        ood_scores=s_ood,
    )
