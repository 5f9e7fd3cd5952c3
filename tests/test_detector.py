"""OdinDetector: the scikit-learn contract, δ, records and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from odin_monitor import (
    CalibrationRecord,
    InputValidationError,
    Normalization,
    NotFittedError,
    OdinDetector,
    odin_scores,
)
from tests.helpers import make_smooth_net

NORM = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture()
def x_val() -> torch.Tensor:
    return torch.rand(60, 3, 6, 6, generator=torch.Generator().manual_seed(3))


def make(**kw) -> OdinDetector:
    params = {"temperature": 1000.0, "epsilon": 0.0014, "normalization": NORM, "batch_size": 16}
    params.update(kw)
    return OdinDetector(make_smooth_net(), **params)


def test_init_stores_only_and_fit_returns_self(x_val):
    det = make()
    assert not det.is_fitted and not hasattr(det, "threshold_")
    assert det.fit(x_val) is det
    assert det.is_fitted


def test_not_fitted_error(x_val):
    det = make()
    for call in (det.predict, det.decision_function, det.score_batch):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(x_val)
    with pytest.raises(AttributeError):  # scikit-learn's NotFittedError is one too
        det.predict(x_val)
    assert det.score_samples(x_val).shape == (60,)  # scores need no threshold


@pytest.mark.parametrize("tpr", [0.95, 0.8])
def test_threshold_keeps_tpr_target_of_validation_images(x_val, tpr):
    det = make(tpr_target=tpr).fit(x_val)
    scores = det.score_samples(x_val)
    kept = int(np.sum(scores >= det.threshold_))
    assert kept == math.ceil(tpr * len(scores))  # distinct scores: exactly the target
    assert np.mean(det.predict(x_val)) == pytest.approx(1 - kept / len(scores))
    # δ in spread units is consistent with δ in score units.
    batch = det.score_batch(x_val)
    np.testing.assert_array_equal(batch.is_ood, batch.spread_score < det.threshold_spread_)


def test_scores_equal_functional_core(x_val):
    det = make().fit(x_val)
    core = odin_scores(
        det.model, x_val, temperature=1000.0, epsilon=0.0014, normalization=NORM, batch_size=16
    )
    np.testing.assert_array_equal(det.score_samples(x_val), core.odin_score.numpy())


def test_decision_function_sign_is_the_decision(x_val):
    """Negative exactly where predict flags OOD; δ keeps tpr_target of the fit images."""
    det = make().fit(x_val)
    decision = det.decision_function(x_val)
    np.testing.assert_array_equal(decision < 0, det.predict(x_val))
    assert np.mean(decision >= 0) >= det.tpr_target
    # Zero at δ: the fit image whose score is δ sits exactly on the boundary.
    assert np.min(np.abs(decision)) == 0.0


def test_score_batch_frame_and_threshold_override(x_val):
    det = make().fit(x_val)
    batch = det.score_batch(x_val[:7])
    frame = batch.to_frame()
    assert list(frame.columns) == ["odin_score", "spread_score", "msp", "predicted_class", "is_ood"]
    assert len(batch) == 7 and frame["predicted_class"].dtype == np.int64
    assert not det.predict(x_val[:7], threshold=0.0).any()
    assert det.predict(x_val[:7], threshold=1.0).all()


def test_accepts_numpy_and_reference_saved(x_val):
    det = make().fit(x_val.numpy())
    assert det.reference_.odin_score.shape == (60,)
    assert det.n_classes_ == 5 and det.input_shape_ == (3, 6, 6)
    np.testing.assert_array_equal(det.score_samples(x_val.numpy()), det.reference_.odin_score)


def test_record_round_trip_and_from_record(x_val):
    det = make(class_names=list("abcde")).fit(x_val)
    rec = det.to_record()
    again = CalibrationRecord.from_json(rec.to_json())
    assert again == rec and again.sha256() == rec.sha256()
    assert rec.sources[0].n_images == 60 and rec.sources[0].role == "in_distribution"
    clone = OdinDetector.from_record(det.model, again, batch_size=16)
    np.testing.assert_array_equal(clone.predict(x_val), det.predict(x_val))
    assert clone.to_record().threshold == rec.threshold
    assert not hasattr(clone, "reference_")
    with_ref = OdinDetector.from_record(det.model, again, reference=det.reference_)
    assert with_ref.reference_ is det.reference_


def test_set_and_get_params():
    det = make()
    det.set_params(temperature=10.0)
    assert det.get_params()["temperature"] == 10.0
    with pytest.raises(InputValidationError, match="set_params"):
        det.set_params(temprature=1.0)


def test_uint8_images_in_either_layout_score_like_floats_over_255(x_val):
    det = make().fit(x_val)
    pixels = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    want = det.score_samples(pixels.to(torch.float32) / 255)
    np.testing.assert_array_equal(det.score_samples(pixels), want)
    np.testing.assert_array_equal(det.score_samples(pixels.permute(0, 2, 3, 1).numpy()), want)
    with pytest.raises(InputValidationError, match=r"uint8 `x` images of shape \(N, 3, 6, 6\)"):
        det.score_samples(torch.zeros(2, 3, 5, 6, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(0, 3, 6, 6), "empty"),
        (torch.zeros(3, 6, 6), r"\(N, C, H, W\)"),
        (np.zeros((2, 3, 6, 6), dtype=np.int64), "dtype int64"),
        ([[0.1]], "torch.Tensor or numpy.ndarray"),
        (torch.zeros(2, 1, 6, 6), "3 channels"),
    ],
)
def test_bad_images_are_refused(x, match):
    with pytest.raises(InputValidationError, match=match):
        make().fit(x)


def test_nan_and_range_errors_name_the_image():
    x = torch.rand(5, 3, 6, 6)
    x[3, 1, 2, 2] = float("nan")
    with pytest.raises(InputValidationError, match="image 3"):
        make().fit(x)
    x = torch.rand(5, 3, 6, 6)
    x[2] *= 255
    with pytest.raises(InputValidationError, match=r"before normalisation.*image 2 spans"):
        make().fit(x)


def test_shape_must_match_fitted_shape(x_val):
    det = make().fit(x_val)
    with pytest.raises(InputValidationError, match=r"\(3, 6, 6\)"):
        det.predict(torch.rand(2, 3, 8, 8))


def test_bad_parameters_fail_at_fit(x_val):
    with pytest.raises(InputValidationError, match="tpr_target"):
        make(tpr_target=1.5).fit(x_val)
    with pytest.raises(InputValidationError, match="Normalization"):
        make(normalization=((0.5,), (0.2,))).fit(x_val)
    with pytest.raises(InputValidationError, match=r"nn\.Module"):
        OdinDetector("resnet", normalization=None).fit(x_val)
    with pytest.raises(TypeError):
        OdinDetector(make_smooth_net())  # normalisation must be explicit


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "abc", None, True])
def test_non_finite_threshold_is_refused(x_val, bad):
    det = make().fit(x_val)
    if bad is None:  # None means "the fitted δ", the one allowed non-number
        np.testing.assert_array_equal(det.predict(x_val, threshold=bad), det.predict(x_val))
        return
    # NaN compared with any score is False: before the fix threshold=nan flagged nothing.
    for call in (det.score_batch, det.predict):
        with pytest.raises(InputValidationError, match="Expected a finite number for threshold"):
            call(x_val, threshold=bad)
    with pytest.raises(ValueError):  # InputValidationError is a ValueError too
        det.score_batch(x_val, threshold=bad)


def test_finite_threshold_override_matches_independent_comparison(x_val):
    det = make().fit(x_val)
    scores = det.score_samples(x_val)
    delta = float(np.median(scores))
    np.testing.assert_array_equal(det.predict(x_val, threshold=delta), scores < delta)


def test_from_record_refuses_a_non_finite_threshold(x_val):
    import dataclasses

    rec = make().fit(x_val).to_record()
    bad = dataclasses.replace(rec, threshold=float("nan"))
    with pytest.raises(InputValidationError, match="finite number for threshold"):
        OdinDetector.from_record(make_smooth_net(), bad)
