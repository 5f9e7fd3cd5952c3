"""The paper's synthetic OOD sets: Gaussian N(0.5, 1) clipped to [0, 1], and Uniform [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from odin_monitor import InputValidationError
from odin_monitor.synthetic import gaussian_noise, uniform_noise


def test_synthetic_sets_follow_the_paper():
    g = gaussian_noise(200, (3, 16, 16), seed=0)
    u = uniform_noise(200, (3, 16, 16), seed=0)
    # N(0.5, 1) clipped: P(x <= 0) = P(x >= 1) = Φ(-0.5) ≈ 0.3085.
    tail = norm.cdf(-0.5)
    assert np.mean(g == 0.0) == pytest.approx(tail, abs=0.005)
    assert np.mean(g == 1.0) == pytest.approx(tail, abs=0.005)
    assert g.mean() == pytest.approx(0.5, abs=0.005)
    assert u.min() >= 0 and u.max() <= 1 and u.mean() == pytest.approx(0.5, abs=0.005)
    assert np.mean(u < 0.25) == pytest.approx(0.25, abs=0.005)
    np.testing.assert_array_equal(g, gaussian_noise(200, (3, 16, 16), seed=0))
    assert not np.array_equal(g, gaussian_noise(200, (3, 16, 16), seed=1))
    with pytest.raises(InputValidationError):
        uniform_noise(0, (3, 4, 4))


# --- Poison inputs (issue 9): each must be a DataLoadError (a ValueError the CLI
# quarantines), never numpy's, zipfile's or Pillow's own exception.


def test_shapes_dtype_and_range():
    g = gaussian_noise(5, (1, 3, 2), seed=4)
    u = uniform_noise(5, (1, 3, 2), seed=4)
    assert g.shape == u.shape == (5, 1, 3, 2)
    assert g.dtype == u.dtype == np.float32
    assert g.min() >= 0.0 and g.max() <= 1.0
