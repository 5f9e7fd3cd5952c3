"""The one set of checks for T, ε, δ and the TPR target."""

from __future__ import annotations

import math

import pytest

from odin_monitor import InputValidationError
from odin_monitor.hyper import (
    check_epsilon,
    check_grid,
    check_temperature,
    check_threshold,
    check_tpr_target,
)

BAD_NUMBERS = [math.nan, math.inf, -math.inf, "abc", None, True, [1.0]]


@pytest.mark.parametrize("bad", [*BAD_NUMBERS, 0, -1.0])
def test_temperature_must_be_positive_and_finite(bad):
    with pytest.raises(InputValidationError, match=r"Expected `temperature` > 0, but got"):
        check_temperature(bad)


@pytest.mark.parametrize("bad", [*BAD_NUMBERS, -1e-9])
def test_epsilon_must_be_non_negative_and_finite(bad):
    with pytest.raises(InputValidationError, match=r"Expected `epsilon` >= 0 in pixel units"):
        check_epsilon(bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_threshold_must_be_finite(bad):
    with pytest.raises(InputValidationError, match="finite number"):
        check_threshold(bad)


@pytest.mark.parametrize("bad", [*BAD_NUMBERS, 0.0, 1.0, 95])
def test_tpr_target_in_open_unit_interval(bad):
    with pytest.raises(InputValidationError, match="tpr_target"):
        check_tpr_target(bad)


def test_good_values_come_back_as_floats():
    assert check_temperature(1000) == 1000.0 and isinstance(check_temperature(2), float)
    assert check_epsilon(0) == 0.0
    assert check_threshold(-3) == -3.0
    assert check_tpr_target("0.9") == 0.9


def test_grid_checks_each_value_names_its_position_and_wants_distinct_values():
    assert check_grid([1, 10.0], "temperatures", check_temperature) == (1.0, 10.0)
    with pytest.raises(InputValidationError, match=r"temperatures\[1\]"):
        check_grid([1, 0], "temperatures", check_temperature)
    with pytest.raises(InputValidationError, match="distinct"):
        check_grid([0.001, 0.001], "epsilons", check_epsilon)
    with pytest.raises(InputValidationError, match="at least one"):
        check_grid([], "epsilons", check_epsilon)
    with pytest.raises(InputValidationError, match="list of numbers"):
        check_grid("0.1", "epsilons", check_epsilon)
