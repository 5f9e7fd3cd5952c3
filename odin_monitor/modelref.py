"""Build a classifier from an importable ``module:factory`` reference and a weights file.

Weights are read with ``torch.load(weights_only=True)``: a state_dict of tensors
only, so loading never runs code from the file.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from odin_monitor.errors import ModelLoadError

if TYPE_CHECKING:
    from odin_monitor.models.config import ModelConfig

__all__ = ["load_state_dict_file", "model_from_reference", "reference_config", "resolve_factory"]


def resolve_factory(reference: str) -> object:
    """Import ``package.module:attribute`` and return the attribute.

    Example:
        >>> resolve_factory("odin_monitor.models:resnet20").__name__
        'resnet20'
    """
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(
            f"Expected a factory reference 'package.module:function', but got {reference!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelLoadError(f"Cannot import {module_name!r} from {reference!r}: {err}.") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"Module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict with ``weights_only=True``; unwrap ``{"state_dict": ...}``.

    A leading ``module.`` (DataParallel) prefix is removed.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"Expected a weights file at {p}, but there is none.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ...
        raise ModelLoadError(
            f"Refusing to load {p}: it is not a plain tensor state_dict loadable with "
            f"weights_only=True ({type(err).__name__}: {str(err).splitlines()[0]})."
        ) from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"Expected {p} to hold a dict of tensors (a state_dict).")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def model_from_reference(reference: str, weights: str | Path | None = None) -> nn.Module:
    """Call a factory and load weights into the module it returns (strict).

    Args:
        reference: ``package.module:factory``; the factory takes no arguments and
            returns an ``nn.Module``.
        weights: A state_dict file, or ``None`` to keep the factory's weights.

    Returns:
        The module, in eval mode.
    """
    factory = resolve_factory(reference)
    if not callable(factory):
        raise ModelLoadError(f"Expected {reference!r} to be callable, but it is not.")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"Expected {reference!r} to return a torch.nn.Module, got {type(model).__name__}."
        )
    if weights is not None:
        try:
            model.load_state_dict(load_state_dict_file(weights), strict=True)
        except RuntimeError as err:
            raise ModelLoadError(
                f"Weights {weights} do not fit {reference!r}: {str(err).splitlines()[0]}"
            ) from err
    return model.eval()


def reference_config(reference: str) -> ModelConfig | None:
    """The :class:`~odin_monitor.models.config.ModelConfig` a factory reference carries.

    Example:
        >>> reference_config("odin_monitor.models:resnet20").input_shape
        (3, 32, 32)
    """
    from odin_monitor.models.config import factory_config

    return factory_config(resolve_factory(reference))
