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


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give each worker an equal share of the cores.

    README's test command runs two workers (``-n 2``). Each would otherwise start torch
    with one OpenMP thread per core, and so would every server and CLI it spawns; on two
    cores that is four spinning threads where two fit, and the CPU-bound tests took up
    to 4x longer. Subprocesses inherit ``OMP_NUM_THREADS``.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        share = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(share)
        os.environ["OMP_NUM_THREADS"] = str(share)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first: README's walkthrough, then the files with tests marked ``slow``.

    With ``--dist loadfile`` a worker takes whole files in collection order; a long file
    taken last would run alone at the end while the other worker idles.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path.name != "test_readme.py", item.path not in slow_files))


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
