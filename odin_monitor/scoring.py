"""ODIN scoring as pure tensor functions.

The paper's recipe (Liang, Li & Srikant, ICLR 2018), for a classifier ``f``:

* ``S(x; T) = max_i softmax(f(x) / T)_i``, the temperature-scaled max softmax;
* ``ŷ = argmax f(x)`` on the *unperturbed* logits;
* ``x̃ = x - ε · sign(∇ₓ CE(f(x) / T, ŷ))``: since ``CE = -log S(x; T)``, the step
  raises the score; ε is in pixel units of images in [0, 1], so with a
  normalisation ``(x - μ) / σ`` the step seen by the network is ``ε / σ`` per channel;
* ``score = S(x̃; T)``: higher means more in-distribution.

Score convention, kept everywhere in this library: **higher = more in-distribution**.

Sign of a zero gradient: ``sign(0) = 0``, so a pixel the loss does not depend on
is not moved. (The authors' released code used ``ge(grad, 0)``, which moves such
pixels by ``-ε``; with real images and models exact zeros are rare, and where they
occur the pixel has no first-order effect on the score.)

The scores are computed from logits with ``logsumexp`` in float64 (float32 on
devices without float64). Besides ``S`` we return a monotone, well-spread form for
reports, ``spread_score = T · log(K · S)``: at ``T = 1000`` with ``K = 10`` classes
``S`` crowds into about ``[0.1000, 0.1021]`` and collapses in low precision, while
``T · log(K · S)`` tends to ``max_i f_i - mean_i f_i`` and ranks images identically.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from odin_monitor.errors import InputValidationError
from odin_monitor.hyper import check_epsilon, check_temperature
from odin_monitor.normalization import Normalization, channel_statistics, normalize

__all__ = [
    "GridPass",
    "OdinScores",
    "grid_pass",
    "grid_scores",
    "input_gradient_sign",
    "interpolated_log_scores",
    "log_max_softmax",
    "max_softmax",
    "model_device",
    "model_logits",
    "odin_scores",
    "perturb",
    "scoring_mode",
    "spread_score",
]

ProgressCallback = Callable[[int], None]


def _stat_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def log_max_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log S(x; T)`` computed stably from logits.

    Args:
        logits: Shape ``(N, K)``.
        temperature: ``T > 0``.

    Returns:
        Shape ``(N,)``, in the dtype of ``logits``.

    Example:
        >>> log_max_softmax(torch.tensor([[0.0, 0.0]]), 1.0).exp().item()
        0.5
    """
    z = logits / temperature
    return z.max(dim=1).values - torch.logsumexp(z, dim=1)


