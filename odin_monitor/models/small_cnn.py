"""A small CNN for the offline demo (scikit-learn's 8x8 digits) and for tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odin_monitor.models.config import ModelConfig, with_config

__all__ = ["SmallCNN", "small_cnn_digits"]


class SmallCNN(nn.Module):
    """Two 3x3 conv layers, a 2x2 max-pool, pooled to 4x4, and a two-layer head.

    Keeping the 4x4 spatial layout in the head (rather than global pooling) is what
    lets such a small network tell a digit from a patch of texture.

    Args:
        in_channels: Image channels.
        num_classes: Output logits.
        width: Channels of the first conv layer (the second has twice as many).

    Example:
        >>> SmallCNN(1, 10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 16, 64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of images ``(N, C, H, W)``, ``H, W >= 8``."""
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.adaptive_avg_pool2d(h, 4).flatten(1)
        return self.fc(F.relu(self.fc1(h)))


@with_config(ModelConfig(None, (1, 8, 8), tuple(str(d) for d in range(10))))
def small_cnn_digits() -> SmallCNN:
    """Factory for the demo's digits classifier (``odin_monitor.models:small_cnn_digits``).

    It takes raw pixels in [0, 1] (no normalisation): 8x8 grey digits, classes 0-9.
    """
    return SmallCNN(1, 10)
