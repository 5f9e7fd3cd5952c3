"""A compiled ODIN step: BatchNorm folded, the whole step one ``torch.compile`` graph.

An eager ODIN pass costs a forward, an input-gradient backward and a second forward,
about 3× a plain forward. On a **copy** of the model (never the user's module) this
module folds each eval-mode ``BatchNorm`` into the convolution or linear layer before it
(``torch.fx``, in float64), freezes the copy's parameters, and compiles the **whole
step** (normalisation, forward, the input gradient of ``CE(f(x)/T, ŷ)`` through
``torch.func.grad``, the sign step and the forward on ``x̃``) as one inference graph
(inductor with ``freezing``: the weights are constants, so on CPU the forward
convolutions run on pre-packed oneDNN weights with their ReLU and residual adds fused).
The batch dimension is dynamic from the first call, and ``T``, ``ε`` and the
normalisation are tensor inputs, so neither a smaller last chunk, another request size
nor another ``(T, ε)`` triggers a recompilation.

The switch is ``compile`` on :func:`odin_monitor.scoring.odin_scores`,
:class:`odin_monitor.OdinDetector`, the pyfunc's ``model_config`` and the CLI:

* ``False``: the exact eager path.
* ``True``: the compiled step; where compilation is not possible (no C++ compiler for
  inductor on CPU, MPS, a model dynamo cannot trace) it falls back to the eager path with
  one :class:`CompileFallbackWarning` per model, never a failure.
* ``"auto"``: resolved by :func:`resolve_compile`: on for CPU and CUDA, off elsewhere.
  Long-running scorers (serving workers, ``monitor``) use it; one-off library calls
  default to ``False`` because compiling costs seconds to tens of seconds before the
  first image.

The copy is cached per model and device and rebuilt when the user's parameters or buffers
change (an in-place update bumps a tensor's version counter), so scores always follow the
model as it is now. Scores match the eager path within float32 rounding (1e-6 on the
shared CIFAR-10 images; docs/RESULTS.md), not bit for bit: folding and fused kernels
reorder floating-point sums.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from odin_monitor.scoring import _set_eval

__all__ = [
    "DEVICES",
    "WARM_UP_SIZES",
    "CompileFallbackWarning",
    "CompileSetting",
    "OdinStep",
    "ScoringCopy",
    "compiler_available",
    "discard",
    "fold_batchnorm",
    "mark_failed",
    "parse_compile_setting",
    "resolve_compile",
    "scoring_copy",
    "sub_chunk",
    "warn_unsupported",
]

#: The ``compile`` switch: on, off, or on where it is known to work and pay off.
CompileSetting = bool | Literal["auto"]


class CompileFallbackWarning(RuntimeWarning):
    """Compilation was not possible; scoring continues on the exact eager path."""


def compiler_available() -> bool:
    """Whether inductor can build CPU kernels here (a C++ compiler on ``PATH``).

    Example:
        >>> isinstance(compiler_available(), bool)
        True
    """
    return any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))


def resolve_compile(setting: CompileSetting, device: torch.device) -> bool:
    """Turn the ``compile`` switch into a decision for a device.

    ``"auto"`` is on for CUDA, and for CPU where a C++ compiler exists, and off for
    every other device (MPS, XLA, ...), where inductor support is not verified.

    Raises:
        ValueError: ``setting`` is not ``True``, ``False`` or ``"auto"``.

    Example:
        >>> resolve_compile(False, torch.device("cpu"))
        False
        >>> resolve_compile("auto", torch.device("mps"))
        False
    """
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ValueError(f"Expected `compile` to be True, False or 'auto', but got {setting!r}.")
    if device.type == "cuda":
        return True
    return device.type == "cpu" and compiler_available() and sys.platform != "win32"


def parse_compile_setting(value: Any, source: str = "compile") -> CompileSetting:
    """Read the switch from configuration text (an environment variable, JSON, a flag).

    ``None`` and ``""`` mean off; ``true/1/on/yes`` on; ``false/0/off/no`` off; ``auto``.

    Raises:
        ValueError: Anything else, naming ``source`` and what came.

    Example:
        >>> parse_compile_setting("Auto"), parse_compile_setting("1"), parse_compile_setting(None)
        ('auto', True, False)
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("", "0", "false", "off", "no"):
        return False
    if text == "auto":
        return "auto"
    raise ValueError(f"Expected {source} to be one of true, false or auto, but got {value!r}.")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with each BatchNorm folded into its conv/linear.

    Folding uses ``torch.fx`` symbolic tracing; a model that cannot be traced (dynamic
    control flow, a ``torch.export`` graph module) comes back as a plain eval-mode deep
    copy. The user's model is never modified.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> folded = fold_batchnorm(net)
        >>> any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        False
        >>> x = torch.rand(2, 3, 8, 8)
        >>> bool(torch.allclose(folded(x), net(x), atol=1e-5))
        True
    """
    from torch.fx.experimental.optimization import fuse

    clone = copy.deepcopy(model)
    _set_eval(clone)
    dtypes = {p.dtype for p in clone.parameters()} | {b.dtype for b in clone.buffers()}
    try:
        if dtypes <= {torch.float32, torch.int64}:
            # Fold in float64, then round once: the folded weights are the float32
            # nearest to the exact product, not a product of rounded factors.
            folded: nn.Module = fuse(clone.double(), inplace=True).float()
        else:
            folded = fuse(clone, inplace=True)
    except Exception:  # any tracing failure means: do not fold
        folded = copy.deepcopy(model)
        _set_eval(folded)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def _fingerprint(model: nn.Module) -> tuple[tuple[int, int], ...]:
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((id(t), t._version) for t in tensors)


class OdinStep(nn.Module):
    """One ODIN step of a (folded) model as a single graph.

    ``forward(x, temperature, epsilon, mean, std, amp_dtype)`` returns the perturbed
    logits ``f(x̃)`` and the unperturbed ``f(x)``, both float32, exactly as the eager
    step computes them: ``ŷ = argmax f(x)``, the gradient of
    ``CE(f(x) / T, ŷ)`` (sum over the batch) with respect to the pixels,
    ``x̃ = x - ε · sign(∇)``. The gradient comes from ``torch.func.grad``, so the whole
    step traces into one graph and runs under ``torch.no_grad()``. ``epsilon=None``
    skips the gradient: ``f(x)`` twice.

    ``temperature``, ``epsilon``, ``mean`` and ``std`` are tensors (graph inputs, not
    constants), so other values never recompile; ``mean=None`` means raw pixels.

    Example:
        >>> step = OdinStep(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
        >>> x = torch.rand(2, 1, 2, 2)
        >>> with torch.no_grad():
        ...     tilde, plain = step(x, torch.tensor(10.0), torch.tensor(0.01), None, None)
        >>> tilde.shape, bool((tilde.max(1).values >= plain.max(1).values).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def logits(
        self,
        x: torch.Tensor,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        amp_dtype: torch.dtype | None,
    ) -> torch.Tensor:
        """``f((x - mean) / std)`` as float32, under autocast when ``amp_dtype`` is set."""
        z = x if mean is None or std is None else (x - mean) / std
        cast = (
            torch.autocast(device_type=x.device.type, dtype=amp_dtype)
            if amp_dtype is not None
            else contextlib.nullcontext()
        )
        with cast:
            return self.model(z).float()

    def forward(
        self,
        x: torch.Tensor,
        temperature: torch.Tensor,
        epsilon: torch.Tensor | None,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        amp_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(x̃), f(x))`` of one chunk; ``epsilon=None`` gives ``(f(x), f(x))``."""
        if epsilon is None:
            plain = self.logits(x, mean, std, amp_dtype)
            return plain, plain

        def loss(xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.logits(xi, mean, std, amp_dtype)
            predicted = logits.detach().argmax(dim=1)
            return F.cross_entropy(logits / temperature, predicted, reduction="sum"), logits

        grad, plain = torch.func.grad(loss, has_aux=True)(x)
        return self.logits(x - epsilon * torch.sign(grad), mean, std, amp_dtype), plain


@dataclass
class ScoringCopy:
    """The compiled step of one model on one device, and what it has cost.

    Attributes:
        step: What scoring runs: the :class:`OdinStep` over the folded copy, under
            ``torch.compile`` through a function with its own code object (dynamo
            caches, counts recompilations and gives up per code object, so one model
            never uses up or spoils another's); call it under ``torch.no_grad()``.
        device: Where the copy lives.
        compilations: Graphs compiled so far: one per kind of step (with a gradient
            step or without one, ``ε = 0``; per autocast setting) and batch-size range
            (2–15 and 16+ images: PyTorch picks a convolution kernel by batch size);
            a recompilation shows as a higher count.
        image_shape: The ``(C, H, W)`` the step was compiled for; images of another
            shape are scored eagerly instead of compiling again.
        failed: Set once compilation failed; scoring then uses the eager path.
    """

    step: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    device: torch.device
    fingerprint: tuple[tuple[int, int], ...]
    compilations: int = 0
    image_shape: tuple[int, ...] | None = None
    failed: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[str, ScoringCopy]] = weakref.WeakKeyDictionary()
_COPIES_GUARD = threading.Lock()


def _counting_backend(entry: ScoringCopy) -> Callable[..., Any]:
    def backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        import torch._inductor.config as inductor_config
        from torch._inductor.compile_fx import compile_fx

        entry.compilations += 1
        # The step is an inference graph over a private, frozen copy: its weights are
        # constants (pre-packed for oneDNN on CPU, folded into the kernels).
        with inductor_config.patch(freezing=True):
            return compile_fx(gm, example_inputs)

    return backend


def _own_code(step: OdinStep) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A function calling ``step`` whose code object belongs to it alone.

    Dynamo keys its cache, its recompilation limit and its "skip this code" mark (set
    when tracing meets an error, e.g. a wrong input shape) on code objects; every
    :class:`OdinStep` shares ``OdinStep.forward``'s, so without a private copy the
    ninth model of a process, or any model after one bad input, would silently run
    uncompiled.
    """

    def run(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return step(*args)

    return types.FunctionType(
        run.__code__.replace(), run.__globals__, run.__name__, None, run.__closure__
    )


def _build(model: nn.Module, device: torch.device) -> ScoringCopy:
    folded = fold_batchnorm(model).to(device)
    step = OdinStep(folded).eval()
    run = _own_code(step)
    entry = ScoringCopy(step=run, device=device, fingerprint=_fingerprint(model))
    entry.step = torch.compile(run, backend=_counting_backend(entry), dynamic=False)
    return entry


def scoring_copy(model: nn.Module, device: torch.device) -> ScoringCopy:
    """The cached compiled step of ``model`` on ``device``, rebuilt if the model changed.

    Args:
        model: The user's classifier (read, never modified).
        device: Where scoring runs.

    Returns:
        The :class:`ScoringCopy`; check ``failed`` before using ``step``.
    """
    key = str(device)
    with _COPIES_GUARD:
        per_model = _COPIES.setdefault(model, {})
        entry = per_model.get(key)
        if entry is None or entry.fingerprint != _fingerprint(model):
            entry = per_model[key] = _build(model, device)
        return entry


#: On CPU the compiled step runs on sub-chunks of about this many input bytes, within
#: :data:`SUB_CHUNK_IMAGES`, so that activations stay in cache. Measured on ResNet-20
#: and ResNet-56 (CIFAR, 2 cores; ``python -m odin_monitor.bench.speed.sub_chunks``):
#: sub-chunks of 64 images took 0.81× and 0.62× the time of one 256-image call; 128
#: was slower, 32 within 2% of 64.
CPU_SUB_CHUNK_BYTES = 1 << 20
#: Fewest and most images per CPU sub-chunk.
SUB_CHUNK_IMAGES = (8, 64)


#: Batch sizes whose scoring compiles every graph of a step: compilers specialise size 1
#: (scored as two copies), and PyTorch picks a convolution kernel by batch size (below
#: 16 or not on CPU), so there is one graph for 2–15 images and one for 16 or more.
WARM_UP_SIZES = (2, 16)


def sub_chunk(device: torch.device, image_shape: tuple[int, ...]) -> int | None:
    """Images per call of the compiled step: a cache-sized share on CPU, all elsewhere.

    Example:
        >>> cpu = torch.device("cpu")
        >>> sub_chunk(cpu, (3, 32, 32)), sub_chunk(cpu, (3, 224, 224))
        (64, 8)
        >>> sub_chunk(torch.device("cuda"), (3, 32, 32)) is None
        True
    """
    if device.type != "cpu":
        return None
    per_image = 4 * max(1, math.prod(image_shape))
    low, high = SUB_CHUNK_IMAGES
    return max(low, min(high, CPU_SUB_CHUNK_BYTES // per_image))


def discard(model: nn.Module, device: torch.device, entry: ScoringCopy) -> None:
    """Forget ``entry`` (if still cached) so the next call compiles a fresh step.

    Called after an input error met the compiler before any graph was compiled:
    dynamo has then marked the step's code as one to skip.
    """
    with _COPIES_GUARD:
        per_model = _COPIES.get(model, {})
        if per_model.get(str(device)) is entry:
            del per_model[str(device)]


#: Devices where inductor's kernels are verified here (others score eagerly).
DEVICES = ("cpu", "cuda")
_WARNED: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


def warn_unsupported(model: nn.Module, device: torch.device) -> None:
    """Warn once per model and device that compiling is not offered there."""
    with _COPIES_GUARD:
        seen = _WARNED.setdefault(model, set())
        if device.type in seen:
            return
        seen.add(device.type)
    warnings.warn(
        f"The compiled scorer runs on {' and '.join(DEVICES)}, not on {device.type}; "
        "scoring on the exact eager path instead. Pass compile=False to skip the attempt.",
        CompileFallbackWarning,
        stacklevel=4,
    )


def mark_failed(entry: ScoringCopy, model: nn.Module, error: BaseException) -> None:
    """Record a compilation failure and warn once for this model."""
    if entry.failed is None:
        root = error
        # dynamo wraps the compiler's own error (``inner_exception`` or a cause).
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner
        entry.failed = f"{type(root).__name__}: {root}".strip().splitlines()[0][:300]
        warnings.warn(
            f"Could not compile {type(model).__name__} for ODIN scoring on {entry.device} "
            f"({entry.failed}); scoring on the exact eager path instead. Pass compile=False "
            "to skip the attempt.",
            CompileFallbackWarning,
            stacklevel=3,
        )