def interpolated_log_scores(
    line: dict[float, torch.Tensor], epsilon: float, temperature: float, dtype: torch.dtype
) -> torch.Tensor | None:
    """Estimated ``log S(x + ε s; T)`` from logits computed at other ``ε`` on the same line.

    ODIN perturbs every ``ε`` of one ``T`` along the same direction ``s`` (the gradient
    sign), so ``ε ↦ f(x + ε s)`` is one curve per image; for a network of ReLUs,
    max-pools and affine layers (convolutions, BatchNorm in eval mode, linear) it is
    piecewise linear. The logits at ``ε`` are interpolated linearly between the
    nearest computed ``ε' < ε < ε''``; exact wherever no ReLU (or max) changes state
    between ``ε'`` and ``ε''``.

    Args:
        line: Computed ``ε ->`` logits ``(N, K)`` of one ``T`` (one gradient sign).
        epsilon: The ``ε`` to estimate.
        temperature: ``T``.
        dtype: Precision of the interpolation and the score.

    Returns:
        ``(N,)`` estimated ``log S``, or ``None`` when ``ε`` is not between two computed
        values (never extrapolated).

    Example:
        >>> line = {0.0: torch.tensor([[0.0, 0.0]]), 0.002: torch.tensor([[2.0, 0.0]])}
        >>> interpolated_log_scores(line, 0.001, 1.0, torch.float64).exp().tolist()
        [0.7310585786300049]
    """
    if epsilon in line:
        return log_max_softmax(line[epsilon].to(dtype), temperature)
    below = [e for e in line if e < epsilon]
    above = [e for e in line if e > epsilon]
    if not below or not above:
        return None
    lo, hi = max(below), min(above)
    w = (epsilon - lo) / (hi - lo)
    logits = torch.lerp(line[lo].to(dtype), line[hi].to(dtype), w)
    return log_max_softmax(logits, temperature)


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``S(x; T) = max_i softmax(logits / T)_i``, computed in float64.

    Args:
        logits: Shape ``(N, K)``.
        temperature: ``T > 0``; ``T = 1`` is the MSP baseline.

    Returns:
        Shape ``(N,)``, float64 (float32 on MPS).

    Example:
        >>> round(max_softmax(torch.tensor([[2.0, 0.0]])).item(), 4)
        0.8808
    """
    wide = logits.to(_stat_dtype(logits.device))
    return log_max_softmax(wide, temperature).exp()


def spread_score(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Monotone, well-spread form of the ODIN score: ``T · log(K · S(x; T))``.

    It lies in ``[0, T · log K]``, orders images exactly as ``S`` does for a given
    ``T`` and ``K``, and for large ``T`` tends to ``max_i f_i - mean_i f_i``.

    Args:
        logits: Shape ``(N, K)``.
        temperature: ``T > 0``.

    Returns:
        Shape ``(N,)``, float64 (float32 on MPS).

    Example:
        >>> spread_score(torch.tensor([[1.0, 1.0, 1.0]]), 1000.0).item()
        0.0
    """
    wide = logits.to(_stat_dtype(logits.device))
    k = wide.shape[1]
    return temperature * (log_max_softmax(wide, temperature) + math.log(k))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _set_eval(model: nn.Module) -> None:
    # torch.export's ExportedProgram.module() refuses .eval()/.train(): it was
    # captured in a fixed mode (eval for our archives), so there is nothing to set.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        model.eval()


def _set_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for module, training in modes:
        module.training = training


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def scoring_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put a model in eval mode with frozen parameters, then restore it exactly.

    Inside, every submodule is in eval mode (so a batch scores exactly as its
    images would one by one) and no parameter requires a gradient (gradients flow
    to the input only). On exit, train/eval flags, ``requires_grad`` flags and
    ``.grad`` tensors are put back as they were, even on error. Threads that score
    the same model take turns (a per-model lock), so one thread never saves the
    flags another has just changed (a server answering requests in threads).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> with scoring_mode(net):
        ...     net.training
        False
        >>> net.training, net[0].weight.requires_grad
        (True, True)
    """
    with _model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
        try:
            _set_eval(model)
            for p, _, _ in params:
                p.requires_grad_(False)
            yield model
        finally:
            _set_modes(modes)
            for p, requires_grad, grad in params:
                p.requires_grad_(requires_grad)
                p.grad = grad


def _autocast(
    device: torch.device, mixed_precision: bool
) -> contextlib.AbstractContextManager[None]:
    if not mixed_precision:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type in ("cpu", "cuda") else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_logits(
    model: nn.Module, x: torch.Tensor, normalization: Normalization | None
) -> torch.Tensor:
    """``f(normalize(x))`` as float32, checked to be logits of shape ``(N, K)``, ``K >= 2``."""
    return check_logits(model(normalize(x, normalization)), x).float()


def check_logits(out: Any, x: torch.Tensor) -> torch.Tensor:
    """``out`` if it is logits ``(N, K)``, ``K >= 2``, for the input ``x`` of ``N`` images.

    Raises:
        InputValidationError: Anything else, saying what came.
    """
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputValidationError(
            f"Expected the model to map images (N, C, H, W) to logits (N, K), but for input "
            f"{tuple(x.shape)} it returned {shape}."
        )
    if out.shape[1] < 2:
        raise InputValidationError(
            f"Expected logits for at least 2 classes, but the model returned {out.shape[1]}."
        )
    return out


# Models that failed on a channels_last input (e.g. ``.view`` on a non-contiguous
# activation); they get the default layout from then on.
_NO_CHANNELS_LAST: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _leaf_copy(
    x: torch.Tensor, device: torch.device, layout: torch.memory_format, requires_grad: bool
) -> torch.Tensor:
    xb = x.to(device, dtype=torch.float32)
    return torch.empty_like(xb, memory_format=layout).copy_(xb).requires_grad_(requires_grad)


def _attached_forward(
    model: nn.Module,
    x: torch.Tensor,
    device: torch.device,
    normalization: Normalization | None,
    requires_grad: bool,
    mixed_precision: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The leaf input chunk and its logits, still attached to the graph of the input.

    On CPU a 4-D chunk is laid out channels_last: oneDNN's convolutions (forward and
    input gradient) run faster on it, and the perturbed input inherits the layout.
    The model's weights are not touched. A model that cannot take that layout
    raises on it; it then runs on the default layout, now and for later calls.
    """
    if device.type == "cpu" and x.ndim == 4 and model not in _NO_CHANNELS_LAST:
        xb = _leaf_copy(x, device, torch.channels_last, requires_grad)
        try:
            with _autocast(device, mixed_precision):
                return xb, model_logits(model, xb, normalization)
        except RuntimeError:
            _NO_CHANNELS_LAST.add(model)
    xb = _leaf_copy(x, device, torch.contiguous_format, requires_grad)
    with _autocast(device, mixed_precision):
        return xb, model_logits(model, xb, normalization)


