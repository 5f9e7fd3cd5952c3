from __future__ import annotations

import json
import math

import numpy as np
import pytest

from odin_monitor.errors import InputValidationError
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.schema import ModelRef


def _ref(**changes):
    fields = {
        "name": "m",
        "version": "1",
        "calibration_sha256": "0" * 64,
        "threshold": 0.1005,
        "threshold_spread": 2.0,
        "tpr_target": 0.95,
        **changes,
    }
    return ModelRef(**fields)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tpr_target", 95, r"Expected `tpr_target` in \(0, 1\)"),
        ("tpr_target", 1.0, r"Expected `tpr_target` in \(0, 1\)"),
        ("threshold", float("nan"), r"Expected `threshold` to be a finite number"),
        ("threshold_spread", float("inf"), r"Expected `threshold_spread` to be a finite"),
        ("threshold", "0.1", None),  # a number in a string is a number
        ("temperature", 0.0, r"Expected `temperature` > 0"),
        ("temperature", True, r"Expected `temperature`"),
    ],
)
def test_operating_point_is_checked_like_the_core(field, value, message):
    if message is None:
        assert _ref(**{field: value}).threshold == 0.1
        return
    with pytest.raises(InputValidationError, match=message) as err:
        _ref(**{field: value})
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(("field", "value"), [("name", ""), ("version", 3)])
def test_identity_must_be_non_empty_strings(field, value):
    with pytest.raises(ConfigError, match=f"Expected .*{field}"):
        _ref(**{field: value})


def test_fields_are_stored_as_plain_floats_and_round_trip_as_json():
    ref = _ref(threshold=np.float32(0.25), temperature=np.float64(1000), n_classes=10)
    assert type(ref.threshold) is float and ref.threshold == 0.25
    assert type(ref.temperature) is float and ref.n_classes == 10
    assert ModelRef(**json.loads(json.dumps(ref.to_dict()))) == ref
    assert math.isclose(ref.expected_ood_rate, 0.05)
