"""Alert rules over the batch history: binomial spike test and binomial CUSUM.

Rules are pure: they take the committed :class:`~.batches.BatchRecord` history of
one model version (oldest first) and return :class:`Alert` objects concerning the
newest batch, so replaying the log reproduces every alert.

Example:
    >>> rule = BinomialSpikeRule(alpha=0.01)
    >>> rule.name
    'binomial_spike'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from odin_monitor.monitoring.batches import BatchRecord, utcnow
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.stats import (
    binomial_pvalue,
    cusum_path,
    cusum_reference_value,
)


@dataclass(frozen=True)
class Alert:
    """A fired rule; frozen and JSON-serialisable (:meth:`to_json`).

    Attributes:
        alert_id: Deterministic id (rule + batch ids), so re-evaluation never duplicates.
        rule: Rule name, e.g. ``"binomial_spike"`` or ``"cusum"``.
        model_name: Registered model name.
        model_version: Registered model version.
        calibration_sha256: Calibration hash of the threshold in force.
        batch_ids: Batches the evidence comes from (the newest last).
        observed_rate: OOD rate over ``batch_ids``.
        expected_rate: ``1 - tpr_target``.
        n_images: Images over ``batch_ids``.
        n_ood: Flagged images over ``batch_ids``.
        statistic: Test statistic (CUSUM ``S_t``; the OOD count for the spike test).
        p_value: One-sided binomial p-value (None for CUSUM).
        threshold: Decision threshold (``alpha`` or CUSUM ``h``).
        report_path: HTML report of the newest batch, when one was written.
        created_at: ISO-8601 UTC creation time.
        status: ``"firing"``, or ``"resolved"`` for the batch after a firing one that no
            longer fires (:func:`resolutions`; only notifiers that ask for them, such as
            Alertmanager's, receive those).
    """

    alert_id: str
    rule: str
    model_name: str
    model_version: str
    calibration_sha256: str
    batch_ids: tuple[str, ...]
    observed_rate: float
    expected_rate: float
    n_images: int
    n_ood: int
    statistic: float
    p_value: float | None
    threshold: float
    report_path: str | None = None
    created_at: str = field(default_factory=utcnow)
    status: str = "firing"

    @property
    def message(self) -> str:
        """One human-readable line."""
        p = "" if self.p_value is None else f", p={self.p_value:.3g}"
        return (
            f"[{self.rule}] {self.model_name} v{self.model_version}: OOD rate "
            f"{self.observed_rate:.4f} ({self.n_ood}/{self.n_images}) vs expected "
            f"{self.expected_rate:.4f}{p}, statistic={self.statistic:.4g} "
            f"(threshold {self.threshold:g}); batches {', '.join(self.batch_ids[-3:])}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``batch_ids`` as a list)."""
        d = asdict(self)
        d["batch_ids"] = list(self.batch_ids)
        return d

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "batch_ids": tuple(data["batch_ids"])})


def _alert_id(rule: str, batch_ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\x1f".join([rule, *batch_ids]).encode()).hexdigest()
    return f"{rule}-{digest[:16]}"


def _make_alert(
    rule: str,
    batches: Sequence[BatchRecord],
    statistic: float,
    p_value: float | None,
    threshold: float,
) -> Alert:
    last = batches[-1]
    n = sum(b.n_images for b in batches)
    x = sum(b.n_ood for b in batches)
    ids = tuple(b.batch_id for b in batches)
    return Alert(
        alert_id=_alert_id(rule, ids),
        rule=rule,
        model_name=last.model.name,
        model_version=last.model.version,
        calibration_sha256=last.model.calibration_sha256,
        batch_ids=ids,
        observed_rate=x / n,
        expected_rate=last.model.expected_ood_rate,
        n_images=n,
        n_ood=x,
        statistic=float(statistic),
        p_value=p_value,
        threshold=float(threshold),
    )


class Rule(Protocol):
    """An alert rule: ``evaluate(history)`` returns alerts about the newest batch."""

    @property
    def name(self) -> str:
        """Rule name, stored in alerts."""
        ...

    def evaluate(self, history: Sequence[BatchRecord]) -> list[Alert]:
        """Alerts concerning ``history[-1]``."""
        ...


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ConfigError(f"Expected alpha in (0, 1), e.g. 0.01, but got {alpha!r}.")


@dataclass(frozen=True)
class BinomialSpikeRule:
    """Per-batch one-sided binomial test of the OOD count against ``1 - tpr_target``.

    Fires when ``P(X >= x | Bin(n, p0)) <= alpha``. Under in-distribution traffic the
    false-alarm rate per batch is at most ``alpha`` (exactly
    :func:`~.stats.realized_size`, the test being discrete).

    Example:
        >>> BinomialSpikeRule(alpha=0.05).alpha
        0.05
    """

    alpha: float = 0.01
    name: str = "binomial_spike"

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)

    def evaluate(self, history: Sequence[BatchRecord]) -> list[Alert]:
        """Test the newest batch of ``history``."""
        if not history:
            return []
        last = history[-1]
        p = binomial_pvalue(last.n_ood, last.n_images, last.model.expected_ood_rate)
        if p > self.alpha:
            return []
        return [_make_alert(self.name, [last], last.n_ood, p, self.alpha)]


