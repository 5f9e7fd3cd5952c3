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


# --- The image route: encoded files in a binary `image` column (issue 11) ---------------


def png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def by_hand(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL's pixels / 255, then torch's antialiased bilinear resize: what the spec says."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255))[None]
    if x.shape[-2:] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].clamp(0, 1).numpy()


@pytest.fixture(scope="module")
def image_pf(image_model: Path) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(str(image_model))


def test_image_model_declares_one_binary_image_column(image_pf) -> None:
    schema = image_pf.metadata.get_input_schema()
    assert schema.input_names() == ["image"]
    assert str(schema.inputs[0].type) == "DataType.binary"


def test_image_files_score_like_the_detector_on_hand_decoded_pixels(image_pf, result) -> None:
    import pandas as pd

    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in
                [(8, 8, 3), (20, 14, 3), (5, 9, 3)]]  # fmt: skip
    got = image_pf.predict(pd.DataFrame({"image": [png(p) for p in pictures]}))
    want = result.detector.score_batch(np.stack([by_hand(p, (8, 8)) for p in pictures]))
    np.testing.assert_allclose(got["odin_score"], want.odin_score, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(got["is_ood"], want.is_ood)


def test_bad_files_name_their_rows_and_nothing_is_scored(image_pf) -> None:
    import pandas as pd

    good = png(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(MlflowException, match=r"2 of 3 images cannot be used") as info:
        image_pf.predict(pd.DataFrame({"image": [good, b"GIF89a-not-really", b"\x00" * 10]}))
    assert "row 1: the GIF file is truncated or corrupt" in str(info.value)
    assert "row 2: expected an image file" in str(info.value)
    assert info.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)


def test_tensor_model_refuses_an_image_column_with_the_reason(saved_model: Path) -> None:
    import pandas as pd

    from mlflow_plugin.flavor import _load_pyfunc

    raw = _load_pyfunc(str(saved_model))  # past MLflow's schema check: our own message
    raw.preprocessing = None
    with pytest.raises(MlflowException, match="logged without a preprocessing spec"):
        raw.predict(pd.DataFrame({"image": [png(np.zeros((8, 8, 3), np.uint8))]}))


def test_an_image_column_of_pixel_arrays_still_scores_on_a_tensor_model(pf) -> None:
    """Spark users of tensor models pass a column named `image` of flattened floats."""
    import pandas as pd

    x = np.random.default_rng(4).uniform(0, 1, (3, 3, 8, 8)).astype(np.float32)
    frame = pd.DataFrame({"image": [img.reshape(-1) for img in x]})
    got = pf._model_impl.predict(frame)
    np.testing.assert_allclose(got["odin_score"], pf.predict(x)["odin_score"], rtol=0, atol=1e-7)
