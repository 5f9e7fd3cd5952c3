"""The searches' rules as pure functions: FPR of every pair, halving's margin and
contenders, coarse-to-fine's coarse ε and allowance, and their choices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from odin_monitor import InputValidationError
from odin_monitor.grid import CalibrationGrid
from odin_monitor.metrics import ood_metrics
from odin_monitor.search import (
    binomial_margin,
    check_search,
    coarse_columns,
    coarse_to_fine_choice,
    contender_mask,
    fpr_at_tpr_cube,
    halving_choice,
    pairs_to_finish,
    subset_indices,
)

TEMPS, EPS = (1.0, 10.0, 100.0, 1000.0), (0.0, 0.001, 0.002, 0.003)


def noisy_cubes(seed: int, n: int = 800, gap: float = 0.6):
    """Pairs whose OOD scores shift by a smooth profile; one pair best by construction.

    Every pair shares the same per-image noise plus its own, as real pairs do (the
    same images seen through nearby ``T`` and ``ε``).
    """
    rng = np.random.default_rng(seed)
    shape = (len(TEMPS), len(EPS))
    base_in, base_out = rng.normal(1.0, 1.0, n), rng.normal(-0.2, 1.0, n)
    ti, ej = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    # A bowl around (T index 2, ε index 1): the best pair separates by `gap` more.
    shift = gap * (1 - ((ti - 2) ** 2 + (ej - 1) ** 2) / 8)
    s_in = base_in + 0.3 * rng.normal(size=(*shape, n))
    s_out = base_out - shift[..., None] + 0.3 * rng.normal(size=(*shape, n))
    return s_in, s_out


def full_choice(s_in, s_out):
    best = CalibrationGrid.from_scores(s_in, s_out, TEMPS, EPS).best
    return (best.temperature, best.epsilon)


def test_fpr_of_every_pair_equals_ood_metrics_with_ties():
    rng = np.random.default_rng(1)
    # Rounded scores: many ties, on both sides of the threshold.
    s_in = np.round(rng.uniform(0, 1, (3, 4, 57)), 1)
    s_out = np.round(rng.uniform(0, 1, (3, 4, 41)), 1)
    for tpr in (0.95, 0.8, 0.5):
        got = fpr_at_tpr_cube(s_in, s_out, tpr)
        want = [[ood_metrics(s_in[i, j], s_out[i, j], tpr)["fpr_at_tpr"] for j in range(4)]
                for i in range(3)]  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_binomial_margin_is_the_agresti_coull_standard_error():
    for fpr, n, z in ((0.3, 100, 3.0), (0.0, 64, 2.0), (1.0, 250, 3.0), (0.05, 1000, 1.0)):
        k = fpr * n
        p = (k + z * z / 2) / (n + z * z)
        assert binomial_margin(fpr, n, z) == pytest.approx(z * math.sqrt(p * (1 - p) / (n + z * z)))
    assert binomial_margin(0.0, 64, 3.0) > 0.05  # a perfect subset still keeps neighbours
    assert binomial_margin(0.3, 400, 3.0) < binomial_margin(0.3, 100, 3.0)
    assert binomial_margin(0.3, 100, 0.0) == 0.0


def test_contenders_are_the_pairs_within_the_margin_of_the_best():
    fpr = np.array([[0.40, 0.31, 0.30], [0.30 + 0.1337, 0.30 + 0.1338, 0.9]])
    mask, margin = contender_mask(fpr, 100, 3.0)
    assert margin == pytest.approx(binomial_margin(0.30, 100, 3.0))
    assert mask.tolist() == [[True, True, True], [fpr[1, 0] <= 0.30 + margin, False, False]]


def test_subsets_are_seeded_sorted_distinct_and_a_fraction():
    a = subset_indices(1000, 0.25, seed=4)
    assert a.size == 250 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    np.testing.assert_array_equal(a, subset_indices(1000, 0.25, seed=4))
    assert not np.array_equal(a, subset_indices(1000, 0.25, seed=5))
    assert subset_indices(10, 0.01, seed=0).size == 1


@pytest.mark.parametrize("seed", range(8))
def test_with_the_default_margin_the_winner_is_a_contender_and_chosen(seed):
    s_in, s_out = noisy_cubes(seed)
    got = halving_choice(s_in, s_out, TEMPS, EPS, seed=seed)
    winner = full_choice(s_in, s_out)
    i, j = TEMPS.index(winner[0]), EPS.index(winner[1])
    assert got.contenders[i, j]
    assert got.chosen == winner
    # Halving spared work: far from every pair is finished.
    assert got.contenders.sum() < got.contenders.size


def test_halving_differs_exactly_when_the_winner_misses_the_margin():
    """The documented statement, as an invariant over many cubes and margins."""
    seen = {True: 0, False: 0}
    for seed in range(12):
        s_in, s_out = noisy_cubes(seed, n=400, gap=0.15)
        winner = full_choice(s_in, s_out)
        i, j = TEMPS.index(winner[0]), EPS.index(winner[1])
        for z in (0.0, 0.5, 3.0):
            got = halving_choice(s_in, s_out, TEMPS, EPS, margin_z=z, seed=seed)
            assert (got.chosen == winner) == bool(got.contenders[i, j])
            seen[got.chosen == winner] += 1
    assert seen[True] and seen[False]  # both sides of the statement occur


def test_a_too_small_margin_loses_a_winner_the_subset_misrepresents():
    n, fraction, seed = 400, 0.25, 0
    sub_out = subset_indices(n, fraction, seed + 1)
    rest_out = np.setdiff1d(np.arange(n), sub_out)
    s_in = np.broadcast_to(np.linspace(0.5, 1.0, n), (1, 2, n)).copy()  # same δ for both pairs
    s_out = np.zeros((1, 2, n))
    # Pair A (ε=0): 10 OOD images above δ, all of them in the subset: FPR 2.5% on all,
    # 10% on the subset. Pair B (ε=0.001): 20 above δ, 5 in the subset: 5% and 5%.
    s_out[0, 0, sub_out[:10]] = 1.0
    s_out[0, 1, np.r_[sub_out[10:15], rest_out[:15]]] = 1.0
    temps, eps = (1.0,), (0.0, 0.001)
    full = CalibrationGrid.from_scores(s_in, s_out, temps, eps).best
    assert (full.temperature, full.epsilon) == (1.0, 0.0)
    assert full.metrics["fpr_at_tpr"] == pytest.approx(0.025)
    # ε=0 is always finished (free), so put the winner at ε>0 by swapping the pairs.
    s_out = s_out[:, ::-1].copy()
    winner = (1.0, 0.001)
    tight = halving_choice(s_in, s_out, temps, eps, margin_z=0.0, seed=seed)
    assert tight.subset_fpr.tolist() == [[pytest.approx(0.05), pytest.approx(0.10)]]
    assert not tight.contenders[0, 1] and tight.chosen == (1.0, 0.0) != winner
    wide = halving_choice(s_in, s_out, temps, eps, margin_z=3.0, seed=seed)
    assert wide.margin > 0.05 and wide.contenders[0, 1] and wide.chosen == winner


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("thirds", 0.25, 3.0), "search in"),
        (("halving", 0.0, 3.0), r"subset_fraction in \(0, 1\)"),
        (("halving", 1.0, 3.0), "search='full'"),
        (("halving", 0.25, -1.0), "margin_z >= 0"),
        (("halving", 0.25, float("nan")), "margin_z >= 0"),
    ],
)
def test_bad_search_settings_are_refused(args, match):
    with pytest.raises(InputValidationError, match=match):
        check_search(*args)


def test_fpr_cube_shapes_must_match():
    with pytest.raises(InputValidationError, match="same leading shape"):
        fpr_at_tpr_cube(np.zeros((2, 3, 5)), np.zeros((2, 2, 5)))


# --- coarse-to-fine ----------------------------------------------------------------------

PAPER_EPS = tuple(round(0.0002 * i, 12) for i in range(21))


def coarse_of(eps, gap):
    return [e for e, c in zip(eps, coarse_columns(eps, gap), strict=True) if c]


def test_coarse_columns_keep_both_ends_and_no_gap_wider_than_asked():
    assert coarse_of(PAPER_EPS, 0.001) == [0.0, 0.001, 0.002, 0.003, 0.004]
    assert coarse_of(PAPER_EPS, 0.0004) == list(PAPER_EPS[::2])
    assert coarse_of(PAPER_EPS, 0.01) == [0.0, 0.004]  # only the ends
    assert coarse_of(PAPER_EPS, 0.0001) == list(PAPER_EPS)  # finer than the grid: all
    # Uneven and unsorted grids: no two consecutive coarse ε farther apart than the gap
    # unless no grid ε lies between them.
    eps = (0.003, 0.0, 0.0005, 0.004, 0.0021, 0.0009)
    assert sorted(coarse_of(eps, 0.001)) == [0.0, 0.0009, 0.0021, 0.003, 0.004]
    assert coarse_of((0.002,), 0.001) == [0.002]
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputValidationError, match="coarse_gap > 0"):
            coarse_columns(PAPER_EPS, bad)


def test_pairs_to_finish_allow_the_margin_or_twice_the_error_seen_plus_one_image():
    finished = np.array([[True, False, False, True]])
    exact = np.array([[0.30, np.nan, np.nan, 0.50]])
    est = np.array([[np.nan, 0.30 + 0.01 + 0.01 - 1e-9, 0.30 + 0.02 + 1e-6, np.nan]])
    mask, e = pairs_to_finish(exact, est, finished, n_ood=100, margin=0.01)
    assert e == 0.0 and mask.tolist() == [[False, True, False, False]]
    # A finished estimated pair that missed by 0.02 widens the allowance to 0.04 + 0.01.
    finished2 = np.array([[True, True, False, True]])
    exact2 = np.array([[0.30, 0.35, np.nan, 0.50]])
    est2 = np.array([[np.nan, 0.33, 0.30 + 0.05 - 1e-9, np.nan]])
    mask2, e2 = pairs_to_finish(exact2, est2, finished2, n_ood=100, margin=0.01)
    assert e2 == pytest.approx(0.02) and mask2.tolist() == [[False, False, True, False]]
    nudged = est2 + np.array([[0, 0, 2e-6, 0]])
    assert not pairs_to_finish(exact2, nudged, finished2, 100, 0.01)[0].any()
    # A pair with no estimate is always finished; nothing finished yet is refused.
    nan_est = np.array([[np.nan, np.nan, 0.99, np.nan]])
    mask3, _ = pairs_to_finish(exact, nan_est, finished, 100)
    assert mask3.tolist() == [[False, True, False, False]]
    with pytest.raises(InputValidationError, match="at least one finished pair"):
        pairs_to_finish(exact, est, np.zeros_like(finished), 100)


def paper_cubes(seed: int, n: int = 400):
    """Scores smooth in ε (as along a ReLU network's perturbation line) plus per-pair noise."""
    rng = np.random.default_rng(seed)
    temps = (1.0, 10.0, 1000.0)
    ti, ej = np.meshgrid(np.arange(3), np.arange(21), indexing="ij")
    shift = 0.6 * (1 - ((ti - 1) ** 2 + ((ej - 7) / 5) ** 2) / 6)
    s_in = rng.normal(1.0, 1.0, n) + 0.05 * rng.normal(size=(3, 21, n))
    s_out = rng.normal(-0.2, 1.0, n) - shift[..., None] + 0.05 * rng.normal(size=(3, 21, n))
    return temps, s_in, s_out


def test_coarse_to_fine_with_exact_estimates_chooses_as_the_full_grid_and_spares_pairs():
    temps, s_in, s_out = paper_cubes(0)
    full = CalibrationGrid.from_scores(s_in, s_out, temps, PAPER_EPS).best
    got = coarse_to_fine_choice(s_in, s_out, s_in, s_out, temps, PAPER_EPS)
    assert got.chosen == (full.temperature, full.epsilon)
    assert got.coarse.tolist() == [i % 5 == 0 for i in range(21)]
    assert got.finished[:, got.coarse].all()
    assert got.estimate_error == 0.0 and got.rounds == 1
    assert got.finished.sum() < got.finished.size // 2  # most pairs spared
    # Every pair left out was more than the allowance worse than the best.
    fpr = fpr_at_tpr_cube(s_in, s_out)
    assert (fpr[~got.finished] > fpr.min() + 0.01 + 1 / 400).all()


def test_coarse_to_fine_differs_exactly_when_the_winners_estimate_misses_unseen():
    temps, s_in, s_out = paper_cubes(1)
    fpr = fpr_at_tpr_cube(s_in, s_out)
    win = np.unravel_index(np.argmin(fpr), fpr.shape)
    assert PAPER_EPS[win[1]] not in (0.0, 0.001, 0.002, 0.003, 0.004)  # an estimated pair
    # The winner's OOD estimate is raised so its FPR looks far worse than it is.
    est_out = s_out.copy()
    est_out[win] += 5.0
    got = coarse_to_fine_choice(s_in, s_out, s_in, est_out, temps, PAPER_EPS)
    assert not got.finished[win] and got.chosen != (temps[win[0]], PAPER_EPS[win[1]])
    # Once another finished pair shows an estimate error as large, the winner is finished.
    other = (win[0], win[1] + 1 if win[1] % 5 != 4 else win[1] - 1)
    est_out[other] = s_out[other] - 5.0  # its estimated FPR ~0: finished, and seen to miss
    got2 = coarse_to_fine_choice(s_in, s_out, s_in, est_out, temps, PAPER_EPS)
    assert got2.finished[other] and got2.estimate_error > 0.3
    assert got2.finished[win] and got2.chosen == (temps[win[0]], PAPER_EPS[win[1]])
    assert got2.rounds == 2
