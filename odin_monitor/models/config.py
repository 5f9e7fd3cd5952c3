"""The preprocessing a shipped model factory was trained with, carried by the factory.

As timm's pretrained configs do, a factory says how its inputs are prepared, so that
the right normalisation is the default rather than something a user must remember:
the shipped CIFAR ResNets were trained on ImageNet-normalised CIFAR-10 (not on
CIFAR-10's own statistics), and the demo's small CNN takes raw pixels.

Example:
    >>> from odin_monitor.models import resnet20
    >>> cfg = factory_config(resnet20)
    >>> cfg.normalization.mean, cfg.input_shape, cfg.class_names[0]
    ((0.485, 0.456, 0.406), (3, 32, 32), 'airplane')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from odin_monitor.normalization import Normalization

__all__ = ["ModelConfig", "factory_config", "with_config"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "odin_model_config"


@dataclass(frozen=True)
class ModelConfig:
    """How a factory's model expects its images.

    Attributes:
        normalization: Per-channel ``(x - mean) / std`` on [0, 1] pixels, or ``None``
            for a model that takes raw pixels.
        input_shape: ``(C, H, W)`` the model was trained on.
        class_names: Names of the output classes, in logit order (optional).
    """

    normalization: Normalization | None
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None = None


def with_config(config: ModelConfig) -> Callable[[F], F]:
    """Attach ``config`` to a factory function (read back with :func:`factory_config`)."""

    def attach(factory: F) -> F:
        setattr(factory, _ATTRIBUTE, config)
        return factory

    return attach


def factory_config(factory: Any) -> ModelConfig | None:
    """The :class:`ModelConfig` a factory carries, or ``None`` when it carries none."""
    config = getattr(factory, _ATTRIBUTE, None)
    return config if isinstance(config, ModelConfig) else None
