"""How the ``T × ε`` grid is searched: every pair, coarse-to-fine, or successive halving.

``"full"`` scores every pair on every validation image (:func:`odin_monitor.scoring.grid_pass`).

``"coarse-to-fine"`` (the default of :func:`odin_monitor.calibrate`) spends less on
pairs that cannot win, judged from estimates that cost no model work:

1. score every ``T`` at the **coarse** ε (at most ``coarse_gap = 0.001`` apart, both
   ends included: every fifth ε of the paper's grid) on every image
   (:func:`coarse_columns`);
2. **estimate** every other pair from the same pass: ODIN moves all ε of one ``T``
   along one line ``x + ε·s`` (``s`` the gradient sign), and for a network of ReLUs,
   max-pools and affine layers the logits are piecewise linear along it, so the
   logits at ε are interpolated linearly between the nearest coarse ε
   (:func:`odin_monitor.scoring.interpolated_log_scores`; exact wherever no ReLU
   changes state in between) and scored, and each pair's FPR is read from the
   estimates;
3. **finish** on every image the pairs whose estimated FPR, less an allowance
   ``max(estimate_margin, 2·e) + 1/N_out``, is at most the best exact FPR, where ``e``
   is the largest ``|estimated − exact|`` FPR seen among the estimated pairs finished
   so far (:func:`pairs_to_finish`); repeat while the allowance, widened by what was
   seen, lets more in (a pass per round). As with halving, each finished pair is
   computed in the images' own order and chunks, bit for bit the full grid's, and the
   choice is the grid's own rule among the finished pairs.

Cost, in forward-equivalents per image on the paper's 210 pairs: ≈ 1 + 14 + 40 for the
coarse pass, ≈ 1 + 1.4 · (T values with a pair to finish) + (pairs finished) per round:
about 70–150 against 650 for the naive loop. Measured in docs/RESULTS.md.

**When coarse-to-fine can choose differently from the full grid.** Only when the full
grid's pair is not finished, i.e. its *estimated* FPR exceeds the best exact FPR by more
than the allowance: its estimate missed by more than ``max(margin, 2·e)`` plus one OOD
image, and no finished pair showed a miss half that large. That takes ReLUs changing
state between two coarse ε in a way that moves the winner's FPR more than it moved
every pair finished near it; a smaller ``coarse_gap`` or a larger ``estimate_margin``
makes it rarer (``search="full"`` rules it out). On the shared sets it chose as the full
grid every time it was tried: ResNet-20 on JPEG and lossless CIFAR-10 against Tiny
ImageNet crop, resize and the ODIN authors' resize on the paper's grid, and on lossless
CIFAR-10 against those three, jigsaw and noise on a 4 × 11 grid
(tests/test_search_data.py); further cases (ResNet-56, up to 1,000 images per set) in
docs/RESULTS.md.

``"halving"`` spends less on pairs that cannot win by sampling:

1. score **every** pair on a seeded random subset (``subset_fraction`` of the
   in-distribution images and of the OOD images, at least :data:`MIN_SUBSET_IMAGES`
   each, else the search is ``"full"``);
2. keep the **contenders**: every pair whose subset FPR is within ``margin_z``
   binomial standard errors of the subset's best FPR (:func:`contender_mask`);
3. score the contenders on every image (one forward, one backward per ``T`` that
   has a contender, one forward per contending ``(T, ε > 0)``; ``ε = 0`` comes free
   for every ``T``), in the images' own order and chunks, so that each finished pair
   is bit for bit what the full grid computes. The choice is then made on the full
   sets, among the finished pairs, by the grid's own rule
   (:func:`odin_monitor.grid.select_best`).

Cost, in forward-equivalents per image (a backward ≈ 1.4 forwards on CPU): the
full paper grid ≈ 1 + 10 · 1.4 + 200 ≈ 215; halving ≈ 0.25 · 215 + 1 + 1.4 · (T values
with a contender) + (contending pairs), about 100 when 4 ``T`` and 40 pairs contend;
a naive loop over the 210 pairs ≈ 650.

**When halving can choose differently from the full grid.** Only when the full
grid's pair is not a contender, i.e. its FPR on the subset exceeds the subset's best
FPR by more than the margin; every finished pair's metrics are those of the full
grid (the same images, the same scores, bit for bit), so whenever the full grid's
pair is finished it is chosen. This happens when the subset misrepresents the sets: small
subsets (the margin shrinks as ``1/√n``), pairs whose FPRs differ by less than the
subset's noise, an in-distribution subset whose 95% threshold falls far from the
full set's (the margin counts only the OOD images' binomial noise), or a winner's
FPR that the subset's luck puts above many others: the subset's best FPR is the
minimum of many noisy estimates, so it is biased low (with ``margin_z = 3`` the
full grid's pair was lost on the shared noise set: subset best 0, winner 0.06,
margin 0.057). A larger ``margin_z`` or ``subset_fraction`` makes it rarer
(``search="full"`` rules it out) at a higher cost. Measured on ResNet-20 over 40
random subsets per set (docs/RESULTS.md): with the default ``margin_z = 4`` and
100-image subsets the winner was kept 40/40 times on each shared validation set
(Tiny ImageNet crop, resize, ODIN resize, jigsaw, noise; 44-pair grid); with
64-image subsets of the JPEG CIFAR-10 set against Tiny ImageNet crop on the paper's
210 pairs it was lost once in 40 even with ``margin_z = 5``: there ~100 pairs lie
within the subset's noise of the best, and halving spares little.

Example:
    >>> rng = np.random.default_rng(0)
    >>> s_in, s_out = rng.uniform(0.5, 1, (2, 3, 400)), rng.uniform(0, 0.8, (2, 3, 400))
    >>> s_out[1, 2] *= 0.5  # one clearly better pair
    >>> halving_choice(s_in, s_out, (1.0, 1000.0), (0.0, 0.001, 0.002)).chosen
    (1000.0, 0.002)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import nn

from odin_monitor.errors import InputValidationError
from odin_monitor.grid import CalibrationGrid
from odin_monitor.normalization import Normalization
from odin_monitor.scoring import GridPass, ProgressCallback, grid_pass
from odin_monitor.validation import check_tpr_target

__all__ = [
    "DEFAULT_COARSE_GAP",
    "DEFAULT_ESTIMATE_MARGIN",
    "DEFAULT_MARGIN_Z",
    "DEFAULT_SEARCH",
    "DEFAULT_SUBSET_FRACTION",
    "MIN_SUBSET_IMAGES",
    "SEARCHES",
    "HalvingChoice",
    "RefineChoice",
    "SearchResult",
    "binomial_margin",
    "check_coarse_to_fine",
    "check_search",
    "coarse_columns",
    "coarse_to_fine_choice",
    "contender_mask",
    "fpr_at_tpr_cube",
    "halving_choice",
    "pairs_to_finish",
    "progress_total",
    "search_grid",
    "subset_indices",
]

#: The named searches of the grid.
SEARCHES = ("coarse-to-fine", "halving", "full")
Search = Literal["coarse-to-fine", "halving", "full"]
#: The search of :func:`odin_monitor.calibrate` and ``odin-monitor calibrate``.
DEFAULT_SEARCH: Search = "coarse-to-fine"
#: Coarse-to-fine: the computed ε of each T are at most this far apart (pixel units);
#: on the paper's grid (step 0.0002) every fifth ε: 0, 0.001, …, 0.004.
DEFAULT_COARSE_GAP = 0.001
#: Coarse-to-fine: an estimated pair is finished when its estimated FPR minus the
#: allowance ``max(margin, 2 · largest estimate error seen) + 1 / N_out`` is at most
#: the best exact FPR.
DEFAULT_ESTIMATE_MARGIN = 0.01
#: Share of the images (each set) on which every pair is scored first.
DEFAULT_SUBSET_FRACTION = 0.25
#: Contenders: subset FPR within this many binomial standard errors of the best. 3 lost
#: the full grid's pair on one shared set (noise, seed 0: the subset's best FPR was 0,
#: the winner's 0.06 against a margin of 0.057); 4 kept it in 40 of 40 random subsets
#: on every shared set of tests/test_search_data.py.
DEFAULT_MARGIN_Z = 4.0
#: Below this many subset images per set the margin keeps nearly every pair, and
#: the search is the full grid.
MIN_SUBSET_IMAGES = 64


def check_search(
    search: str, subset_fraction: float, margin_z: float
) -> tuple[Search, float, float]:
    """Validate the search's name and settings.

    Example:
        >>> check_search("halving", 0.25, 3.0)
        ('halving', 0.25, 3.0)
    """
    if search not in SEARCHES:
        raise InputValidationError(f"Expected search in {SEARCHES}, but got {search!r}.")
    f, z = float(subset_fraction), float(margin_z)
    if not 0.0 < f < 1.0:
        raise InputValidationError(
            f"Expected subset_fraction in (0, 1), but got {subset_fraction!r}; use "
            "search='full' to score every pair on every image."
        )
    if not (math.isfinite(z) and z >= 0.0):
        raise InputValidationError(f"Expected margin_z >= 0 (finite), but got {margin_z!r}.")
    return search, f, z  # type: ignore[return-value]


def check_coarse_to_fine(coarse_gap: float, estimate_margin: float) -> tuple[float, float]:
    """Validate the coarse-to-fine settings.

    Example:
        >>> check_coarse_to_fine(0.001, 0.01)
        (0.001, 0.01)
    """
    gap, m = float(coarse_gap), float(estimate_margin)
    if not (math.isfinite(gap) and gap > 0.0):
        raise InputValidationError(f"Expected coarse_gap > 0 (finite), but got {coarse_gap!r}.")
    if not (math.isfinite(m) and 0.0 <= m <= 1.0):
        raise InputValidationError(
            f"Expected estimate_margin in [0, 1] (an FPR), but got {estimate_margin!r}."
        )
    return gap, m


def fpr_at_tpr_cube(s_in: np.ndarray, s_out: np.ndarray, tpr_target: float = 0.95) -> np.ndarray:
    """FPR at ``tpr_target`` of every pair at once (the ``fpr_at_tpr`` of ``ood_metrics``).

    δ is the ``ceil(tpr_target · N_in)``-th largest in-distribution score; FPR is the
    share of OOD scores ``>= δ``.

    Args:
        s_in: ``(..., N_in)`` scores, higher = in-distribution.
        s_out: ``(..., N_out)`` scores, same leading shape.
        tpr_target: TPR at which FPR is read.

    Returns:
        ``(...)`` float64 FPRs.

    Example:
        >>> fpr_at_tpr_cube(np.array([[0.9, 0.8, 0.7, 0.6]]), np.array([[0.65, 0.1]]), 0.75)
        array([0.])
    """
    s_in, s_out = np.asarray(s_in, dtype=np.float64), np.asarray(s_out, dtype=np.float64)
    if s_in.shape[:-1] != s_out.shape[:-1] or s_in.shape[-1] < 1 or s_out.shape[-1] < 1:
        raise InputValidationError(
            f"Expected score cubes (..., N_in) and (..., N_out) with the same leading shape "
            f"and N >= 1, but got {s_in.shape} and {s_out.shape}."
        )
    tpr = check_tpr_target(tpr_target)
    n = s_in.shape[-1]
    # The same rounding tolerance as odin_monitor.metrics.threshold_at_tpr.
    k = max(1, min(n, math.ceil(tpr * n - 1e-9)))
    delta = -np.partition(-s_in, k - 1, axis=-1)[..., k - 1]
    return np.asarray((s_out >= delta[..., None]).mean(axis=-1), dtype=np.float64)


def binomial_margin(fpr: float, n_ood: int, margin_z: float = DEFAULT_MARGIN_Z) -> float:
    """``margin_z`` standard errors of an FPR measured on ``n_ood`` images.

    The Agresti–Coull form (``p̃ = (k + z²/2) / (n + z²)``): unlike ``p(1-p)/n`` it
    stays positive when the subset's best FPR is 0 or 1.

    Example:
        >>> round(binomial_margin(0.3, 100, 3.0), 4), binomial_margin(0.0, 100, 3.0) > 0
        (0.1337, True)
    """
    if n_ood < 1:
        raise InputValidationError(f"Expected n_ood >= 1, but got {n_ood}.")
    z2 = margin_z**2
    n_tilde = n_ood + z2
    p = (fpr * n_ood + z2 / 2) / n_tilde
    return float(margin_z * math.sqrt(p * (1 - p) / n_tilde))


def contender_mask(
    subset_fpr: np.ndarray, n_ood: int, margin_z: float = DEFAULT_MARGIN_Z
) -> tuple[np.ndarray, float]:
    """The pairs still in the race: subset FPR ``<=`` best + :func:`binomial_margin`.

    Args:
        subset_fpr: ``(len(T), len(ε))`` FPRs measured on the subset.
        n_ood: OOD images of the subset.
        margin_z: Standard errors of the margin.

    Returns:
        ``(mask, margin)``: boolean ``(len(T), len(ε))`` and the margin used.

    Example:
        >>> mask, m = contender_mask(np.array([[0.30, 0.33, 0.60]]), 100, 3.0)
        >>> mask.tolist(), round(m, 3)
        ([[True, True, False]], 0.134)
    """
    fpr = np.asarray(subset_fpr, dtype=np.float64)
    best = float(np.min(fpr))
    margin = binomial_margin(best, n_ood, margin_z)
    # The tolerance keeps pairs whose FPR equals best + margin up to rounding.
    return fpr <= best + margin + 1e-12, margin


def subset_indices(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``ceil(fraction · n)`` of ``n`` images.

    Example:
        >>> subset_indices(8, 0.25, seed=0).shape
        (2,)
    """
    size = min(n, max(1, math.ceil(fraction * n)))
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _choice_among(
    finished: np.ndarray,
    s_in: np.ndarray,
    s_out: np.ndarray,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    tpr_target: float,
) -> tuple[float, float]:
    """The grid's own choice among the ``finished`` pairs of the score cubes."""
    best = CalibrationGrid.from_scores(
        np.where(finished[..., None], s_in, np.nan),
        np.where(finished[..., None], s_out, np.nan),
        temperatures,
        epsilons,
        tpr_target,
    ).best
    return (best.temperature, best.epsilon)