def input_gradient_sign(
    logits: torch.Tensor, x: torch.Tensor, temperature: float, *, retain_graph: bool = False
) -> torch.Tensor:
    """``sign(∇ₓ CE(f(x) / T, ŷ))`` with ``ŷ = argmax f(x)``.

    Args:
        logits: ``f(x)``, shape ``(N, K)``, still attached to the graph of ``x``.
        x: The leaf input (pixels) that requires grad, shape ``(N, C, H, W)``.
        temperature: ``T > 0``.
        retain_graph: Keep the graph for another temperature.

    Returns:
        Tensor of -1, 0 or +1 with the shape of ``x``; 0 where the gradient is exactly 0.
    """
    predicted = logits.detach().argmax(dim=1)
    # reduction="sum": each image's gradient is its own (eval mode), never scaled by 1/N.
    loss = F.cross_entropy(logits.float() / temperature, predicted, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x, retain_graph=retain_graph)
    return torch.sign(grad)


def perturb(x: torch.Tensor, grad_sign: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The ODIN step ``x̃ = x - ε · sign(∇ₓ(-log S))`` in pixel units (no clipping).

    Example:
        >>> sign = torch.tensor([[[[1.0, -1.0]]]])
        >>> perturb(torch.zeros(1, 1, 1, 2), sign, 0.5).flatten().tolist()
        [-0.5, 0.5]
    """
    return x - epsilon * grad_sign


@dataclass(frozen=True)
class OdinScores:
    """Everything one ODIN pass yields, per image. All tensors have shape ``(N,)``.

    Attributes:
        odin_score: The paper's ``S(x̃; T)``; higher = more in-distribution.
        spread_score: ``T · log(K · S(x̃; T))``, monotone in ``odin_score``, for reports.
        msp: ``S(x; 1)``, the unperturbed max softmax (the MSP baseline).
        predicted_class: ``argmax f(x)`` of the unperturbed pass.
    """

    odin_score: torch.Tensor
    spread_score: torch.Tensor
    msp: torch.Tensor
    predicted_class: torch.Tensor


def _chunks(n: int, batch_size: int | None) -> Iterator[slice]:
    step = n if batch_size is None else batch_size
    if step < 1:
        raise InputValidationError(f"Expected `batch_size` >= 1, but got {batch_size}.")
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def odin_scores(
    model: nn.Module,
    x: torch.Tensor,
    *,
    temperature: float,
    epsilon: float,
    normalization: Normalization | None,
    batch_size: int | None = None,
    mixed_precision: bool = False,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
    compile: bool = False,
) -> OdinScores:
    """Score a batch with ODIN; the MSP baseline and predicted class come with it.

    One pass per chunk: a forward with the input attached to the graph, an
    input-only backward (skipped when ``epsilon == 0``), and a forward on the
    perturbed input. Runs in eval mode with gradients enabled even under
    ``torch.no_grad()`` or ``torch.inference_mode()``; the model comes back untouched.

    Args:
        model: Any module mapping ``(N, C, H, W)`` to logits ``(N, K)``.
        x: Raw pixels in [0, 1], shape ``(N, C, H, W)``, float. Not validated here:
            public callers validate with :func:`odin_monitor.validation.as_image_tensor`.
        temperature: ``T > 0``.
        epsilon: ``ε >= 0`` in pixel units.
        normalization: The model's input normalisation, or ``None`` when it takes raw
            pixels (must be said explicitly).
        batch_size: Images per chunk, to cap memory; ``None`` = all at once.
        mixed_precision: Run the model under autocast (bf16 on CPU/CUDA); the
            perturbation and the final softmax stay in float32/float64.
        device: Where to compute; default the model's device. Results come back on CPU.
        progress: Called with the number of images finished after each chunk.
        compile: Score on the compiled copy of :mod:`odin_monitor.compiled` (BatchNorm
            folded, ``torch.compile``); falls back to this eager path, with one
            warning, where compiling is not possible.

    Returns:
        :class:`OdinScores` with CPU tensors of shape ``(N,)``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 4))
        >>> out = odin_scores(net, torch.rand(5, 3, 2, 2), temperature=1000.0,
        ...                   epsilon=0.0014, normalization=None)
        >>> out.odin_score.shape, bool((out.odin_score >= 0.25).all())
        (torch.Size([5]), True)
    """
    temperature, epsilon = check_temperature(temperature), check_epsilon(epsilon)
    dev = torch.device(device) if device is not None else model_device(model)
    step = _eager_step if not compile else _compiled_step
    parts: list[torch.Tensor] = []
    classes: list[torch.Tensor] = []
    with scoring_mode(model), torch.inference_mode(False), torch.enable_grad():
        for sl in _chunks(x.shape[0], batch_size):
            logits, logits0 = step(
                model, x[sl], dev, normalization, temperature, epsilon, mixed_precision
            )
            # Results stay on the device until the end: one transfer, no sync per chunk.
            stats = (
                max_softmax(logits, temperature),
                spread_score(logits, temperature),
                max_softmax(logits0, 1.0),
            )
            parts.append(torch.stack(stats))
            classes.append(logits0.argmax(dim=1))
            if progress is not None:
                progress(sl.stop - sl.start)
    odin, spread, msp = torch.cat(parts, dim=1).cpu()
    return OdinScores(odin, spread, msp, torch.cat(classes).cpu())


def _eager_step(
    model: nn.Module,
    x: torch.Tensor,
    dev: torch.device,
    normalization: Normalization | None,
    temperature: float,
    epsilon: float,
    mixed_precision: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The perturbed logits ``f(x̃)`` and the unperturbed ``f(x)`` of one chunk, detached."""
    xb, logits0 = _attached_forward(model, x, dev, normalization, epsilon > 0, mixed_precision)
    if epsilon == 0:
        return logits0.detach(), logits0.detach()
    sign = input_gradient_sign(logits0, xb, temperature)
    x_tilde = perturb(xb.detach(), sign, epsilon)
    with torch.no_grad(), _autocast(dev, mixed_precision):
        logits = model_logits(model, x_tilde, normalization)
    return logits, logits0.detach()


