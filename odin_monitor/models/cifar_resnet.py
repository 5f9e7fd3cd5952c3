"""CIFAR-10 ResNet-20/32/44/56 (He et al. 2016, section 4.2), "option A" shortcuts.

The layout and parameter names match the widely used CIFAR ResNet checkpoints
(``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv{1,2}``, ``layer{1,2,3}.{i}.bn{1,2}``,
``linear``), so a plain state_dict loads with ``strict=True``. Those checkpoints
expect RGB in [0, 1] normalised with the ImageNet statistics
(:data:`CIFAR_RESNET_NORMALIZATION`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odin_monitor.errors import InputValidationError
from odin_monitor.models.config import ModelConfig, with_config
from odin_monitor.normalization import IMAGENET_NORMALIZATION

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_RESNET_CONFIG",
    "CIFAR_RESNET_NORMALIZATION",
    "CifarResNet",
    "cifar_resnet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The checkpoints were trained on ImageNet-normalised CIFAR-10 (see the data's README).
CIFAR_RESNET_NORMALIZATION = IMAGENET_NORMALIZATION
#: What the CIFAR ResNet factories carry (see :mod:`odin_monitor.models.config`).
CIFAR_RESNET_CONFIG = ModelConfig(CIFAR_RESNET_NORMALIZATION, (3, 32, 32), CIFAR10_CLASSES)


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the channels."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            _ShortcutA((cout - cin) // 2) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth ``6n + 2`` for 32x32 inputs; expects normalised input.

    Args:
        depth: 20, 32, 44, 56, ... (``6n + 2``).
        num_classes: Output logits.

    Example:
        >>> CifarResNet(20)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InputValidationError(f"Expected depth = 6n + 2 (20, 32, 44, 56), got {depth}.")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.linear = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
        blocks = [_BasicBlock(cin, cout, stride)]
        blocks += [_BasicBlock(cout, cout, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of normalised images ``(N, 3, H, W)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> CifarResNet:
    """A randomly initialised :class:`CifarResNet` (load weights with ``weights_only=True``)."""
    return CifarResNet(depth, num_classes)


@with_config(CIFAR_RESNET_CONFIG)
def resnet20() -> CifarResNet:
    """ResNet-20 for CIFAR-10 (factory for ``odin_monitor.models:resnet20``)."""
    return CifarResNet(20)


@with_config(CIFAR_RESNET_CONFIG)
def resnet32() -> CifarResNet:
    """ResNet-32 for CIFAR-10."""
    return CifarResNet(32)


@with_config(CIFAR_RESNET_CONFIG)
def resnet44() -> CifarResNet:
    """ResNet-44 for CIFAR-10."""
    return CifarResNet(44)


@with_config(CIFAR_RESNET_CONFIG)
def resnet56() -> CifarResNet:
    """ResNet-56 for CIFAR-10."""
    return CifarResNet(56)
