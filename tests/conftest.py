"""Shared fixtures: small deterministic models and the optional shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import SmoothNet, make_smooth_net

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ODIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder; tests needing it skip where it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared/data; "
            "set ODIN_SHARED_DATA to its folder to run this test)"
        )
    return SHARED_DATA


@pytest.fixture()
def smooth_net() -> SmoothNet:
    return make_smooth_net()


@pytest.fixture()
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(12, 3, 6, 6, generator=g)
