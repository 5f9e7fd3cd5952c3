"""What a speed run returns: rows per method and configuration, calibration timing, targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CalibrationTiming", "SearchTiming", "SpeedResult", "SpeedRow", "TargetCheck"]


@dataclass(frozen=True)
class SpeedRow:
    """One method under one configuration.

    Attributes:
        depth: ResNet depth.
        batch_size: Images per chunk (1 for the per-image loop, whatever the row's config).
        precision: ``"fp32"`` or ``"amp"`` (bf16 autocast) for this method.
        method: One of the module's method names.
        n_images: Images per timed call.
        seconds: Median seconds per timed call.
        rounds: Every round's seconds.
        images_per_s: ``n_images / seconds``.
        ratio_to_forward: Time per image over the plain forward's (same config), medians.
        best_seconds: Fastest round (robust to intermittent background load).
        ratio_to_forward_best: The same ratio from the fastest rounds.
        peak_memory_mb: Peak memory rise of one call (MiB), ``None`` if not measured.
        note: Anything the reader must know.
    """

    depth: int
    batch_size: int
    precision: str
    method: str
    n_images: int
    seconds: float
    rounds: tuple[float, ...]
    images_per_s: float
    ratio_to_forward: float
    best_seconds: float = float("nan")
    ratio_to_forward_best: float = float("nan")
    peak_memory_mb: float | None = None
    note: str = ""


@dataclass(frozen=True)
class SearchTiming:
    """Whole runs of one grid search (:func:`odin_monitor.search.search_grid`), its choice included.

    Attributes:
        search: The search asked for (``"coarse-to-fine"``, ``"halving"``).
        compiled: Whether its perturbed forwards ran on the compiled step.
        seconds: Median of the runs.
        rounds: Every run's seconds.
        choice: The pair chosen (NaN if the runs disagreed).
        finished: Pairs scored on every image.
        ran: The search that ran (``"full"`` where the sets were too small to halve).
        detail: The search's own sentence (the calibration record's ``selection``).
    """

    search: str
    compiled: bool
    seconds: float
    rounds: tuple[float, ...]
    choice: tuple[float, float]
    finished: int
    ran: str
    detail: str


@dataclass(frozen=True)
class CalibrationTiming:
    """Grid searches and the shared-work full grid vs the naive per-pair loop, same data.

    Attributes:
        depth: ResNet depth.
        n_id: In-distribution images.
        n_ood: OOD images.
        n_pairs: Pairs of the grid.
        ours_seconds: Full grid (``grid_scores``), summed over the chunks.
        naive_seconds: Naive loop, summed over the chunks.
        ours_choice: The full grid's pair.
        naive_choice: The naive loop's pair.
        max_abs_score_diff: Largest |full grid - naive| score.
        searches: The searches timed whole; the first is calibrate's default, eager.
    """

    depth: int
    n_id: int
    n_ood: int
    n_pairs: int
    ours_seconds: float
    naive_seconds: float
    ours_choice: tuple[float, float]
    naive_choice: tuple[float, float]
    max_abs_score_diff: float
    searches: tuple[SearchTiming, ...] = ()

    @property
    def ratio(self) -> float:
        """The full grid's time over the naive loop's."""
        return self.ours_seconds / self.naive_seconds

    @property
    def search_ratio(self) -> float | None:
        """The first (default) search's time over the naive loop's (``None`` if none timed)."""
        return self.searches[0].seconds / self.naive_seconds if self.searches else None

    @property
    def same_choice(self) -> bool:
        """Whether the full grid, the naive loop and every timed search choose alike."""
        agree = self.ours_choice == self.naive_choice
        return agree and all(s.choice == self.naive_choice for s in self.searches)


@dataclass(frozen=True)
class TargetCheck:
    """One target of the issue: measured value, bound, met or not."""

    name: str
    value: float
    bound: float
    higher_is_better: bool
    value_best: float | None = None

    @property
    def met(self) -> bool:
        """Whether the value is on the right side of the bound."""
        return self.value >= self.bound if self.higher_is_better else self.value <= self.bound


@dataclass(frozen=True)
class SpeedResult:
    """What :func:`run_speed` returns."""

    rows: tuple[SpeedRow, ...]
    calibration: CalibrationTiming | None
    targets: tuple[TargetCheck, ...]
    machine: dict[str, str]
    command: str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
