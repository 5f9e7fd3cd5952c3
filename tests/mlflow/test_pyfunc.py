"""Bad inputs get a clear INVALID_PARAMETER_VALUE error, never a silent wrong score."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

GOOD = np.full((2, 3, 8, 8), 0.5, dtype=np.float32)


@pytest.fixture(scope="module")
def pf(saved_model: Path) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(str(saved_model))


def nan_images() -> np.ndarray:
    x = GOOD.copy()
    x[1, 0, 0, 0] = np.nan
    return x


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (
            np.full((2, 3, 9, 8), 0.5, np.float32),
            r"\(2, 3, 9, 8\) does not match .*\(-1, 3, 8, 8\)",
        ),
        (np.full((2, 1, 8, 8), 0.5, np.float32), r"does not match expected shape"),
        (np.full((3, 8, 8), 0.5, np.float32), r"does not match expected shape"),
        (GOOD.astype(np.float64), r"dtype of input float64 does not match expected dtype float32"),
        (nan_images(), r"image 1 holds NaN or inf"),
        (GOOD * 255, r"Expected raw pixels in \[0, 1\].*image 0 spans \[127.5, 127.5\]"),
        (-GOOD, r"Expected raw pixels in \[0, 1\]"),
    ],
)
def test_bad_images_are_refused_with_a_clear_message(pf, images, message) -> None:
    with pytest.raises(MlflowException, match=message) as info:
        pf.predict(images)
    assert info.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)


def test_wrong_flattened_length_is_refused(saved_model: Path) -> None:
    from mlflow_plugin.flavor import _load_pyfunc

    raw = _load_pyfunc(str(saved_model))
    with pytest.raises(MlflowException, match=r"192 values each"):
        raw.predict(np.zeros((2, 100), np.float32))
    with pytest.raises(MlflowException, match=r"3 channels|\(3, 8, 8\)"):
        raw.predict(np.zeros((2, 1, 8, 8), np.float32))


@pytest.mark.parametrize(
    ("params", "message"),
    [({"batch_size": 0}, "batch_size'] >= 1"), ({"threshold": float("nan")}, "finite")],
)
def test_bad_params_are_refused(pf, params, message) -> None:
    with pytest.raises(MlflowException, match=message):
        pf.predict(GOOD, params=params)
