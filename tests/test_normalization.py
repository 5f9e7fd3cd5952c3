"""Normalization: per-channel (x − μ)/σ, its checks and its JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from odin_monitor import InputValidationError, Normalization
from odin_monitor.normalization import IMAGENET_NORMALIZATION, normalize


def test_normalize_matches_a_per_pixel_loop():
    norm = Normalization(mean=(0.1, 0.5, 0.9), std=(0.2, 0.25, 0.5))
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    got = normalize(x, norm).numpy()
    want = np.empty_like(got)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    want[n, c, i, j] = (float(x[n, c, i, j]) - norm.mean[c]) / norm.std[c]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_none_means_raw_pixels_and_gradients_flow():
    x = torch.rand(1, 3, 2, 2, requires_grad=True)
    assert normalize(x, None) is x
    normalize(x, IMAGENET_NORMALIZATION).sum().backward()
    np.testing.assert_allclose(
        x.grad[0, :, 0, 0].numpy(), 1 / np.array(IMAGENET_NORMALIZATION.std), rtol=1e-6
    )


def test_json_round_trip_through_text():
    norm = Normalization(mean=[0.5, 0.25], std=[0.1, 0.2])
    again = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm and again.mean == (0.5, 0.25) and isinstance(again.std, tuple)
    assert Normalization.from_dict(None) is None


def test_bad_normalisations_are_refused():
    with pytest.raises(InputValidationError, match="one value per channel"):
        Normalization(mean=(0.5, 0.5), std=(0.2,))
    with pytest.raises(InputValidationError, match="> 0"):
        Normalization(mean=(0.5,), std=(0.0,))
    with pytest.raises(InputValidationError, match="finite"):
        Normalization(mean=(float("nan"),), std=(1.0,))
    with pytest.raises(InputValidationError, match="'mean' and 'std'"):
        Normalization.from_dict({"mean": [0.5]})


def test_channel_mismatch_is_refused():
    with pytest.raises(InputValidationError, match="3 channels"):
        normalize(torch.rand(1, 1, 2, 2), IMAGENET_NORMALIZATION)