@dataclass(frozen=True)
class HalvingChoice:
    """The halving rule applied to known score cubes (:func:`halving_choice`).

    Attributes:
        chosen: ``(T, ε)`` chosen among the contenders, on all images.
        contenders: Boolean ``(len(T), len(ε))`` of the finished pairs.
        subset_fpr: ``(len(T), len(ε))`` FPRs on the subset.
        margin: The FPR margin used.
    """

    chosen: tuple[float, float]
    contenders: np.ndarray
    subset_fpr: np.ndarray
    margin: float


def halving_choice(
    s_in: np.ndarray,
    s_out: np.ndarray,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    tpr_target: float = 0.95,
    *,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    margin_z: float = DEFAULT_MARGIN_Z,
    seed: int = 0,
) -> HalvingChoice:
    """What halving chooses, given the full score cubes (no model needed).

    :func:`search_grid` uses exactly these entries of the cubes (every pair on the
    subset, the contenders everywhere), so this is its choice whenever its subset
    scores equal the cubes' (a backend's rounding may depend on the batch's shape,
    by about 1e-7), at a fraction of the cost when the cubes are cached.

    Args:
        s_in: ``(len(T), len(ε), N_in)`` in-distribution scores.
        s_out: ``(len(T), len(ε), N_out)`` OOD scores.
        temperatures: The ``T`` values.
        epsilons: The ``ε`` values.
        tpr_target: TPR at which FPR is read.
        subset_fraction: Share of each set scored on every pair first.
        margin_z: Standard errors of the contender margin.
        seed: Seed of the subsets (OOD: ``seed + 1``).
    """
    s_in, s_out = np.asarray(s_in), np.asarray(s_out)
    idx_in = subset_indices(s_in.shape[-1], subset_fraction, seed)
    idx_out = subset_indices(s_out.shape[-1], subset_fraction, seed + 1)
    fpr = fpr_at_tpr_cube(s_in[..., idx_in], s_out[..., idx_out], tpr_target)
    mask, margin = contender_mask(fpr, idx_out.size, margin_z)
    mask = mask | (np.asarray(epsilons, dtype=np.float64) == 0)[None, :]
    chosen = _choice_among(mask, s_in, s_out, temperatures, epsilons, tpr_target)
    return HalvingChoice(chosen, mask, fpr, margin)


