"""Reference classifiers shipped with odin-monitor (architectures only, no weights)."""

from odin_monitor.models.cifar_resnet import (
    CIFAR10_CLASSES,
    CIFAR_RESNET_CONFIG,
    CIFAR_RESNET_NORMALIZATION,
    CifarResNet,
    cifar_resnet,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
)
from odin_monitor.models.config import ModelConfig, factory_config, with_config
from odin_monitor.models.small_cnn import SmallCNN, small_cnn_digits

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_RESNET_CONFIG",
    "CIFAR_RESNET_NORMALIZATION",
    "CifarResNet",
    "ModelConfig",
    "SmallCNN",
    "cifar_resnet",
    "factory_config",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "small_cnn_digits",
    "with_config",
]