@dataclass(frozen=True)
class CusumRule:
    """Binomial CUSUM on per-batch counts for sustained small increases.

    ``S_t = max(0, S_{t-1} + x_t - k n_t)``, alarm when ``S_t > h`` (then restart).

    Args:
        h: Decision interval in flagged images. Pick it for a target in-control
            average run length with :func:`~.stats.choose_cusum_h`.
        k: Reference rate per image; default: the optimal value
            :func:`~.stats.cusum_reference_value` for ``p0 -> p1``.
        shift: If ``k`` is None, ``p1 = min(shift * p0, (1 + p0) / 2)``.

    Example:
        >>> CusumRule(h=5.0, shift=2.0).name
        'cusum'
    """

    h: float = 5.0
    k: float | None = None
    shift: float = 2.0
    name: str = "cusum"

    def __post_init__(self) -> None:
        if not isinstance(self.h, (int, float)) or self.h <= 0:
            raise ConfigError(f"Expected a positive CUSUM h (flagged images) but got {self.h!r}.")
        if self.k is not None and not 0.0 < self.k < 1.0:
            raise ConfigError(f"Expected CUSUM k as a rate in (0, 1) but got {self.k!r}.")
        if self.shift <= 1.0:
            raise ConfigError(
                f"Expected a shift factor > 1 (p1 = shift * p0) but got {self.shift!r}."
            )

    def reference_value(self, p0: float) -> float:
        """The ``k`` used for an in-control rate ``p0``."""
        if self.k is not None:
            return self.k
        return cusum_reference_value(p0, min(self.shift * p0, (1.0 + p0) / 2.0))

    def path(self, history: Sequence[BatchRecord]) -> tuple[list[float], list[bool]]:
        """CUSUM statistic and alarms over the whole history."""
        if not history:
            return [], []
        k = self.reference_value(history[-1].model.expected_ood_rate)
        stat, alarm = cusum_path(
            [b.n_ood for b in history], [b.n_images for b in history], k, self.h
        )
        return stat.tolist(), alarm.tolist()

    def evaluate(self, history: Sequence[BatchRecord]) -> list[Alert]:
        """Alarm if the CUSUM crosses ``h`` at the newest batch."""
        stat, alarm = self.path(history)
        if not alarm or not alarm[-1]:
            return []
        start = len(stat) - 1  # the run of positive S that led to the alarm
        while start > 0 and stat[start - 1] > 0 and not alarm[start - 1]:
            start -= 1
        return [_make_alert(self.name, history[start:], stat[-1], None, self.h)]


def resolutions(rules: Sequence[Rule], history: Sequence[BatchRecord]) -> list[Alert]:
    """Resolution of each rule that fired on the batch before the newest and not on it.

    Pure, like the rules: replaying the log reproduces them. Each is an :class:`Alert`
    with ``status="resolved"`` about the newest batch (its OOD rate and binomial
    p-value), with its own deterministic id.

    Example:
        >>> resolutions([BinomialSpikeRule()], [])
        []
    """
    if len(history) < 2:
        return []
    last = history[-1]
    out: list[Alert] = []
    for rule in rules:
        if rule.evaluate(history[:-1]) and not rule.evaluate(history):
            p = binomial_pvalue(last.n_ood, last.n_images, last.model.expected_ood_rate)
            threshold = float(getattr(rule, "alpha", getattr(rule, "h", 0.0)))
            fired = _make_alert(rule.name, [last], last.n_ood, p, threshold)
            out.append(
                replace(
                    fired,
                    alert_id=_alert_id(f"{rule.name}:resolved", fired.batch_ids),
                    status="resolved",
                )
            )
    return out


def evaluate_rules(rules: Sequence[Rule], history: Sequence[BatchRecord]) -> list[Alert]:
    """Evaluate every rule on the history; alerts in rule order.

    Example:
        >>> evaluate_rules([BinomialSpikeRule()], [])
        []
    """
    out: list[Alert] = []
    for rule in rules:
        out.extend(rule.evaluate(history))
    return out
