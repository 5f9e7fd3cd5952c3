"""The rules that choose ``(T, ε)``, the goal check and the selection among rules.

Pure functions on score cubes and FPRs; the grid choices are the library's own
(:attr:`odin_monitor.grid.CalibrationGrid.best`), so REF, R0 and R4 choose exactly as
:func:`odin_monitor.calibrate` does with that validation set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from odin_monitor.bench.no_ood.config import GOAL_FACTOR, GOAL_SLACK, NO_OOD_RULES
from odin_monitor.grid import CalibrationGrid

__all__ = [
    "RuleRank",
    "goal_limit",
    "grid_choice",
    "mean_score_epsilon",
    "meets_goal",
    "select_rule",
]

#: Within this many FPR points of the best worst-case excess, rules count as tied.
TIE_POINTS = 0.5


def grid_choice(
    s_id: np.ndarray,
    s_ood: np.ndarray,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    tpr_target: float = 0.95,
) -> tuple[float, float]:
    """The pair :func:`odin_monitor.calibrate` chooses from these ``(T, ε, N)`` cubes."""
    best = CalibrationGrid.from_scores(s_id, s_ood, temperatures, epsilons, tpr_target).best
    return best.temperature, best.epsilon


def mean_score_epsilon(s_id: np.ndarray, epsilons: Sequence[float]) -> float:
    """Generalized-ODIN's ε search: the ε maximising the mean ID score (ties: smaller ε).

    Args:
        s_id: ``(len(ε), N)`` in-distribution validation scores at one ``T``.
        epsilons: The ε values, ascending.

    Example:
        >>> mean_score_epsilon(np.array([[0.5, 0.5], [0.9, 0.7], [0.8, 0.8]]), [0, 0.001, 0.002])
        0.001
    """
    means = np.asarray(s_id, dtype=np.float64).mean(axis=1)
    return float(epsilons[int(np.flatnonzero(means == means.max())[0])])


def goal_limit(fpr_ref: float) -> float:
    """The highest FPR the goal allows: ``1.15 × FPR_REF + 0.02``."""
    return GOAL_FACTOR * fpr_ref + GOAL_SLACK


def meets_goal(fpr: float, fpr_ref: float, fpr_msp: float) -> bool:
    """``fpr ≤ 1.15 × fpr_ref + 0.02`` and below MSP (at MSP where MSP is 0, as on noise).

    Example:
        >>> meets_goal(0.168, 0.137, 0.568), meets_goal(0.339, 0.269, 0.721)
        (True, False)
    """
    below_msp = fpr < fpr_msp or fpr_msp == 0.0 == fpr
    return fpr <= goal_limit(fpr_ref) + 1e-12 and below_msp


@dataclass(frozen=True)
class RuleRank:
    """One rule's standing on validation: the protocol's ranking keys."""

    rule: str
    below_msp: bool
    worst_excess: float
    mean_ratio: float


def select_rule(
    val_fpr: Mapping[str, Mapping[int, float]],
    ref: Mapping[int, float],
    msp: Mapping[int, float],
) -> tuple[str, tuple[RuleRank, ...]]:
    """The protocol's choice among no-OOD rules from validation FPRs only.

    Rules below MSP at every depth rank first, then by the worst (over depths) excess
    ``FPR − (1.15 FPR_REF + 0.02)``; among those within 0.5 points of the best, the lower
    mean ratio ``FPR / FPR_REF`` wins, then the simpler rule (R1 < R2 < R4 < R0).

    Args:
        val_fpr: Rule -> depth -> FPR on ID validation vs TIN-crop validation.
        ref: Depth -> REF's FPR there.
        msp: Depth -> MSP's FPR there.

    Returns:
        The winner, and every rule's :class:`RuleRank`, best first.
    """
    order = {r: i for i, r in enumerate(NO_OOD_RULES)}
    ranks = []
    for rule, by_depth in val_fpr.items():
        excess = [by_depth[d] - goal_limit(ref[d]) for d in by_depth]
        ratio = [by_depth[d] / ref[d] if ref[d] > 0 else np.inf for d in by_depth]
        below = all(by_depth[d] < msp[d] for d in by_depth)
        ranks.append(RuleRank(rule, below, max(excess), float(np.mean(ratio))))
    ranks.sort(key=lambda r: (not r.below_msp, r.worst_excess, order.get(r.rule, len(order))))
    first = ranks[0]
    tied = [
        r
        for r in ranks
        if r.below_msp == first.below_msp
        and r.worst_excess <= first.worst_excess + TIE_POINTS / 100
    ]
    winner = min(tied, key=lambda r: (r.mean_ratio, order.get(r.rule, len(order)))).rule
    return winner, tuple(ranks)
