"""Choose ``T`` and ``ε`` on validation data, as in the ODIN paper.

The paper's grid (:mod:`odin_monitor.grid`): ``T ∈ {1, 2, 5, 10, 20, 50, 100, 200,
500, 1000}`` and 21 evenly spaced ``ε`` in ``[0, 0.004]``; the pair minimising FPR at
``tpr_target`` on a validation OOD set (never the test OOD sets) wins. Ties go to the
higher AUROC, then the smaller ``T``, then the smaller ``ε``.

Without real OOD validation data a named rule chooses (the ``strategy``):
``"jigsaw"`` by default (shuffled patches of the in-distribution validation images
stand in for OOD; it transfers to real OOD sets, docs/RESULTS.md), or ``"noise"`` (the
paper's Gaussian + Uniform sets, which do not). The record says which, and what the
calibration's own checks found (:func:`self_checks`).

The grid is searched by :func:`odin_monitor.search.search_grid`, which shares work
(one backward per image per ``T``, scores equal to a naive loop over all pairs). By
default (``search="coarse-to-fine"``) it scores every ``T`` at every fifth ε of the
paper's grid on all images, estimates the other pairs from those logits (ODIN moves
all ε of one ``T`` along the same line), and finishes on all images only the pairs
whose estimate could still win; it chooses as the full grid unless an estimate
misses by more than the search allows (:mod:`odin_monitor.search` says when that can
happen; ``search="full"`` rules it out). The chosen pair's in-distribution scores come
from that pass: δ is fitted without a second pass over the images.
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
from odin_monitor.scoring import ProgressCallback
from odin_monitor.search import (
    DEFAULT_COARSE_GAP,
    DEFAULT_ESTIMATE_MARGIN,
    DEFAULT_MARGIN_Z,
    DEFAULT_SEARCH,
    DEFAULT_SUBSET_FRACTION,
    Search,
    SearchResult,
    check_search,
    search_grid,
)
from odin_monitor.synthetic import gaussian_noise, jigsaw, uniform_noise
from odin_monitor.validation import as_image_tensor, check_tpr_target

if TYPE_CHECKING:
    import pandas as pd

#: The rules that choose (T, ε): with OOD validation data, and the two without.
STRATEGIES = ("ood-validation", "jigsaw", "noise")
Strategy = Literal["ood-validation", "jigsaw", "noise"]
#: The jigsaw pseudo-OOD set: patches per side, and the seed of the permutations.
JIGSAW_GRID, JIGSAW_SEED = 4, 3

# The grid's names stay importable from here (they lived here first).
__all__ = [
    "GRID_METRICS",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "STRATEGIES",
    "CalibrationGrid",
    "CalibrationResult",
    "GridPoint",
    "calibrate",
    "select_best",
    "selection_key",
    "self_checks",
]


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` returns.

    Attributes:
        detector: The fitted detector at the chosen ``(T, ε)``.
        record: Its :class:`CalibrationRecord`.
        grid: The validation scores and metrics of every ``(T, ε)`` pair (NaN for
            the pairs a halving search did not finish).
        search: How the grid was searched: the subset FPRs, the contenders, the margin.
    """

    detector: OdinDetector
    record: CalibrationRecord
    grid: CalibrationGrid = field(repr=False)
    search: SearchResult | None = field(default=None, repr=False)

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
    x_id: torch.Tensor,
    strategy: Strategy,
    n_synthetic: int,
    seed: int,
    ood_name: str | None,
) -> tuple[torch.Tensor, tuple[ValidationSource, ...]]:
    shape = tuple(int(s) for s in x_id.shape[1:])
    sets: dict[str, tuple[Any, int | None]]
    if strategy == "noise":
        n_gauss = max(1, n_synthetic // 2)
        n_unif = max(1, n_synthetic - n_gauss)
        sets = {
            "gaussian": (gaussian_noise(n_gauss, shape, seed), seed),  # type: ignore[arg-type]
            "uniform": (uniform_noise(n_unif, shape, seed + 1), seed + 1),  # type: ignore[arg-type]
        }
        synthetic = True
    elif strategy == "jigsaw":
        source = x_id[:n_synthetic].detach().cpu().numpy()
        sets = {
            "jigsaw": (
                jigsaw(source, grid=JIGSAW_GRID, seed=JIGSAW_SEED + seed),
                JIGSAW_SEED + seed,
            )
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


def _strategy(strategy: str | None, x_ood_val: Any) -> Strategy:
    if strategy is None:
        return "jigsaw" if x_ood_val is None else "ood-validation"
    if strategy not in STRATEGIES:
        raise InputValidationError(f"Expected strategy in {STRATEGIES}, but got {strategy!r}.")
    if (strategy == "ood-validation") != (x_ood_val is not None):
        raise InputValidationError(
            "Expected OOD validation images with strategy='ood-validation', and none with "
            f"the no-OOD rules {STRATEGIES[1:]}, but got strategy={strategy!r} and "
            f"{'no' if x_ood_val is None else 'some'} x_ood_val."
        )
    return strategy  # type: ignore[return-value]


def self_checks(
    grid: CalibrationGrid,
    chosen: tuple[float, float],
    *,
    accuracy: float | None = None,
    n_classes: int | None = None,
) -> tuple[str, ...]:
    """What a calibration should say about itself (each a sentence with the way out).

    * the classifier's accuracy on labelled validation images, when near chance
      (a wrong normalisation or wrong weights make every score meaningless);
    * the chosen ``T`` or ``ε`` on the edge of a grid of 3 or more values (the best
      pair may lie outside it);
    * ODIN not beating the MSP baseline on the validation data.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> g = CalibrationGrid.from_scores(rng.uniform(0.5, 1, (2, 2, 50)),
        ...     rng.uniform(0, 1, (2, 2, 40)), (1.0, 1000.0), (0.0, 0.002))
        >>> self_checks(g, (1000.0, 0.002), accuracy=0.11, n_classes=10)[0][:40]
        'the classifier classifies 11.0% of the v'
    """
    out: list[str] = []
    if accuracy is not None and n_classes:
        floor = max(0.5, 2.0 / n_classes)
        if accuracy < floor:
            out.append(
                f"the classifier classifies {100 * accuracy:.1f}% of the validation images "
                f"correctly (chance: {100 / n_classes:.1f}%): check the normalisation and the "
                "weights before trusting any OOD score"
            )
    t, e = chosen
    for value, axis, name in ((t, grid.temperatures, "T"), (e, grid.epsilons, "ε")):
        if len(axis) >= 3 and value in (min(axis), max(axis)):
            side = "largest" if value == max(axis) else "smallest"
            out.append(
                f"the chosen {name}={value:g} is the {side} value of the grid "
                f"[{min(axis):g}, {max(axis):g}]: the best value may lie outside it; widen "
                f"the grid of {name}"
            )
    msp = grid.msp
    if msp is not None and (t, e) != (1.0, 0.0):
        odin_fpr = grid.point(t, e).metrics["fpr_at_tpr"]
        msp_fpr = msp.metrics["fpr_at_tpr"]
        if odin_fpr >= msp_fpr:
            out.append(
                f"ODIN (FPR {100 * odin_fpr:.1f}%) does not beat the MSP baseline "
                f"(FPR {100 * msp_fpr:.1f}%) on the validation data: check the OOD "
                "validation set and the normalisation"
            )
    return tuple(out)


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
    strategy: Strategy | None = None,
    y_id_val: Any = None,
    search: Search = DEFAULT_SEARCH,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    margin_z: float = DEFAULT_MARGIN_Z,
    compile: bool = False,
    coarse_gap: float = DEFAULT_COARSE_GAP,
    estimate_margin: float = DEFAULT_ESTIMATE_MARGIN,
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
        progress: Called with the number of images finished after each chunk; the
            total is :func:`odin_monitor.search.progress_total` (``N_in + N_out`` per
            pass over the sets, plus the subsets' sizes when halving; δ reuses the grid
            pass).
        preprocessing: How raw image files become the model's input, stored in the
            record (:class:`~odin_monitor.preprocess.Preprocessing`; the spec the images
            were loaded with, when loaded from files); ``"auto"``: an exact bilinear
            resize to the input size; ``None``: tensors only.
        strategy: The rule that chooses ``(T, ε)`` (stored in the record):
            ``"ood-validation"`` (the default with ``x_ood_val``: the paper's); without
            OOD data ``"jigsaw"`` (the default: the in-distribution validation images
            cut into 4x4 patches and shuffled stand in for OOD; chosen on validation
            splits, it stays within 1.15x (+2 points) of an OOD-tuned detector on real
            OOD sets at every shipped ResNet depth, docs/RESULTS.md) or ``"noise"`` (the
            paper's Gaussian + Uniform; transfers poorly to natural images).
        y_id_val: Labels of ``x_id_val`` (optional): the classifier's accuracy is
            recorded, with a warning when it is near chance.
        search: How the grid is searched (stored in the record):
            ``"coarse-to-fine"`` (the default: every ``T`` with the ε at most
            ``coarse_gap`` apart on every image, the other pairs estimated from those
            logits, then the pairs whose estimate could still win finished on every
            image), ``"halving"`` (every pair on ``subset_fraction`` of each set, then
            the contenders on every image; sets with fewer than 64 subset images are
            searched in full) or ``"full"`` (every pair on every image). Both spare
            pairs and choose as ``"full"`` unless the full grid's pair is mis-judged
            before it is finished (:mod:`odin_monitor.search` says when).
        subset_fraction: Share of each set on which every pair is scored first
            (halving; default 0.25).
        margin_z: Contenders are the pairs whose subset FPR is within this many
            binomial standard errors of the subset's best (halving; default 4).
        compile: Run the grid's forwards on perturbed inputs on the compiled step
            (:mod:`odin_monitor.compiled`; the gradient signs stay eager), and give the
            detector ``compile=True``. Scores then match the eager grid within float32
            rounding, so a pair whose FPR ties another's within that rounding could be
            chosen instead of it.
        coarse_gap: Largest ε spacing of the coarse pass (coarse-to-fine; default 0.001).
        estimate_margin: Smallest FPR allowance of an estimate (coarse-to-fine;
            default 0.01; :func:`odin_monitor.search.pairs_to_finish`).

    Returns:
        :class:`CalibrationResult` with the fitted detector, its record and the grid.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        >>> res = calibrate(net, torch.rand(40, 3, 4, 4), normalization=None,
        ...                 temperatures=[1, 1000], epsilons=[0.0, 0.002])
        >>> len(res.grid.points), res.record.strategy, res.record.sources[1].name
        (4, 'jigsaw', 'jigsaw')
    """
    temps = check_grid(temperatures, "temperatures", check_temperature)
    eps = check_grid(epsilons, "epsilons", check_epsilon)
    tpr = check_tpr_target(tpr_target)
    search, subset_fraction, margin_z = check_search(search, subset_fraction, margin_z)
    channels = None if normalization is None else normalization.channels
    x_id = as_image_tensor(x_id_val, "x_id_val", channels=channels)
    rule = _strategy(strategy, x_ood_val)
    x_ood, ood_sources = _ood_sets(
        x_ood_val, x_id, rule, n_synthetic or int(x_id.shape[0]), seed, ood_name
    )

    found = search_grid(
        model,
        x_id,
        x_ood,
        temperatures=temps,
        epsilons=eps,
        normalization=normalization,
        tpr_target=tpr,
        search=search,
        subset_fraction=subset_fraction,
        margin_z=margin_z,
        seed=seed,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        device=device,
        progress=progress,
        compile=compile,
        coarse_gap=coarse_gap,
        estimate_margin=estimate_margin,
    )
    grid = CalibrationGrid.from_scores(
        found.id_pass.scores.numpy(), found.ood_pass.scores.numpy(), temps, eps, tpr
    )
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
        compile=compile,
    ).fit(
        x_id,
        source_name=id_name,
        scores=found.id_pass.pair(best.temperature, best.epsilon),
    )
    metrics = dict(ood_metrics(*grid.scores_at(best.temperature, best.epsilon), tpr))
    if grid.msp is not None:
        msp = ood_metrics(*grid.scores_at(1.0, 0.0), tpr)
        metrics.update({f"msp_{k}": v for k, v in msp.items()})
    accuracy = None
    if y_id_val is not None:
        labels = np.asarray(y_id_val).reshape(-1)
        if labels.shape[0] != x_id.shape[0]:
            raise InputValidationError(
                f"Expected one label per in-distribution image ({x_id.shape[0]}), but got "
                f"{labels.shape[0]} labels."
            )
        accuracy = float(np.mean(detector.reference_.predicted_class == labels))
        metrics["val_accuracy"] = accuracy
    names = ", ".join(s.name for s in ood_sources)
    record = detector.to_record(
        ood_sources=ood_sources,
        metrics=metrics,
        selection=(
            f"{rule}: min fpr_at_tpr@{tpr:g} over {len(temps)}x{len(eps)} (T, epsilon) grid, "
            f"in-distribution validation vs [{names}]; {found.describe(margin_z)}"
            + (
                f" (jigsaw: {JIGSAW_GRID}x{JIGSAW_GRID} patches of the in-distribution "
                "validation images, shuffled)"
                if rule == "jigsaw"
                else ""
            )
        ),
        preprocessing=preprocessing,
        strategy=rule,
        search=found.search,
        warnings=self_checks(
            grid,
            (best.temperature, best.epsilon),
            accuracy=accuracy,
            n_classes=detector.n_classes_,
        ),
    )
    return CalibrationResult(detector=detector, record=record, grid=grid, search=found)
