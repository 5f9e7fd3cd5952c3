"""Small deterministic models shared by the tests."""

from __future__ import annotations

import torch
from torch import nn


class SmoothNet(nn.Module):
    """A small smooth conv net (tanh, softplus) with BatchNorm and Dropout."""

    def __init__(self, channels: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.bn(self.conv(x)))
        h = nn.functional.adaptive_avg_pool2d(h, 2).flatten(1)
        return nn.functional.softplus(self.fc(self.drop(h))) * 3.0 - self.fc(h)


def make_smooth_net(channels: int = 3, classes: int = 5, seed: int = 0) -> SmoothNet:
    torch.manual_seed(seed)
    net = SmoothNet(channels, classes)
    # Non-trivial BatchNorm statistics, so eval vs train mode matters.
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net
