"""Checks of a calibration's numbers: ``T``, ``ε``, ``δ`` and the TPR target (no torch).

The one place these are validated, for the scoring functions, the detector, the
calibration grid and the monitoring metadata alike. Each returns the value as a float
(or a tuple of floats) and raises :class:`~odin_monitor.errors.InputValidationError`
(a ``ValueError``) saying what was expected and what came.

Example:
    >>> check_temperature(1000), check_epsilon(0.0014), check_tpr_target(0.95)
    (1000.0, 0.0014, 0.95)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from odin_monitor.errors import InputValidationError

__all__ = [
    "check_epsilon",
    "check_grid",
    "check_temperature",
    "check_threshold",
    "check_tpr_target",
]


def _number(value: Any, name: str, expected: str) -> float:
    if isinstance(value, bool):
        raise InputValidationError(f"Expected `{name}` {expected}, but got {value!r}.")
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise InputValidationError(f"Expected `{name}` {expected}, but got {value!r}.") from err
    if not math.isfinite(out):
        raise InputValidationError(f"Expected `{name}` {expected}, but got {out}.")
    return out


def check_temperature(value: Any, name: str = "temperature") -> float:
    """``T``: a finite number > 0.

    Example:
        >>> check_temperature(0)
        Traceback (most recent call last):
        ...
        odin_monitor.errors.InputValidationError: Expected `temperature` > 0, but got 0.0.
    """
    out = _number(value, name, "> 0")
    if out <= 0:
        raise InputValidationError(f"Expected `{name}` > 0, but got {out}.")
    return out


def check_epsilon(value: Any, name: str = "epsilon") -> float:
    """``ε``: a finite number >= 0, in pixel units of [0, 1] images."""
    expected = ">= 0 in pixel units of [0, 1] images"
    out = _number(value, name, expected)
    if out < 0:
        raise InputValidationError(f"Expected `{name}` {expected}, but got {out}.")
    return out


def check_threshold(value: Any, name: str = "threshold") -> float:
    """``δ``: a finite number (a NaN threshold would flag nothing)."""
    return _number(value, name, "to be a finite number (δ, in score units)")


def check_tpr_target(value: Any, name: str = "tpr_target") -> float:
    """The in-distribution true-positive rate kept by ``δ``: a number in (0, 1).

    Example:
        >>> check_tpr_target(0.95)
        0.95
    """
    out = _number(value, name, "to be a number in (0, 1)")
    if not 0.0 < out < 1.0:
        raise InputValidationError(
            f"Expected `{name}` in (0, 1) (0.95 keeps 95% of in-distribution images), "
            f"but got {out}."
        )
    return out


def check_grid(
    values: Sequence[Any], name: str, check: Callable[[Any, str], float]
) -> tuple[float, ...]:
    """A non-empty grid of distinct values, each passing ``check``.

    Example:
        >>> check_grid([1, 1000], "temperatures", check_temperature)
        (1.0, 1000.0)
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputValidationError(
            f"Expected `{name}` to be a list of numbers, but got {values!r}."
        )
    out = tuple(check(v, f"{name}[{i}]") for i, v in enumerate(values))
    if not out:
        raise InputValidationError(f"Expected at least one value in `{name}`, but got none.")
    if len(set(out)) != len(out):
        raise InputValidationError(f"Expected distinct values in `{name}`, but got {out}.")
    return out
