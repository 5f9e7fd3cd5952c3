"""Per-channel input normalisation that travels with a detector.

ODIN's ε is defined in pixel units of images in [0, 1]. When the classifier
sees ``(x - mean) / std``, the same step is ``ε / std`` per channel in the
normalised space. Keeping the normalisation explicit (never a silent default)
is what makes ε mean the same thing for every model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from odin_monitor.errors import InputValidationError

__all__ = ["IMAGENET_NORMALIZATION", "Normalization", "channel_statistics", "normalize"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` applied before the classifier.

    Args:
        mean: One value per channel.
        std: One strictly positive value per channel.

    Example:
        >>> norm = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        >>> norm.channels
        3
        >>> Normalization.from_dict(norm.to_dict()) == norm
        True
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean = _as_float_tuple(self.mean, "mean")
        std = _as_float_tuple(self.std, "std")
        if len(mean) != len(std):
            raise InputValidationError(
                f"Expected `mean` and `std` to have one value per channel each, but got "
                f"{len(mean)} means and {len(std)} stds."
            )
        if any(not s > 0 for s in std):
            raise InputValidationError(
                f"Expected every `std` to be > 0, but got {std}. A zero std divides by zero."
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        """Number of channels the normalisation expects."""
        return len(self.mean)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form: ``{"mean": [...], "std": [...]}``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Normalization | None:
        """Inverse of :meth:`to_dict`; ``None`` stays ``None`` (no normalisation)."""
        if data is None:
            return None
        try:
            return cls(mean=tuple(data["mean"]), std=tuple(data["std"]))
        except (KeyError, TypeError) as err:
            raise InputValidationError(
                f"Expected a normalisation mapping with keys 'mean' and 'std', but got {data!r}."
            ) from err


def _as_float_tuple(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise InputValidationError(
            f"Expected `{name}` to be a sequence of numbers, one per channel, but got {values!r}."
        ) from err
    if not out:
        raise InputValidationError(f"Expected `{name}` to have at least one channel, but got ().")
    if any(not math.isfinite(v) for v in out):
        raise InputValidationError(f"Expected finite `{name}` values, but got {out}.")
    return out


def normalize(x: torch.Tensor, normalization: Normalization | None) -> torch.Tensor:
    """Apply ``(x - mean) / std`` per channel to a batch ``(N, C, H, W)``.

    Args:
        x: Pixels in [0, 1], shape ``(N, C, H, W)``.
        normalization: The model's normalisation, or ``None`` when the model takes
            raw pixels.

    Returns:
        The normalised batch, same shape, dtype and device as ``x``. Differentiable.

    Example:
        >>> x = torch.full((1, 2, 1, 1), 0.5)
        >>> normalize(x, Normalization(mean=(0.5, 0.0), std=(1.0, 0.5))).flatten().tolist()
        [0.0, 1.0]
    """
    if normalization is None:
        return x
    mean, std = channel_statistics(x, normalization)
    return (x - mean) / std


def channel_statistics(
    x: torch.Tensor, normalization: Normalization
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std as ``(1, C, 1, 1)`` tensors of ``x``'s dtype and device.

    Raises:
        InputValidationError: ``x`` does not have the normalisation's channel count.

    Example:
        >>> norm = Normalization(mean=(0.5, 0.0), std=(1.0, 0.5))
        >>> mean, std = channel_statistics(torch.zeros(1, 2, 3, 3), norm)
        >>> mean.shape, std.flatten().tolist()
        (torch.Size([1, 2, 1, 1]), [1.0, 0.5])
    """
    if x.shape[1] != normalization.channels:
        raise InputValidationError(
            f"Expected images with {normalization.channels} channels to match the normalisation, "
            f"but got shape {tuple(x.shape)} with {x.shape[1]} channels."
        )
    mean = torch.tensor(normalization.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return mean, std


#: The ImageNet channel statistics, the most common preprocessing of RGB classifiers.
IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
