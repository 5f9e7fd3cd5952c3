"""What a no-OOD run returns."""

from __future__ import annotations

from dataclasses import dataclass

from odin_monitor.bench.no_ood.config import NoOodConfig
from odin_monitor.bench.no_ood.rules import RuleRank

__all__ = ["CalibrateCheck", "DepthNoOod", "NoOodResult", "RuleChoice"]


@dataclass(frozen=True)
class RuleChoice:
    """A rule's ``(T, ε)`` and its FPR/AUROC on ID validation vs TIN-crop validation."""

    rule: str
    temperature: float
    epsilon: float
    val_fpr: float
    val_auroc: float


@dataclass(frozen=True)
class DepthNoOod:
    """Results of one ResNet depth.

    Attributes:
        depth: ResNet depth.
        choices: Rule (REF, MSP, R0, R1, R2, R4) -> its choice.
        test: Rule -> test set -> ``ood_metrics`` on ID test vs that set.
        goal: No-OOD rule -> test sets (real) where it misses the goal (empty: met).
        computed: Score blocks computed by this run (the rest came from the cache).
        seconds: Wall time of this depth.
    """

    depth: int
    choices: dict[str, RuleChoice]
    test: dict[str, dict[str, dict[str, float]]]
    goal: dict[str, tuple[str, ...]]
    computed: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class CalibrateCheck:
    """``odin_monitor.calibrate(strategy="jigsaw")`` against the run's own R4 cubes."""

    depth: int
    max_abs_diff_id: float
    max_abs_diff_jigsaw: float
    calibrate_pair: tuple[float, float]
    r4_pair: tuple[float, float]

    @property
    def equal(self) -> bool:
        """Same pair, and cubes equal to 1e-9."""
        return (
            self.calibrate_pair == self.r4_pair
            and max(self.max_abs_diff_id, self.max_abs_diff_jigsaw) <= 1e-9
        )


@dataclass(frozen=True)
class NoOodResult:
    """What :func:`~odin_monitor.bench.no_ood.run.run_no_ood` returns."""

    config: NoOodConfig
    depths: tuple[DepthNoOod, ...]
    winner: str
    ranking: tuple[RuleRank, ...]
    calibrate_check: CalibrateCheck | None
    machine: dict[str, str]
    command: str
