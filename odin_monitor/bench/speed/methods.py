"""The timed methods of the speed benchmark, and the images they run on.

Each factory takes ``(model, normalization, batch_size, device, amp)`` and returns a
callable on a batch of raw pixels; :data:`FACTORIES` maps the method names to them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odin_monitor.bench.common import (
    data_file,
)
from odin_monitor.bench.peers import pytorch_ood_odin
from odin_monitor.bench.per_image import per_image_odin
from odin_monitor.errors import DataLoadError, InputValidationError
from odin_monitor.normalization import Normalization
from odin_monitor.scoring import model_logits, odin_scores

__all__ = [
    "EPSILON",
    "FACTORIES",
    "FORWARD",
    "FORWARD_CL",
    "OURS",
    "OURS_COMPILED",
    "PEER",
    "PER_IMAGE",
    "PRECISIONS",
    "TEMPERATURE",
    "inputs",
    "ood_inputs",
    "sync",
]


FORWARD = "forward (inference_mode)"
OURS = "odin (ours)"
FORWARD_CL = "forward (channels_last input)"
OURS_COMPILED = "odin (ours, compiled)"
PEER = "pytorch-ood ODIN"
PER_IMAGE = "per-image loop (paper's code)"
TEMPERATURE, EPSILON = 1000.0, 0.0014
PRECISIONS = ("fp32", "amp")


def sync(dev: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a timer reads finished work."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _autocast(dev: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)


def _forward(
    model: nn.Module,
    norm: Normalization,
    bs: int,
    dev: torch.device,
    amp: bool,
    layout: torch.memory_format = torch.contiguous_format,
) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor) -> object:
        out = []
        with torch.inference_mode(), _autocast(dev, amp):
            for s in range(0, x.shape[0], bs):
                xb = x[s : s + bs].to(dev).contiguous(memory_format=layout)
                out.append(model_logits(model, xb, norm).cpu())
        return out

    return run


def _ours(
    model: nn.Module,
    norm: Normalization,
    bs: int,
    dev: torch.device,
    amp: bool,
    compile: bool = False,
) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor) -> object:
        return odin_scores(
            model,
            x,
            temperature=TEMPERATURE,
            epsilon=EPSILON,
            normalization=norm,
            batch_size=bs,
            mixed_precision=amp,
            device=dev,
            compile=compile,
        ).odin_score

    return run


def _ours_compiled(
    model: nn.Module, norm: Normalization, bs: int, dev: torch.device, amp: bool
) -> Callable[[torch.Tensor], object]:
    return _ours(model, norm, bs, dev, amp, compile=True)


def _forward_cl(
    model: nn.Module, norm: Normalization, bs: int, dev: torch.device, amp: bool
) -> Callable[[torch.Tensor], object]:
    return _forward(model, norm, bs, dev, amp, layout=torch.channels_last)


def _peer(
    model: nn.Module, norm: Normalization, bs: int, dev: torch.device, amp: bool
) -> Callable[[torch.Tensor], object]:
    return pytorch_ood_odin(
        model,
        temperature=TEMPERATURE,
        epsilon=EPSILON,
        normalization=norm,
        batch_size=bs,
        device=dev,
    )


def _per_image(
    model: nn.Module, norm: Normalization, bs: int, dev: torch.device, amp: bool
) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor) -> object:
        return per_image_odin(
            model, x, temperature=TEMPERATURE, epsilon=EPSILON, normalization=norm, device=dev
        )

    return run


Factory = Callable[
    [nn.Module, Normalization, int, torch.device, bool], Callable[[torch.Tensor], object]
]
FACTORIES: dict[str, Factory] = {
    FORWARD: _forward,
    OURS: _ours,
    OURS_COMPILED: _ours_compiled,
    FORWARD_CL: _forward_cl,
    PEER: _peer,
    PER_IMAGE: _per_image,
}


#: The shared CIFAR-10 test sets: 10,000 JPEG-degraded images (the speed rows: fine for
#: timing) and the first 1,000 lossless ones.
ID_FILES = {"jpeg": "cifar10_test.npz", "lossless": "cifar10_test_lossless.npz"}
#: The calibration timing's OOD images (seeded uniform noise where the file is missing).
OOD_FILE = "ood_tinyimagenet_crop.npz"


def inputs(data_dir: Path | None, n: int, seed: int, id_set: str = "jpeg") -> torch.Tensor:
    """The first ``n`` images of the ``id_set`` CIFAR-10 test file (:data:`ID_FILES`), or noise."""
    if data_dir is None:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, 32, 32, generator=g)
    from odin_monitor.data import load_images

    name = ID_FILES[id_set]
    x = load_images(data_file(data_dir, name), limit=n)
    if x.shape[0] < n:
        raise InputValidationError(f"Expected at least {n} images in {name}, found {x.shape[0]}.")
    return torch.from_numpy(x)


def ood_inputs(data_dir: Path | None, n: int, seed: int) -> torch.Tensor:
    """The first ``n`` Tiny ImageNet crop images, or seeded uniform noise without them."""
    if data_dir is not None:
        from odin_monitor.data import load_images

        with contextlib.suppress(DataLoadError):
            return torch.from_numpy(load_images(data_file(data_dir, OOD_FILE), limit=n))
    from odin_monitor.synthetic import uniform_noise

    return torch.from_numpy(uniform_noise(n, (3, 32, 32), seed=seed + 1))
