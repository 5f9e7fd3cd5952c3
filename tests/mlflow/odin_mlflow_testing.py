"""Small models and helpers for the MLflow flavour tests (importable by basename)."""

from __future__ import annotations

import torch
from torch import nn


def make_net(seed: int = 0, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, classes),
    ).eval()


class BranchyNet(nn.Module):
    """Data-dependent control flow: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        if bool(h.detach().sum() > 0):  # a Python branch on a tensor value
            h = h * 2
        return self.head(h)


def make_branchy() -> BranchyNet:
    torch.manual_seed(3)
    return BranchyNet().eval()


def images(n: int, seed: int = 1, shape: tuple[int, int, int] = (3, 8, 8)) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def java_available() -> bool:
    import shutil
    import subprocess

    if shutil.which("java") is None:
        return False
    try:
        return subprocess.run(["java", "-version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