def coarse_columns(epsilons: Sequence[float], gap: float = DEFAULT_COARSE_GAP) -> np.ndarray:
    """The ε computed on every image first (coarse-to-fine): at most ``gap`` apart.

    The smallest and the largest ε are always in; between them, walking up from the
    last one taken, the largest ε within ``gap`` of it (the next ε when none is).

    Args:
        epsilons: The grid's ε (any order).
        gap: Largest spacing of the coarse ε, pixel units.

    Returns:
        Boolean ``(len(ε),)``.

    Example:
        >>> eps = [round(0.0002 * i, 12) for i in range(21)]
        >>> [e for e, c in zip(eps, coarse_columns(eps, 0.001)) if c]
        [0.0, 0.001, 0.002, 0.003, 0.004]
    """
    check_coarse_to_fine(gap, 0.0)
    values = np.asarray(epsilons, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    keep = np.zeros(values.size, dtype=bool)
    if values.size == 0:
        return keep
    k = 0
    keep[order[0]] = True
    while k < values.size - 1:
        # The tolerance keeps ε exactly ``gap`` apart up to rounding (0.001 vs 0.0010000001).
        within = [m for m in range(k + 1, values.size)
                  if values[order[m]] - values[order[k]] <= gap + 1e-12]  # fmt: skip
        k = within[-1] if within else k + 1
        keep[order[k]] = True
    return keep


def pairs_to_finish(
    exact_fpr: np.ndarray,
    estimated_fpr: np.ndarray,
    finished: np.ndarray,
    n_ood: int,
    margin: float = DEFAULT_ESTIMATE_MARGIN,
) -> tuple[np.ndarray, float]:
    """Unfinished pairs whose estimate could still beat (or tie) the best finished pair.

    The allowance is ``max(margin, 2 · e) + 1 / n_ood``, ``e`` the largest
    ``|estimated − exact|`` FPR among the finished pairs that had an estimate (what
    the interpolation has been seen to miss by, doubled; ``1 / n_ood`` is one OOD image).
    A pair without an estimate (NaN) is always finished.

    Args:
        exact_fpr: ``(len(T), len(ε))`` exact FPRs (read where ``finished``).
        estimated_fpr: ``(len(T), len(ε))`` FPRs of the estimated scores (NaN where
            none).
        finished: Boolean ``(len(T), len(ε))``: pairs with exact scores on every image.
        n_ood: OOD images.
        margin: Smallest FPR allowance before ``1 / n_ood``.

    Returns:
        ``(mask, e)``: boolean ``(len(T), len(ε))`` of the pairs to finish next, and ``e``.

    Example:
        >>> exact = np.array([[0.30, np.nan, 0.40]])
        >>> est = np.array([[np.nan, 0.305, np.nan]])
        >>> mask, e = pairs_to_finish(exact, est, np.array([[True, False, True]]), 100)
        >>> mask.tolist(), e
        ([[False, True, False]], 0.0)
    """
    exact, est = np.asarray(exact_fpr, np.float64), np.asarray(estimated_fpr, np.float64)
    done = np.asarray(finished, dtype=bool)
    if not done.any():
        raise InputValidationError("Expected at least one finished pair to compare with.")
    seen = done & ~np.isnan(est)
    e = float(np.max(np.abs(est[seen] - exact[seen]))) if seen.any() else 0.0
    allowance = max(margin, 2.0 * e) + 1.0 / n_ood
    best = float(np.min(exact[done]))
    with np.errstate(invalid="ignore"):
        could_win = np.isnan(est) | (est - allowance <= best + 1e-12)
    return ~done & could_win, e


@dataclass(frozen=True)
class RefineChoice:
    """The coarse-to-fine rule applied to known score cubes (:func:`coarse_to_fine_choice`).

    Attributes:
        chosen: ``(T, ε)`` chosen among the finished pairs, on all images.
        finished: Boolean ``(len(T), len(ε))`` of the pairs scored exactly.
        coarse: Boolean ``(len(ε),)`` of the coarse ε.
        estimated_fpr: ``(len(T), len(ε))`` FPRs of the estimates (NaN on coarse ε).
        rounds: Passes over the images after the coarse one.
        estimate_error: Largest ``|estimated − exact|`` FPR among finished estimated pairs.
    """

    chosen: tuple[float, float]
    finished: np.ndarray
    coarse: np.ndarray
    estimated_fpr: np.ndarray
    rounds: int
    estimate_error: float


def _refine(
    exact_fpr: np.ndarray,
    estimated_fpr: np.ndarray,
    finished: np.ndarray,
    n_ood: int,
    margin: float,
    finish: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Finish pairs (``finish(mask)`` → their exact FPRs) until none could still win."""
    exact, done = exact_fpr.copy(), finished.copy()
    rounds = 0
    while True:
        more, e = pairs_to_finish(exact, estimated_fpr, done, n_ood, margin)
        if not more.any():
            return exact, done, rounds, e
        exact[more] = finish(more)[more]
        done |= more
        rounds += 1


def _estimated_fpr(est_in: np.ndarray, est_out: np.ndarray, tpr_target: float) -> np.ndarray:
    """FPR of every pair's estimated scores; NaN where a pair lacks an estimate anywhere."""
    a, b = np.asarray(est_in, np.float64), np.asarray(est_out, np.float64)
    fpr = fpr_at_tpr_cube(a, b, tpr_target)
    fpr[np.isnan(a).any(-1) | np.isnan(b).any(-1)] = np.nan
    return fpr


def coarse_to_fine_choice(
    s_in: np.ndarray,
    s_out: np.ndarray,
    est_in: np.ndarray,
    est_out: np.ndarray,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    tpr_target: float = 0.95,
    *,
    coarse_gap: float = DEFAULT_COARSE_GAP,
    margin: float = DEFAULT_ESTIMATE_MARGIN,
) -> RefineChoice:
    """What the coarse-to-fine search chooses, given full and estimated score cubes.

    :func:`search_grid` uses exactly these entries (the coarse ε and the finished
    pairs of ``s_*``, the estimates of ``est_*`` for the rest), so this is its choice
    whenever its scores equal the cubes', with no model needed.

    Args:
        s_in: ``(len(T), len(ε), N_in)`` exact in-distribution scores.
        s_out: ``(len(T), len(ε), N_out)`` exact OOD scores.
        est_in: Estimated in-distribution scores (``GridPass.estimates`` of a pass on
            the coarse ε), same shape.
        est_out: Estimated OOD scores.
        temperatures: The ``T`` values.
        epsilons: The ``ε`` values.
        tpr_target: TPR at which FPR is read.
        coarse_gap: Largest spacing of the coarse ε.
        margin: Smallest FPR allowance (:func:`pairs_to_finish`).
    """
    s_in, s_out = np.asarray(s_in, np.float64), np.asarray(s_out, np.float64)
    coarse = coarse_columns(epsilons, coarse_gap)
    done = np.broadcast_to(coarse, s_in.shape[:2]).copy()
    full_fpr = fpr_at_tpr_cube(s_in, s_out, tpr_target)
    est_fpr = np.where(done, np.nan, _estimated_fpr(est_in, est_out, tpr_target))
    _, done, rounds, e = _refine(
        np.where(done, full_fpr, np.nan), est_fpr, done, s_out.shape[-1], margin,
        lambda more: full_fpr,
    )  # fmt: skip
    chosen = _choice_among(done, s_in, s_out, temperatures, epsilons, tpr_target)
    return RefineChoice(chosen, done, coarse, est_fpr, rounds, e)


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search_grid` computed.

    Attributes:
        search: The search that ran (``"full"`` when ``"halving"`` was asked of sets
            too small to halve).
        id_pass: Every in-distribution image; NaN for pairs not finished.
        ood_pass: Every OOD image; NaN likewise.
        finished: Boolean ``(len(T), len(ε))``: pairs scored on every image.
        subset_fpr: ``(len(T), len(ε))`` FPRs on the subset (``None`` for ``"full"``).
        n_subset: ``(in-distribution, OOD)`` subset sizes (``None`` for ``"full"``).
        margin: The contender margin in FPR (halving; ``None`` otherwise).
        coarse: Boolean ``(len(ε),)`` of the coarse ε (coarse-to-fine; ``None``
            otherwise).
        rounds: Passes over the images after the coarse one (coarse-to-fine).
        estimate_error: Largest ``|estimated − exact|`` FPR among the finished pairs
            that had an estimate (coarse-to-fine).
    """

    search: Search
    id_pass: GridPass
    ood_pass: GridPass
    finished: np.ndarray
    subset_fpr: np.ndarray | None = None
    n_subset: tuple[int, int] | None = None
    margin: float | None = None
    coarse: np.ndarray | None = None
    rounds: int | None = None
    estimate_error: float | None = None

    def describe(self, margin_z: float) -> str:
        """One sentence for the calibration record's ``selection``."""
        n_pairs = int(self.finished.size)
        if self.search == "coarse-to-fine" and self.coarse is not None:
            n_e = self.finished.shape[1]
            return (
                f"coarse-to-fine: {int(self.coarse.sum())} of {n_e} epsilon per T on every "
                "image, the others estimated by interpolating the logits along each T's "
                f"perturbation; {int(self.finished.sum())} of {n_pairs} pairs finished on "
                f"every image in {self.rounds} more pass(es) (largest FPR estimate error "
                f"seen {self.estimate_error or 0.0:.4f})"
            )
        if self.search == "full" or self.n_subset is None or self.margin is None:
            return f"full search: all {n_pairs} pairs on every image"
        return (
            f"successive halving: all {n_pairs} pairs on {self.n_subset[0]} + "
            f"{self.n_subset[1]} images, {int(self.finished.sum())} pairs (contenders within "
            f"{margin_z:g} binomial SE = {self.margin:.4f} FPR of the subset's best, and every "
            "epsilon=0) on every image"
        )


def progress_total(
    n_in: int,
    n_out: int,
    search: str,
    subset_fraction: float,
    epsilons: Sequence[float] | None = None,
    coarse_gap: float = DEFAULT_COARSE_GAP,
) -> int:
    """Images :func:`search_grid` reports to ``progress`` in all.

    Coarse-to-fine: the coarse pass and one pass finishing the pairs that could win
    (only the coarse pass when ``epsilons`` are given and all of them are coarse); a
    further pass (rare: an estimate missed by more than was seen) adds ``N_in + N_out``.

    Example:
        >>> progress_total(1000, 1000, "halving", 0.25), progress_total(100, 100, "halving", 0.25)
        (2500, 200)
        >>> progress_total(1000, 1000, "coarse-to-fine", 0.25)
        4000
        >>> progress_total(1000, 1000, "coarse-to-fine", 0.25, epsilons=[0.0, 0.001, 0.002])
        2000
    """
    if search == "full":
        return n_in + n_out
    if search == "coarse-to-fine":
        if epsilons is not None and coarse_columns(epsilons, coarse_gap).all():
            return n_in + n_out
        return 2 * (n_in + n_out)
    sub_in = subset_indices(n_in, subset_fraction, 0).size
    sub_out = subset_indices(n_out, subset_fraction, 0).size
    if min(sub_in, sub_out) < MIN_SUBSET_IMAGES:
        return n_in + n_out
    return n_in + n_out + sub_in + sub_out


def search_grid(
    model: nn.Module,
    x_id: torch.Tensor,
    x_ood: torch.Tensor,
    *,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    normalization: Normalization | None,
    tpr_target: float = 0.95,
    search: Search = DEFAULT_SEARCH,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    margin_z: float = DEFAULT_MARGIN_Z,
    seed: int = 0,
    batch_size: int | None = None,
    mixed_precision: bool = False,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
    compile: bool = False,
    coarse_gap: float = DEFAULT_COARSE_GAP,
    estimate_margin: float = DEFAULT_ESTIMATE_MARGIN,
) -> SearchResult:
    """Score the grid on validation images by the named search (module docstring).

    The subsets go through the model twice (all pairs, then the contenders), every
    other image once (``progress`` totals :func:`progress_total`).

    Args:
        model: Any module mapping ``(N, C, H, W)`` to logits ``(N, K)``.
        x_id: In-distribution validation images ``(N_in, C, H, W)`` in [0, 1].
        x_ood: OOD validation images ``(N_out, C, H, W)``.
        temperatures: The ``T`` values.
        epsilons: The ``ε`` values.
        normalization: As in :func:`odin_monitor.odin_scores`.
        tpr_target: TPR at which FPR is read.
        search: ``"halving"`` or ``"full"``.
        subset_fraction: Share of each set scored on every pair first (halving).
        margin_z: Standard errors of the contender margin (halving).
        seed: Seed of the subsets (OOD: ``seed + 1``).
        batch_size: Images per chunk.
        mixed_precision: As in :func:`odin_monitor.odin_scores`.
        device: Where to compute.
        progress: Called with the number of images finished after each chunk.
        compile: Perturbed forwards on the compiled step
            (:func:`odin_monitor.scoring.grid_pass`).
        coarse_gap: Largest spacing of the coarse ε (coarse-to-fine).
        estimate_margin: Smallest FPR allowance of the estimates (coarse-to-fine,
            :func:`pairs_to_finish`).

    Returns:
        :class:`SearchResult`.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        >>> x_id, x_ood = torch.rand(300, 3, 4, 4), torch.rand(300, 3, 4, 4)
        >>> found = search_grid(net, x_id, x_ood, temperatures=[1, 1000],
        ...                     epsilons=[0.0, 0.0005, 0.001, 0.0015, 0.002],
        ...                     normalization=None)
        >>> found.search, found.coarse.tolist(), bool(found.finished[:, ::2].all())
        ('coarse-to-fine', [True, False, True, False, True], True)
        >>> halved = search_grid(net, x_id, x_ood, temperatures=[1, 1000],
        ...                      epsilons=[0.0, 0.002], normalization=None, search="halving")
        >>> halved.search, halved.n_subset, halved.finished[:, 0].tolist()
        ('halving', (75, 75), [True, True])
    """
    rule, frac, z = check_search(search, subset_fraction, margin_z)
    coarse_gap, estimate_margin = check_coarse_to_fine(coarse_gap, estimate_margin)
    tpr = check_tpr_target(tpr_target)

    def run(x: torch.Tensor, pairs: np.ndarray | None = None, estimate: bool = False) -> GridPass:
        return grid_pass(
            model,
            x,
            temperatures=temperatures,
            epsilons=epsilons,
            normalization=normalization,
            pairs=pairs,
            batch_size=batch_size,
            mixed_precision=mixed_precision,
            device=device,
            progress=progress,
            compile=compile,
            estimate=estimate,
        )

    if rule == "coarse-to-fine":
        return _coarse_to_fine(x_id, x_ood, run, temperatures, epsilons, tpr, coarse_gap,
                               estimate_margin)  # fmt: skip
    n_in, n_out = int(x_id.shape[0]), int(x_ood.shape[0])
    idx_in = subset_indices(n_in, frac, seed)
    idx_out = subset_indices(n_out, frac, seed + 1)
    if rule == "full" or min(idx_in.size, idx_out.size) < MIN_SUBSET_IMAGES:
        id_pass = run(x_id)
        ood_pass = run(x_ood)
        return SearchResult("full", id_pass, ood_pass, id_pass.computed.numpy())
    sub_in = run(x_id[torch.from_numpy(idx_in)])
    sub_out = run(x_ood[torch.from_numpy(idx_out)])
    fpr = fpr_at_tpr_cube(sub_in.scores.numpy(), sub_out.scores.numpy(), tpr)
    mask, margin = contender_mask(fpr, idx_out.size, z)
    # Stage 2 scores the contenders on *every* image, the subset again included, in
    # the images' own order and chunks: each finished pair is then bit for bit what the
    # full grid (and odin_scores) computes, whatever the backend does with batch shapes.
    id_pass, ood_pass = run(x_id, mask), run(x_ood, mask)
    return SearchResult(
        "halving",
        id_pass,
        ood_pass,
        id_pass.computed.numpy(),
        subset_fpr=fpr,
        n_subset=(int(idx_in.size), int(idx_out.size)),
        margin=margin,
    )


def _merge(a: GridPass, b: GridPass) -> GridPass:
    """``a`` with the pairs ``b`` computed taken from ``b`` (same images, same chunks)."""
    take = ~b.scores.isnan()
    return replace(
        a,
        scores=torch.where(take, b.scores, a.scores),
        log_scores=torch.where(take, b.log_scores, a.log_scores),
    )


def _coarse_to_fine(
    x_id: torch.Tensor,
    x_ood: torch.Tensor,
    run: Callable[..., GridPass],
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    tpr: float,
    coarse_gap: float,
    margin: float,
) -> SearchResult:
    """The coarse pass with estimates, then passes finishing what could still win."""
    coarse = coarse_columns(epsilons, coarse_gap)
    first = np.broadcast_to(coarse, (len(temperatures), len(epsilons))).copy()
    passes = [run(x_id, first, True), run(x_ood, first, True)]
    est = [p.estimates for p in passes]
    assert est[0] is not None and est[1] is not None  # asked for: estimate=True
    est_fpr = _estimated_fpr(est[0].numpy(), est[1].numpy(), tpr)

    def exact_fpr() -> np.ndarray:
        return fpr_at_tpr_cube(passes[0].scores.numpy(), passes[1].scores.numpy(), tpr)

    def finish(more: np.ndarray) -> np.ndarray:
        # Each pair is computed in the images' own order and chunks: bit for bit the
        # full grid's scores, whichever other pairs a pass computes.
        passes[0] = _merge(passes[0], run(x_id, more))
        passes[1] = _merge(passes[1], run(x_ood, more))
        return exact_fpr()

    _, done, rounds, e = _refine(np.where(first, exact_fpr(), np.nan), est_fpr, first,
                                 int(x_ood.shape[0]), margin, finish)  # fmt: skip
    return SearchResult(
        "coarse-to-fine",
        passes[0],
        passes[1],
        done,
        coarse=coarse,
        rounds=rounds,
        estimate_error=e,
    )
