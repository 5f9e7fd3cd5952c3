"""Checks that turn user images into a trusted float tensor ``(N, C, H, W)``.

Every public entry point that takes images goes through :func:`as_image_tensor`,
so a bad batch fails loudly with the index of the first offending image instead
of producing a silently wrong score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from odin_monitor.errors import InputValidationError
from odin_monitor.hyper import check_tpr_target

__all__ = ["as_image_tensor", "check_tpr_target", "uint8_to_float"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_image_tensor(
    x: Any,
    name: str = "x",
    *,
    channels: int | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Validate a batch of raw pixels and return it as a float32 tensor.

    Args:
        x: Float tensor or array ``(N, C, H, W)`` of raw pixels in [0, 1]
            (before normalisation).
        name: How the argument is called in error messages.
        channels: If given, the required ``C``.
        image_shape: If given, the required ``(C, H, W)``.

    Returns:
        A float32 tensor on the same device as ``x`` (CPU for arrays). It shares
        memory with ``x`` where no conversion was needed; it is never modified.

    Raises:
        InputValidationError: Wrong type, dtype, rank, channel count or shape; an
            empty batch; NaN or inf; values outside [0, 1].

    Example:
        >>> as_image_tensor(np.zeros((2, 3, 4, 4), dtype=np.float32)).shape
        torch.Size([2, 3, 4, 4])
    """
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise InputValidationError(
                f"Expected `{name}` to hold floats in [0, 1], but got an array of dtype {x.dtype}. "
                "Convert uint8 images with odin_monitor.data.to_float_nchw (divides by 255)."
            )
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if x.dtype not in _FLOAT_DTYPES:
            raise InputValidationError(
                f"Expected `{name}` to be a float tensor with pixels in [0, 1], but got dtype "
                f"{x.dtype}. Convert uint8 images with `x.float() / 255`."
            )
        tensor = x.detach()
    else:
        raise InputValidationError(
            f"Expected `{name}` to be a torch.Tensor or numpy.ndarray of shape (N, C, H, W), "
            f"but got {type(x).__name__}."
        )
    if tensor.ndim != 4:
        raise InputValidationError(
            f"Expected `{name}` to have shape (N, C, H, W), but got {tuple(tensor.shape)} "
            f"(rank {tensor.ndim}). Add a batch axis with x[None] for a single image; "
            "channels-last (N, H, W, C) arrays go through odin_monitor.data.to_float_nchw."
        )
    if tensor.shape[0] == 0:
        raise InputValidationError(
            f"Expected `{name}` to hold at least one image, but it is empty."
        )
    if channels is not None and tensor.shape[1] != channels:
        raise InputValidationError(
            f"Expected `{name}` to have {channels} channels, but got shape {tuple(tensor.shape)}."
        )
    if image_shape is not None and tuple(tensor.shape[1:]) != tuple(image_shape):
        raise InputValidationError(
            f"Expected `{name}` images of shape {tuple(image_shape)} (C, H, W), but got "
            f"{tuple(tensor.shape[1:])}."
        )
    tensor = tensor.float()
    finite = torch.isfinite(tensor).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise InputValidationError(
            f"Expected finite pixels in `{name}`, but image {bad} holds NaN or inf."
        )
    flat = tensor.flatten(1)
    in_range = ((flat >= 0) & (flat <= 1)).all(dim=1)
    if not bool(in_range.all()):
        bad = int((~in_range).nonzero()[0, 0])
        lo, hi = float(flat[bad].min()), float(flat[bad].max())
        raise InputValidationError(
            f"Expected raw pixels in [0, 1] in `{name}` (before normalisation), but image {bad} "
            f"spans [{lo:.4g}, {hi:.4g}]. Pass unnormalised images; the detector normalises."
        )
    return tensor


def uint8_to_float(x: Any, image_shape: tuple[int, ...] | None = None, name: str = "x") -> Any:
    """8-bit images as float32 ``(N, C, H, W)`` in [0, 1]; anything else unchanged.

    uint8 arrays and tensors are accepted as ``(N, C, H, W)`` or, as images are
    usually held, ``(N, H, W, C)``; with ``image_shape`` = ``(C, H, W)`` the layout is
    read from the shape, without it a last axis of 1 or 3 means channels-last. Values
    are divided by 255 in float32, as :func:`odin_monitor.data.to_float_nchw` does.

    Raises:
        InputValidationError: A uint8 batch that fits neither layout.

    Example:
        >>> uint8_to_float(np.full((2, 4, 5, 3), 255, np.uint8), (3, 4, 5)).shape
        torch.Size([2, 3, 4, 5])
    """
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        t = x.detach()
    else:
        return x
    if t.ndim != 4:
        raise InputValidationError(
            f"Expected uint8 `{name}` of shape (N, H, W, C) or (N, C, H, W), but got "
            f"{tuple(t.shape)}."
        )
    dims = tuple(int(d) for d in t.shape[1:])
    if image_shape is not None:
        c, h, w = (int(v) for v in image_shape)
        if dims == (c, h, w):
            nchw = t
        elif dims == (h, w, c):
            nchw = t.permute(0, 3, 1, 2)
        else:
            raise InputValidationError(
                f"Expected uint8 `{name}` images of shape (N, {c}, {h}, {w}) or (N, {h}, {w}, "
                f"{c}), but got {tuple(t.shape)}."
            )
    else:
        nchw = t.permute(0, 3, 1, 2) if dims[2] in (1, 3) and dims[0] not in (1, 3) else t
    return nchw.contiguous().to(torch.float32) / 255.0
