"""The compiled scorer beside the eager one: its compilation time and its decisions.

Example:
    >>> import torch
    >>> x = torch.rand(40, 1)
    >>> eager = (lambda v: v.flatten().double(), x)
    >>> compiled = (lambda v: v.flatten().double() + 1e-9, x)
    >>> "differ for 0 images" in check_compiled(eager, compiled, torch.device("cpu"), 20, 40)[0]
    True
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

import torch

from odin_monitor.bench.speed.methods import sync

__all__ = ["NEAR", "check_compiled"]

#: Scores this close to δ may fall either side of it on either path.
NEAR = 1e-6

Call = tuple[Callable[[torch.Tensor], object], torch.Tensor]


def check_compiled(
    eager: Call, compiled: Call, dev: torch.device, depth: int, bs: int
) -> list[str]:
    """Time the compiled scorer's first call and compare its scores with the eager path's.

    δ is the threshold keeping 95% of these images (the lower 5% quantile of the eager
    scores); a decision counts as changed only when ``score < δ`` differs.

    Returns:
        One note line for the report.
    """
    fn_e, x = eager
    fn_c, _ = compiled
    sync(dev)
    t0 = perf_counter()
    fast = torch.as_tensor(fn_c(x)).double().cpu()
    sync(dev)
    first = perf_counter() - t0
    exact = torch.as_tensor(fn_e(x)).double().cpu()
    diff = float((fast - exact).abs().max())
    delta = torch.quantile(exact, 0.05, interpolation="lower")
    near = (exact - delta).abs() <= NEAR
    differ = (fast < delta) != (exact < delta)
    return [
        f"ResNet-{depth} batch {bs}: compiled scorer's first call {first:.1f} s (the "
        "compilation, when it is the model's first); max |odin_score(compiled) - "
        f"odin_score(eager)| = {diff:.2e} over {x.shape[0]} images; is_ood at a δ keeping "
        f"95% of them differ for {int(differ.sum())} images ({int((differ & ~near).sum())} "
        f"farther than {NEAR:g} from δ; {int(near.sum())} scores lie within {NEAR:g} of δ)"
    ]
