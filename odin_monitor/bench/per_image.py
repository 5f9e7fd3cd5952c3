"""ODIN one image at a time, the way the authors' released code runs it (a speed reference).

The released code (facebookresearch/odin, ``calData.py``) loops over a data loader
with batch size 1 and, for each image: a forward with the input requiring a
gradient (the model's parameters require gradients too, so their gradients are
computed and accumulated), the max softmax as a NumPy array, a cross-entropy loss
at temperature ``T`` against the predicted class, ``loss.backward()``, the sign
as ``ge(grad, 0)`` mapped to ±1 and divided by the normalisation's std per
channel, a step ``-ε`` in normalised space, and a second, also grad-enabled,
forward whose temperature-scaled softmax is moved to NumPy.

This module re-implements that loop (it copies no code) so the benchmark compares
like with like; :func:`per_image_odin` returns the same scores as
:func:`odin_monitor.odin_scores` up to float rounding and the ``ge`` vs ``sign``
convention on exact zeros. Parameter gradients are cleared after each image (the
released code let them accumulate; clearing costs next to nothing and keeps memory flat).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from odin_monitor.normalization import Normalization, normalize
from odin_monitor.scoring import model_device

__all__ = ["per_image_odin"]


def _softmax_max(logits: np.ndarray, temperature: float) -> float:
    z = logits.astype(np.float64) / temperature
    z = z - z.max()
    e = np.exp(z)
    return float(e.max() / e.sum())


def per_image_odin(
    model: nn.Module,
    x: torch.Tensor,
    *,
    temperature: float,
    epsilon: float,
    normalization: Normalization | None,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """ODIN scores ``S(x̃; T)`` computed image by image, with parameter gradients on.

    Args:
        model: Classifier taking normalised images; put in eval mode here and
            restored (mode and ``requires_grad`` flags) afterwards.
        x: Raw pixels in [0, 1], shape ``(N, C, H, W)``.
        temperature: ``T > 0``.
        epsilon: ``ε >= 0`` in pixel units.
        normalization: The model's normalisation (its std scales the step), or ``None``.
        device: Where to compute; default the model's device.

    Returns:
        float64 ``(N,)`` scores, higher = more in-distribution.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> per_image_odin(net, torch.rand(2, 3, 2, 2), temperature=1000.0,
        ...                epsilon=0.001, normalization=None).shape
        (2,)
    """
    dev = torch.device(device) if device is not None else model_device(model)
    channels = x.shape[1]
    std = torch.ones(channels) if normalization is None else torch.tensor(normalization.std)
    std = std.to(dev).view(1, -1, 1, 1)
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    scores = np.empty(x.shape[0], dtype=np.float64)
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad():
            for i in range(x.shape[0]):
                inputs = normalize(x[i : i + 1].to(dev), normalization).detach()
                inputs.requires_grad_(True)
                outputs = model(inputs)
                baseline = outputs.detach().cpu().numpy()[0]
                _softmax_max(baseline, 1.0)  # the released code writes the MSP score here
                label = torch.tensor([int(np.argmax(baseline))], device=dev)
                loss = F.cross_entropy(outputs / temperature, label)
                loss.backward()
                grad = inputs.grad
                if grad is None:  # pragma: no cover - backward always reaches the input
                    raise RuntimeError("the input received no gradient")
                gradient = (torch.ge(grad, 0).float() - 0.5) * 2 / std
                perturbed = inputs.detach() - epsilon * gradient
                outputs = model(perturbed)
                scores[i] = _softmax_max(outputs.detach().cpu().numpy()[0], temperature)
                model.zero_grad(set_to_none=True)
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)
    return scores
