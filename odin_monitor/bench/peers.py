"""pytorch-ood's ODIN, wrapped to score like odin-monitor (optional peer for the speed bench).

pytorch-ood is **not** a dependency of odin-monitor: install it only in a
benchmark environment (``pip install 'pytorch-ood==0.4.0' --no-deps``; its runtime
needs are torch, torchvision, numpy, scipy and typing_extensions, all present).

Which versions implement the paper's formula: **0.4.0** does
(``x̂ = x - ε · sign(∇ₓ CE(f(x)/T, ŷ))`` with the sign divided by ``norm_std`` so
``ε`` is in pixel units, and an input-only ``torch.autograd.grad``). Versions up to
0.3.3 use ``F.nll_loss`` on the temperature-scaled *logits* by default (no
log-softmax, so the step follows ``∇ₓ f_ŷ`` and ignores the normaliser of the
softmax) and call ``loss.backward()``, which also fills the parameters' gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from odin_monitor.normalization import Normalization, normalize

__all__ = ["PAPER_EXACT_VERSION", "pytorch_ood_odin", "pytorch_ood_version"]

#: The first pytorch-ood release whose ODIN follows the paper's formula (checked in its source).
PAPER_EXACT_VERSION = "0.4.0"


def pytorch_ood_version() -> str | None:
    """The installed pytorch-ood version, or ``None`` when it is not importable."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        import pytorch_ood.detector
    except ImportError:
        return None
    try:
        return version("pytorch-ood")
    except PackageNotFoundError:  # imported from a folder on sys.path, not installed
        import pytorch_ood

        return str(getattr(pytorch_ood, "__version__", "unknown"))


def pytorch_ood_odin(
    model: nn.Module,
    *,
    temperature: float,
    epsilon: float,
    normalization: Normalization | None,
    batch_size: int,
    device: torch.device | str,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A scorer ``x -> S(x̃; T)`` (CPU float tensor, higher = in-distribution) built on pytorch-ood.

    The model sees normalised images, as pytorch-ood expects; the normalisation is
    done inside the timed call (it is part of the work), and ``norm_std`` makes its
    ``eps`` pixel units, like ours.

    Raises:
        ImportError: pytorch-ood is not installed.
    """
    from pytorch_ood.detector import ODIN

    std = None if normalization is None else list(normalization.std)
    detector = ODIN(model, eps=epsilon, temperature=temperature, norm_std=std)
    dev = torch.device(device)

    def score(x: torch.Tensor) -> torch.Tensor:
        parts = []
        for start in range(0, x.shape[0], batch_size):
            xb = normalize(x[start : start + batch_size].to(dev), normalization)
            parts.append(-detector.predict(xb).cpu())
        return torch.cat(parts)

    return score