def _compiled_step(
    model: nn.Module,
    x: torch.Tensor,
    dev: torch.device,
    normalization: Normalization | None,
    temperature: float,
    epsilon: float,
    mixed_precision: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_eager_step` on the compiled step; the eager step where that cannot run."""
    from odin_monitor import compiled

    def eager() -> tuple[torch.Tensor, torch.Tensor]:
        return _eager_step(model, x, dev, normalization, temperature, epsilon, mixed_precision)

    if dev.type not in compiled.DEVICES:
        compiled.warn_unsupported(model, dev)
        return eager()
    entry = compiled.scoring_copy(model, dev)
    shape = tuple(x.shape[1:])
    if entry.failed is not None or entry.image_shape not in (None, shape):
        # Compiled for another image shape (or not at all): eager, no recompilation.
        return eager()
    try:
        with entry.lock:
            logits, logits0 = _run_compiled(
                entry.step, x, dev, normalization, temperature, epsilon, mixed_precision
            )
    except Exception as err:  # decided below: the compiler or the input?
        # The eager step raises the input's own error; if it succeeds, compiling failed.
        try:
            out = eager()
        except Exception:
            if entry.image_shape is None:  # dynamo now skips this step's code: start afresh
                compiled.discard(model, dev, entry)
            raise
        compiled.mark_failed(entry, model, err)
        return out
    entry.image_shape = shape
    return logits, logits0


def _run_compiled(
    step: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    dev: torch.device,
    normalization: Normalization | None,
    temperature: float,
    epsilon: float,
    mixed_precision: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk through :class:`odin_monitor.compiled.OdinStep`, checked as eager checks.

    On CPU the chunk runs in sub-chunks of :func:`odin_monitor.compiled.sub_chunk`
    images (their activations stay in cache); the batch dimension is marked dynamic, so
    every size shares one graph, and a sub-chunk of one image is scored as two copies of
    it (compilers specialise size 1), which changes nothing in eval mode.
    """
    from odin_monitor.compiled import sub_chunk

    xb = x.to(dev, dtype=torch.float32)
    mean, std = (None, None) if normalization is None else channel_statistics(xb, normalization)
    temp = torch.tensor(temperature, dtype=torch.float32, device=dev)
    eps = torch.tensor(epsilon, dtype=torch.float32, device=dev) if epsilon > 0 else None
    amp = torch.bfloat16 if mixed_precision else None
    perturbed: list[torch.Tensor] = []
    plain: list[torch.Tensor] = []
    with torch.no_grad():
        for sl in _chunks(xb.shape[0], sub_chunk(dev, tuple(xb.shape[1:]))):
            part = xb[sl]
            n = part.shape[0]
            part = (part.expand(2, *part.shape[1:]) if n == 1 else part).contiguous()
            torch._dynamo.mark_dynamic(part, 0)
            logits, logits0 = step(part, temp, eps, mean, std, amp)
            perturbed.append(check_logits(logits, part)[:n])
            plain.append(check_logits(logits0, part)[:n])
    return torch.cat(perturbed), torch.cat(plain)


def grid_scores(
    model: nn.Module,
    x: torch.Tensor,
    *,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    normalization: Normalization | None,
    batch_size: int | None = None,
    mixed_precision: bool = False,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """ODIN scores ``S(x̃; T)`` for every pair of a ``T × ε`` grid, sharing work.

    Per chunk: **one** forward with the graph kept, **one** input-only backward per
    ``T`` (every ``ε`` reuses that gradient sign), one no-grad forward per ``(T, ε > 0)``;
    ``ε = 0`` for every ``T`` comes from the single unperturbed forward. The result
    equals calling :func:`odin_scores` once per pair. :func:`grid_pass` is the same
    pass with the MSP, the predicted class and a choice of pairs.

    Args:
        model: Any module mapping ``(N, C, H, W)`` to logits ``(N, K)``.
        x: Raw pixels in [0, 1], shape ``(N, C, H, W)``.
        temperatures: The ``T`` values, each > 0.
        epsilons: The ``ε`` values, each >= 0, pixel units.
        normalization: As in :func:`odin_scores`.
        batch_size: Images per chunk.
        mixed_precision: As in :func:`odin_scores`.
        device: As in :func:`odin_scores`.
        progress: Called with the number of images finished after each chunk.

    Returns:
        float64 CPU tensor of shape ``(len(temperatures), len(epsilons), N)``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> grid_scores(net, torch.rand(6, 1, 2, 2), temperatures=[1, 1000],
        ...             epsilons=[0.0, 0.002], normalization=None).shape
        torch.Size([2, 2, 6])
    """
    return grid_pass(
        model,
        x,
        temperatures=temperatures,
        epsilons=epsilons,
        normalization=normalization,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        device=device,
        progress=progress,
    ).scores


@dataclass(frozen=True)
class GridPass:
    """What one shared-work pass over a ``T × ε`` grid yields (:func:`grid_pass`).

    ``log S`` is kept beside ``S``: the spread score ``T · (log S + log K)`` is then
    bit for bit what :func:`odin_scores` returns.

    Attributes:
        temperatures: The ``T`` values.
        epsilons: The ``ε`` values.
        scores: float64 ``(len(T), len(ε), N)`` ``S(x̃; T)``; NaN for pairs the pass
            did not compute.
        log_scores: ``log S(x̃; T)``, same shape (float32 on MPS), NaN likewise.
        msp: ``(N,)`` unperturbed max softmax at ``T = 1``.
        predicted_class: ``(N,)`` ``argmax f(x)`` of the unperturbed pass.
        n_classes: ``K``.
        estimates: float64 ``(len(T), len(ε), N)`` estimated ``S(x̃; T)`` of the pairs
            the pass did not compute (``grid_pass(..., estimate=True)``), NaN elsewhere
            and where no estimate exists; ``None`` when not asked for.
    """

    temperatures: tuple[float, ...]
    epsilons: tuple[float, ...]
    scores: torch.Tensor
    log_scores: torch.Tensor
    msp: torch.Tensor
    predicted_class: torch.Tensor
    n_classes: int
    estimates: torch.Tensor | None = None

    @property
    def computed(self) -> torch.Tensor:
        """Boolean ``(len(T), len(ε))``: the pairs computed for every image."""
        return ~self.scores.isnan().any(dim=2)

    def pair(self, temperature: float, epsilon: float) -> OdinScores:
        """:class:`OdinScores` of one computed pair, equal to an :func:`odin_scores` pass.

        Raises:
            InputValidationError: The pair is not on the grid or was not computed.
        """
        try:
            i = self.temperatures.index(float(temperature))
            j = self.epsilons.index(float(epsilon))
        except ValueError:
            raise InputValidationError(
                f"Expected a pair of the grid (T in {self.temperatures}, ε in {self.epsilons}), "
                f"but got T={temperature}, ε={epsilon}."
            ) from None
        log_s = self.log_scores[i, j]
        if bool(log_s.isnan().any()):
            raise InputValidationError(
                f"Expected a pair this pass computed, but T={temperature}, ε={epsilon} was "
                "left out (see `computed`)."
            )
        t = self.temperatures[i]
        spread = t * (log_s + math.log(self.n_classes))
        return OdinScores(self.scores[i, j], spread, self.msp, self.predicted_class)


def _perturbed_forward(
    model: nn.Module,
    dev: torch.device,
    normalization: Normalization | None,
    mixed_precision: bool,
    compile: bool,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(x̃)`` without a graph: eager, or on the compiled step (eager where it cannot run)."""

    def eager(x_tilde: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _autocast(dev, mixed_precision):
            return model_logits(model, x_tilde, normalization)

    if not compile:
        return eager

    def compiled_forward(x_tilde: torch.Tensor) -> torch.Tensor:
        # ε = 0 on the compiled step is f(x) of its input: here, of x̃.
        logits, _ = _compiled_step(model, x_tilde, dev, normalization, 1.0, 0.0, mixed_precision)
        return logits

    return compiled_forward


def _pair_mask(pairs: Any, shape: tuple[int, int]) -> torch.Tensor:
    if pairs is None:
        return torch.ones(shape, dtype=torch.bool)
    mask = torch.as_tensor(pairs)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise InputValidationError(
            f"Expected `pairs` to be a boolean mask of shape {shape} (len(T), len(ε)), but got "
            f"{mask.dtype} of shape {tuple(mask.shape)}."
        )
    return mask.cpu()


def grid_pass(
    model: nn.Module,
    x: torch.Tensor,
    *,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    normalization: Normalization | None,
    pairs: Any = None,
    batch_size: int | None = None,
    mixed_precision: bool = False,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
    compile: bool = False,
    estimate: bool = False,
) -> GridPass:
    """The shared-work pass of :func:`grid_scores`, for all pairs or a chosen few.

    Per chunk: one forward with the graph kept (which gives ``ε = 0`` for every
    ``T``, the MSP and the predicted class), one input-only backward per ``T`` that
    has a chosen ``ε > 0``, one no-grad forward per chosen ``(T, ε > 0)``. Pairs not
    chosen are NaN in ``log_scores``; ``ε = 0`` is always computed (it costs nothing).

    Args:
        model: Any module mapping ``(N, C, H, W)`` to logits ``(N, K)``.
        x: Raw pixels in [0, 1], shape ``(N, C, H, W)``.
        temperatures: The ``T`` values, each > 0.
        epsilons: The ``ε`` values, each >= 0, pixel units.
        normalization: As in :func:`odin_scores`.
        pairs: Boolean mask ``(len(T), len(ε))`` of the pairs to compute
            (numpy or torch); ``None`` = all.
        batch_size: Images per chunk.
        mixed_precision: As in :func:`odin_scores`.
        device: As in :func:`odin_scores`.
        progress: Called with the number of images finished after each chunk.
        compile: Run the forwards on perturbed inputs (about 93% of the full
            grid's work) on the compiled step of :mod:`odin_monitor.compiled`; the
            gradient signs stay on the exact eager path. Scores then match the eager
            pass within float32 rounding, not bit for bit.
        estimate: Also estimate the pairs left out, at no extra model cost
            (:func:`interpolated_log_scores`): a left-out ``(T, ε)`` whose ``T`` has a
            computed ``ε' < ε`` and ``ε'' > ε`` gets ``S`` of the logits interpolated
            linearly between ``f(x + ε' s)`` and ``f(x + ε'' s)`` (the same gradient
            sign ``s``, so the same line); ``GridPass.estimates``.

    Returns:
        :class:`GridPass` with CPU tensors.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> gp = grid_pass(net, torch.rand(6, 1, 2, 2), temperatures=[1, 1000],
        ...                epsilons=[0.0, 0.002], normalization=None,
        ...                pairs=torch.tensor([[True, False], [True, True]]))
        >>> gp.computed.tolist(), gp.pair(1000, 0.002).odin_score.shape
        ([[True, False], [True, True]], torch.Size([6]))
    """
    if not temperatures or not epsilons:
        raise InputValidationError("Expected at least one temperature and one epsilon.")
    temps = tuple(float(check_temperature(t)) for t in temperatures)
    eps = tuple(float(check_epsilon(e)) for e in epsilons)
    mask = _pair_mask(pairs, (len(temps), len(eps)))
    mask[:, [j for j, e in enumerate(eps) if e == 0]] = True  # free: the unperturbed forward
    # The temperatures whose gradient sign is needed, and the last one (frees the graph).
    grad_rows = [
        i for i in range(len(temps)) if any(mask[i, j] and eps[j] > 0 for j in range(len(eps)))
    ]
    dev = torch.device(device) if device is not None else model_device(model)
    stat = _stat_dtype(dev)
    log_s = torch.full((len(temps), len(eps), x.shape[0]), math.nan, dtype=stat, device=dev)
    est = torch.full_like(log_s, math.nan) if estimate else None
    msp = torch.empty(x.shape[0], dtype=stat, device=dev)
    classes = torch.empty(x.shape[0], dtype=torch.int64, device=dev)
    n_classes = 0
    forward = _perturbed_forward(model, dev, normalization, mixed_precision, compile)
    with scoring_mode(model), torch.inference_mode(False), torch.enable_grad():
        for sl in _chunks(x.shape[0], batch_size):
            xb, logits0 = _attached_forward(
                model, x[sl], dev, normalization, bool(grad_rows), mixed_precision
            )
            plain = logits0.detach()
            n_classes = int(plain.shape[1])
            wide0 = plain.to(stat)
            msp[sl] = log_max_softmax(wide0, 1.0).exp()
            classes[sl] = plain.argmax(dim=1)
            for i, t in enumerate(temps):
                sign = None
                if i in grad_rows:
                    sign = input_gradient_sign(logits0, xb, t, retain_graph=i != grad_rows[-1])
                row: dict[float, torch.Tensor] = {}  # ε -> logits of this T's line
                for j, e in enumerate(eps):
                    if not mask[i, j]:
                        continue
                    if e == 0 or sign is None:
                        logits = plain
                    else:
                        logits = forward(perturb(xb.detach(), sign, e))
                    if est is not None:  # kept only to interpolate the pairs left out
                        row[e] = logits
                    log_s[i, j, sl] = log_max_softmax(logits.to(stat), t)
                if est is not None:
                    left_out = [(j, e) for j, e in enumerate(eps) if not mask[i, j]]
                    for j, e in left_out:
                        est_row = interpolated_log_scores(row, e, t, stat)
                        if est_row is not None:
                            est[i, j, sl] = est_row
            if progress is not None:
                progress(sl.stop - sl.start)
    # S = exp(log S) on the device, as odin_scores computes it (exp may round differently
    # elsewhere); both move to the CPU once.
    scores = log_s.exp().cpu().double()
    estimates = None if est is None else est.exp().cpu().double()
    return GridPass(temps, eps, scores, log_s.cpu(), msp.cpu(), classes.cpu(), n_classes, estimates)
