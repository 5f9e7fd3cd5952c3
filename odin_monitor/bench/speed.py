"""Speed benchmark: ODIN scoring against a plain forward, the paper's loop and pytorch-ood.

Same model, same inputs, one process, methods **interleaved** round by round (so
background load hits them alike), after one warm-up call each; the figure of a
method is the median of its rounds (``time.perf_counter``, with a device
synchronisation around each call on CUDA). Ratios are per image:
``(time per image of a method) / (time per image of a plain forward)``.

Methods, per (ResNet depth, batch size, precision):

* ``forward``: ``model(normalize(x))`` under ``torch.inference_mode()`` (the unit);
* ``odin (ours)``: :func:`odin_monitor.odin_scores` (forward with the input
  attached, input-only backward, no-grad forward);
* ``forward (channels_last input)``: the same plain forward on a channels_last copy
  of the batch. ``odin_scores`` feeds CPU batches channels_last (oneDNN runs faster
  on it), so this is the fair floor for ours on CPU: ratios to both are reported;
* ``pytorch-ood ODIN``: :mod:`odin_monitor.bench.peers` (fp32 only; skipped with a
  note when pytorch-ood is not installed);
* ``per-image loop (paper's code)``: :mod:`odin_monitor.bench.per_image`, batch
  size 1 with parameter gradients (fp32, on ``n_per_image`` images).

Peak memory: on CPU each method runs once in a fresh subprocess and reports the rise
of its peak RSS over the RSS after loading the model and data (the kernel's peak mark
``VmHWM`` is reset through ``/proc/self/clear_refs`` first; ``ru_maxrss`` elsewhere); on
CUDA ``torch.cuda.max_memory_allocated`` over the allocation before the call.

Calibration: :func:`odin_monitor.scoring.grid_scores` (shared work) vs a naive loop
calling :func:`odin_monitor.odin_scores` once per ``(T, ε)`` pair, on the same small
ID and OOD sets; both grids go through :class:`odin_monitor.grid.CalibrationGrid`,
and the chosen pairs must agree.

Run ``python -m odin_monitor.bench.speed --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from odin_monitor.bench.common import (
    DEPTHS,
    Log,
    Stopwatch,
    command_line,
    data_file,
    load_resnet,
    machine_info,
    markdown_table,
    resolve_data_dir,
)
from odin_monitor.bench.peers import pytorch_ood_odin, pytorch_ood_version
from odin_monitor.bench.per_image import per_image_odin
from odin_monitor.errors import DataLoadError, InputValidationError
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.normalization import Normalization
from odin_monitor.scoring import (
    grid_scores,
    model_logits,
    odin_scores,
)

__all__ = [
    "FORWARD",
    "FORWARD_CL",
    "OURS",
    "PEER",
    "PER_IMAGE",
    "CalibrationTiming",
    "SpeedResult",
    "SpeedRow",
    "TargetCheck",
    "format_markdown",
    "run_speed",
]

FORWARD = "forward (inference_mode)"
OURS = "odin (ours)"
FORWARD_CL = "forward (channels_last input)"
PEER = "pytorch-ood ODIN"
PER_IMAGE = "per-image loop (paper's code)"
TEMPERATURE, EPSILON = 1000.0, 0.0014
PRECISIONS = ("fp32", "amp")


@dataclass(frozen=True)
class SpeedRow:
    """One method under one configuration.

    Attributes:
        depth: ResNet depth.
        batch_size: Images per chunk (1 for the per-image loop, whatever the row's config).
        precision: ``"fp32"`` or ``"amp"`` (bf16 autocast) for this method.
        method: One of the module's method names.
        n_images: Images per timed call.
        seconds: Median seconds per timed call.
        rounds: Every round's seconds.
        images_per_s: ``n_images / seconds``.
        ratio_to_forward: Time per image over the plain forward's (same config), medians.
        best_seconds: Fastest round (robust to intermittent background load).
        ratio_to_forward_best: The same ratio from the fastest rounds.
        peak_memory_mb: Peak memory rise of one call (MiB), ``None`` if not measured.
        note: Anything the reader must know.
    """

    depth: int
    batch_size: int
    precision: str
    method: str
    n_images: int
    seconds: float
    rounds: tuple[float, ...]
    images_per_s: float
    ratio_to_forward: float
    best_seconds: float = float("nan")
    ratio_to_forward_best: float = float("nan")
    peak_memory_mb: float | None = None
    note: str = ""


@dataclass(frozen=True)
class CalibrationTiming:
    """Shared-work grid vs the naive per-pair loop, on the same data."""

    depth: int
    n_id: int
    n_ood: int
    n_pairs: int
    ours_seconds: float
    naive_seconds: float
    ours_choice: tuple[float, float]
    naive_choice: tuple[float, float]
    max_abs_score_diff: float

    @property
    def ratio(self) -> float:
        """Our time over the naive loop's."""
        return self.ours_seconds / self.naive_seconds

    @property
    def same_choice(self) -> bool:
        """Whether both grids choose the same ``(T, ε)``."""
        return self.ours_choice == self.naive_choice


@dataclass(frozen=True)
class TargetCheck:
    """One target of the issue: measured value, bound, met or not."""

    name: str
    value: float
    bound: float
    higher_is_better: bool
    value_best: float | None = None

    @property
    def met(self) -> bool:
        """Whether the value is on the right side of the bound."""
        return self.value >= self.bound if self.higher_is_better else self.value <= self.bound


@dataclass(frozen=True)
class SpeedResult:
    """What :func:`run_speed` returns."""

    rows: tuple[SpeedRow, ...]
    calibration: CalibrationTiming | None
    targets: tuple[TargetCheck, ...]
    machine: dict[str, str]
    command: str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- methods


def _sync(dev: torch.device) -> None:
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
    model: nn.Module, norm: Normalization, bs: int, dev: torch.device, amp: bool
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
        ).odin_score

    return run


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


_FACTORIES = {
    FORWARD: _forward,
    OURS: _ours,
    FORWARD_CL: _forward_cl,
    PEER: _peer,
    PER_IMAGE: _per_image,
}


# --------------------------------------------------------------------------- timing


def _time_interleaved(
    calls: dict[str, tuple[Callable[[torch.Tensor], object], torch.Tensor]],
    repeats: int,
    dev: torch.device,
) -> dict[str, list[float]]:
    for fn, x in calls.values():  # warm-up: allocator, oneDNN primitives, cuDNN autotune
        fn(x)
    _sync(dev)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, x) in calls.items():
            _sync(dev)
            t0 = time.perf_counter()
            fn(x)
            _sync(dev)
            times[name].append(time.perf_counter() - t0)
    return times


def _cuda_peak_mb(
    fn: Callable[[torch.Tensor], object], x: torch.Tensor, dev: torch.device
) -> float:
    _sync(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    fn(x)
    _sync(dev)
    return (torch.cuda.max_memory_allocated(dev) - base) / 2**20


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_mb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _cpu_peak_mb_subprocess(spec: dict[str, Any]) -> float | None:
    """Run one method once in a fresh interpreter; its peak RSS rise in MiB."""
    cmd = [sys.executable, "-m", "odin_monitor.bench.speed", "--memory-worker", json.dumps(spec)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    try:
        return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _memory_worker(spec: dict[str, Any]) -> None:
    torch.set_num_threads(int(spec["threads"]))
    dev = torch.device("cpu")
    data_dir = None if spec["data_dir"] is None else Path(spec["data_dir"])
    model = load_resnet(int(spec["depth"]), data_dir, dev)
    x = _inputs(data_dir, int(spec["n_images"]), int(spec["seed"]))
    fn = _FACTORIES[spec["method"]](
        model, CIFAR_RESNET_NORMALIZATION, int(spec["batch_size"]), dev, bool(spec["amp"])
    )
    import gc

    gc.collect()
    if _reset_peak_rss() and (base := _proc_status_mb("VmRSS")) is not None:
        fn(x)
        peak = _proc_status_mb("VmHWM")
        print(json.dumps({"peak_mb": None if peak is None else peak - base}))
        return
    base = _maxrss_mb()  # fallback: only rises above the peak of loading show
    fn(x)
    print(json.dumps({"peak_mb": _maxrss_mb() - base}))


# --------------------------------------------------------------------------- data


def _inputs(data_dir: Path | None, n: int, seed: int) -> torch.Tensor:
    """The first ``n`` images of ``cifar10_test.npz`` (JPEG set: fine for timing), or noise."""
    if data_dir is None:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, 32, 32, generator=g)
    from odin_monitor.data import load_images

    x = load_images(data_file(data_dir, "cifar10_test.npz"), limit=n)
    if x.shape[0] < n:
        raise InputValidationError(f"Expected at least {n} images in cifar10_test.npz.")
    return torch.from_numpy(x)


def _ood_inputs(data_dir: Path | None, n: int, seed: int) -> torch.Tensor:
    if data_dir is not None:
        from odin_monitor.data import load_images

        with contextlib.suppress(DataLoadError):
            return torch.from_numpy(
                load_images(data_file(data_dir, "ood_tinyimagenet_crop.npz"), limit=n)
            )
    from odin_monitor.synthetic import uniform_noise

    return torch.from_numpy(uniform_noise(n, (3, 32, 32), seed=seed + 1))


# --------------------------------------------------------------------------- calibration


def time_calibration(
    model: nn.Module,
    x_id: torch.Tensor,
    x_ood: torch.Tensor,
    *,
    depth: int,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    normalization: Normalization | None = CIFAR_RESNET_NORMALIZATION,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    chunk: int = 32,
) -> CalibrationTiming:
    """Time the shared-work grid against the naive loop over all pairs; compare choices.

    Both runs score the same ID and OOD images, ``chunk`` images at a time, the two
    methods alternating; each score cube becomes a
    :class:`~odin_monitor.grid.CalibrationGrid`, whose ``best`` is the pair chosen.
    """
    dev = torch.device(device)
    temps, eps = [float(t) for t in temperatures], [float(e) for e in epsilons]

    def run_grid(x: torch.Tensor) -> np.ndarray:
        return grid_scores(
            model,
            x,
            temperatures=temps,
            epsilons=eps,
            normalization=normalization,
            batch_size=batch_size,
            device=dev,
        ).numpy()

    def run_naive(x: torch.Tensor) -> np.ndarray:
        out = np.empty((len(temps), len(eps), x.shape[0]))
        for i, t in enumerate(temps):
            for j, e in enumerate(eps):
                out[i, j] = odin_scores(
                    model,
                    x,
                    temperature=t,
                    epsilon=e,
                    normalization=normalization,
                    batch_size=batch_size,
                    device=dev,
                ).odin_score
        return out

    # Alternate the two methods chunk by chunk (order flipped each time), so that
    # background load falls on both alike; scores do not depend on the chunking.
    t_ours = t_naive = 0.0
    ours: list[np.ndarray] = []
    naive: list[np.ndarray] = []
    for k, (x_all, start) in enumerate(
        (x, s) for x in (x_id, x_ood) for s in range(0, x.shape[0], chunk)
    ):
        xc = x_all[start : start + chunk]
        order = [(run_grid, ours), (run_naive, naive)]
        for fn, sink in order if k % 2 == 0 else order[::-1]:
            _sync(dev)
            t0 = time.perf_counter()
            sink.append(fn(xc))
            _sync(dev)
            if fn is run_grid:
                t_ours += time.perf_counter() - t0
            else:
                t_naive += time.perf_counter() - t0
    n_id_chunks = -(-x_id.shape[0] // chunk)
    ours = [np.concatenate(ours[:n_id_chunks], axis=2), np.concatenate(ours[n_id_chunks:], axis=2)]
    naive = [
        np.concatenate(naive[:n_id_chunks], axis=2),
        np.concatenate(naive[n_id_chunks:], axis=2),
    ]
    best_ours = CalibrationGrid.from_scores(ours[0], ours[1], temps, eps).best
    best_naive = CalibrationGrid.from_scores(naive[0], naive[1], temps, eps).best
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, naive, strict=True))
    return CalibrationTiming(
        depth=depth,
        n_id=int(x_id.shape[0]),
        n_ood=int(x_ood.shape[0]),
        n_pairs=len(temps) * len(eps),
        ours_seconds=t_ours,
        naive_seconds=t_naive,
        ours_choice=(best_ours.temperature, best_ours.epsilon),
        naive_choice=(best_naive.temperature, best_naive.epsilon),
        max_abs_score_diff=diff,
    )


# --------------------------------------------------------------------------- run


def run_speed(
    *,
    data_dir: str | Path | None = None,
    synthetic: bool = False,
    depths: Sequence[int] = (20,),
    batch_sizes: Sequence[int] = (256,),
    precisions: Sequence[str] = ("fp32",),
    n_batches: int = 1,
    n_per_image: int = 32,
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    include_peer: bool = True,
    include_per_image: bool = True,
    include_channels_last: bool = True,
    calibration: bool = True,
    calib_n: int = 64,
    calib_temperatures: Sequence[float] = PAPER_TEMPERATURES,
    calib_epsilons: Sequence[float] = PAPER_EPSILONS,
    memory: bool = True,
    seed: int = 0,
    quick: bool = False,
    log: Log | None = None,
) -> SpeedResult:
    """Run the speed benchmark (see the module docstring).

    Args:
        data_dir: Shared data folder (default: ``$ODIN_SHARED_DATA`` or ``../shared/data``);
            inputs are the first images of ``cifar10_test.npz``.
        synthetic: Use random weights and random images instead of the data folder
            (smoke runs; speed does not depend on the weights).
        depths: ResNet depths.
        batch_sizes: Batch sizes.
        precisions: ``"fp32"`` and/or ``"amp"`` (bf16 autocast for forward and ODIN).
        n_batches: Batches per timed call (``n_images = n_batches * batch_size``).
        n_per_image: Images for the per-image loop (it is slow).
        repeats: Timed rounds per method (median reported), after one warm-up.
        device: ``"cpu"``, ``"cuda"``, ...
        threads: ``torch.set_num_threads`` (default: leave torch's choice).
        include_peer: Time pytorch-ood's ODIN if it is importable.
        include_per_image: Time the per-image loop.
        include_channels_last: Also time a plain forward on a channels_last input.
        calibration: Time grid vs naive calibration (first depth and batch size, fp32).
        calib_n: ID and OOD images each for the calibration timing.
        calib_temperatures: Calibration ``T`` grid (default: the paper's).
        calib_epsilons: Calibration ``ε`` grid (default: the paper's).
        memory: Measure peak memory (CPU: one subprocess per method; CUDA: in process).
        seed: Seed of synthetic inputs.
        quick: Smoke mode: ResNet-20, batch 64, 2 repeats, 4 per-image images, a 3×3
            calibration grid on 16+16 images, no subprocess memory measurement.
        log: Called with one line per step (progress); default: silent.

    Returns:
        :class:`SpeedResult`; render it with :func:`format_markdown`.
    """
    if quick:
        depths, batch_sizes, repeats, n_per_image = (20,), (64,), 2, 4
        calib_n, calib_temperatures, calib_epsilons = 16, (1, 10, 1000), (0.0, 0.0014, 0.004)
        memory = memory and device != "cpu"
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise InputValidationError(f"Expected precisions among {PRECISIONS}, but got {bad}.")
    if not depths or not batch_sizes or min(batch_sizes) < 1 or repeats < 1 or n_batches < 1:
        raise InputValidationError(
            "Expected at least one depth and batch size, batch sizes >= 1, repeats >= 1 and "
            "n_batches >= 1."
        )
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputValidationError(
            "Expected a CUDA device, but torch.cuda.is_available() is False."
        )
    sink: Log = log or (lambda _line: None)
    clock = Stopwatch()
    ddir = None if synthetic else resolve_data_dir(data_dir)
    peer_version = pytorch_ood_version() if include_peer else None
    notes = []
    if include_peer and peer_version is None:
        notes.append(
            f"{PEER}: skipped, pytorch-ood is not installed (pip install "
            "'pytorch-ood==0.4.0' --no-deps in the benchmark environment)."
        )
    elif peer_version is not None and peer_version != "0.4.0":
        notes.append(
            f"{PEER}: version {peer_version}; only 0.4.0 is known to implement the paper's "
            "formula (see odin_monitor/bench/peers.py)."
        )
    n_max = max(batch_sizes) * n_batches
    x_all = _inputs(ddir, max(n_max, n_per_image), seed)
    rows: list[SpeedRow] = []
    calib: CalibrationTiming | None = None
    norm = CIFAR_RESNET_NORMALIZATION
    for depth in depths:
        model = load_resnet(depth, ddir, dev)
        per_image_row: tuple[float, list[float]] | None = None
        for bs in batch_sizes:
            for precision in precisions:
                amp = precision == "amp"
                x = x_all[: bs * n_batches]
                methods = [FORWARD, OURS]
                if include_channels_last:
                    methods.insert(1, FORWARD_CL)
                if peer_version is not None and not amp:
                    methods.append(PEER)
                want_loop = include_per_image and per_image_row is None
                if want_loop:
                    methods.append(PER_IMAGE)
                calls = {
                    m: (
                        _FACTORIES[m](model, norm, bs, dev, amp and m not in (PEER, PER_IMAGE)),
                        x_all[:n_per_image] if m == PER_IMAGE else x,
                    )
                    for m in methods
                }
                sink(
                    f"[{clock}] ResNet-{depth} batch {bs} {precision}: timing {', '.join(methods)}"
                )
                times = _time_interleaved(calls, repeats, dev)
                if want_loop:
                    per_image_row = (statistics.median(times[PER_IMAGE]), times[PER_IMAGE])
                fwd_per_image = statistics.median(times[FORWARD]) / x.shape[0]
                fwd_best = min(times[FORWARD]) / x.shape[0]
                for m in [*methods, *([PER_IMAGE] if include_per_image and not want_loop else [])]:
                    if m == PER_IMAGE and per_image_row is not None:
                        sec, rounds, n = per_image_row[0], per_image_row[1], n_per_image
                    else:
                        sec, rounds, n = statistics.median(times[m]), times[m], x.shape[0]
                    peak = None
                    if memory and (m != PER_IMAGE or want_loop):
                        peak = _peak(m, model, norm, bs, dev, amp, calls, depth, ddir, n, seed)
                    rows.append(
                        SpeedRow(
                            depth=depth,
                            batch_size=1 if m == PER_IMAGE else bs,
                            precision="fp32" if m in (PEER, PER_IMAGE) else precision,
                            method=m,
                            n_images=n,
                            seconds=sec,
                            rounds=tuple(rounds),
                            images_per_s=n / sec,
                            ratio_to_forward=(sec / n) / fwd_per_image,
                            best_seconds=min(rounds),
                            ratio_to_forward_best=(min(rounds) / n) / fwd_best,
                            peak_memory_mb=peak,
                            note="timed once per depth, reused"
                            if m == PER_IMAGE and not want_loop
                            else "",
                        )
                    )
                if calibration and calib is None and not amp:
                    sink(
                        f"[{clock}] ResNet-{depth}: calibration, grid vs naive loop "
                        f"({calib_n} ID + {calib_n} OOD)"
                    )
                    calib = time_calibration(
                        model,
                        x_all[:calib_n]
                        if x_all.shape[0] >= calib_n
                        else _inputs(ddir, calib_n, seed),
                        _ood_inputs(ddir, calib_n, seed),
                        depth=depth,
                        temperatures=calib_temperatures,
                        epsilons=calib_epsilons,
                        batch_size=bs,
                        device=dev,
                    )
    result_rows = tuple(rows)
    sink(f"[{clock}] done")
    return SpeedResult(
        rows=result_rows,
        calibration=calib,
        targets=_targets(result_rows, calib, dev),
        machine=machine_info(dev),
        command=command_line(),
        settings={
            "device": str(dev),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "n_batches": n_batches,
            "n_per_image": n_per_image,
            "inputs": "random" if ddir is None else "cifar10_test.npz (first images)",
            "weights": "random init" if ddir is None else "pretrained",
            "temperature": TEMPERATURE,
            "epsilon": EPSILON,
            "pytorch_ood": peer_version,
        },
        notes=tuple(notes),
    )


def _peak(
    method: str,
    model: nn.Module,
    norm: Normalization,
    bs: int,
    dev: torch.device,
    amp: bool,
    calls: dict[str, tuple[Callable[[torch.Tensor], object], torch.Tensor]],
    depth: int,
    ddir: Path | None,
    n: int,
    seed: int,
) -> float | None:
    if dev.type == "cuda":
        fn, x = calls[method]
        return _cuda_peak_mb(fn, x, dev)
    if dev.type != "cpu":
        return None
    spec = {
        "method": method,
        "depth": depth,
        "batch_size": bs,
        "amp": amp and method not in (PEER, PER_IMAGE),
        "n_images": n,
        "data_dir": None if ddir is None else str(ddir),
        "seed": seed,
        "threads": torch.get_num_threads(),
    }
    return _cpu_peak_mb_subprocess(spec)


def _targets(
    rows: Sequence[SpeedRow], calib: CalibrationTiming | None, dev: torch.device
) -> tuple[TargetCheck, ...]:
    """The issue's targets, read on ResNet-20 at batch 256 fp32 (else the first config)."""
    if not rows:
        return ()
    ref = next(
        ((r.depth, r.batch_size) for r in rows if (r.depth, r.batch_size) == (20, 256)),
        (rows[0].depth, rows[0].batch_size),
    )
    sel = {
        r.method: r
        for r in rows
        if r.depth == ref[0] and r.precision == "fp32" and (r.batch_size in (ref[1], 1))
    }
    out = []

    def ratio(m: str) -> TargetCheck:
        r = sel[m]
        name = f"{m} / forward (time per image)"
        return TargetCheck(name, r.ratio_to_forward, 3.3, False, r.ratio_to_forward_best)

    def speedup(m: str, other: str, bound: float) -> TargetCheck:
        a, b = sel[m], sel[other]
        best = (b.best_seconds / b.n_images) / (a.best_seconds / a.n_images)
        name = f"{m} throughput / {other} throughput"
        return TargetCheck(name, a.images_per_s / b.images_per_s, bound, True, best)

    if OURS in sel:
        out.append(ratio(OURS))
        if FORWARD_CL in sel:
            a, b = sel[OURS], sel[FORWARD_CL]
            out.append(
                TargetCheck(
                    f"{OURS} / {FORWARD_CL} (time per image)",
                    (a.seconds / a.n_images) / (b.seconds / b.n_images),
                    3.3,
                    False,
                    (a.best_seconds / a.n_images) / (b.best_seconds / b.n_images),
                )
            )
        if PEER in sel:
            out.append(speedup(OURS, PEER, 1.1))
        if PER_IMAGE in sel:
            out.append(speedup(OURS, PER_IMAGE, 50.0 if dev.type == "cuda" else 8.0))
    if calib is not None:
        out.append(
            TargetCheck("calibration: grid time / naive loop time", calib.ratio, 0.25, False)
        )
    return tuple(out)


# --------------------------------------------------------------------------- report


def _mb(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def format_markdown(result: SpeedResult) -> str:
    """The speed report as markdown: setup, one table per configuration, calibration, targets."""
    m, s = result.machine, result.settings
    lines = [
        f"Command: `{result.command}`",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpu_cores')} cores, torch threads {s.get('threads')}"
        + (f", GPU {m['gpu']} (CUDA {m.get('cuda')})" if "gpu" in m else "")
        + f"; torch {m.get('torch')}; load average (1 min) at the end "
        + f"{m.get('load_average_1m', '?')}"
        + f"; {m.get('date')}.",
        "",
        f"Settings: device `{s.get('device')}`, {s.get('weights')} weights, inputs "
        f"{s.get('inputs')}, T={s.get('temperature'):g}, ε={s.get('epsilon'):g}; median of "
        f"{s.get('repeats')} interleaved rounds after one warm-up; per-image loop on "
        f"{s.get('n_per_image')} images; pytorch-ood {s.get('pytorch_ood') or 'not installed'}.",
        "",
    ]
    groups: list[tuple[tuple[int, int, str], list[SpeedRow]]] = []
    for r in result.rows:  # each configuration's rows start with its forward
        if r.method == FORWARD:
            groups.append(((r.depth, r.batch_size, r.precision), []))
        groups[-1][1].append(r)
    headers = [
        "method",
        "precision",
        "batch",
        "images",
        "median s",
        "images/s",
        "× forward (per image)",
        "best s",
        "× forward (best)",
        "peak memory MiB",
        "note",
    ]
    for (depth, bs, precision), rs in groups:
        lines += [f"#### ResNet-{depth}, batch {bs}, {precision}", ""]
        lines.append(
            markdown_table(
                headers,
                [
                    [
                        r.method,
                        r.precision,
                        r.batch_size,
                        r.n_images,
                        f"{r.seconds:.4f}",
                        f"{r.images_per_s:,.0f}",
                        f"{r.ratio_to_forward:.2f}",
                        f"{r.best_seconds:.4f}",
                        f"{r.ratio_to_forward_best:.2f}",
                        _mb(r.peak_memory_mb),
                        r.note,
                    ]
                    for r in rs
                ],
            )
        )
        lines.append("")
    c = result.calibration
    if c is not None:
        lines += [
            f"#### Calibration, ResNet-{c.depth}: {c.n_pairs}-pair grid on {c.n_id} ID + "
            f"{c.n_ood} OOD images",
            "",
            markdown_table(
                ["method", "seconds", "chosen (T, ε)"],
                [
                    [
                        "grid_scores (one backward per T)",
                        f"{c.ours_seconds:.1f}",
                        f"T={c.ours_choice[0]:g}, ε={c.ours_choice[1]:g}",
                    ],
                    [
                        "naive: odin_scores per pair",
                        f"{c.naive_seconds:.1f}",
                        f"T={c.naive_choice[0]:g}, ε={c.naive_choice[1]:g}",
                    ],
                ],
            ),
            "",
            f"Ratio {c.ratio:.3f}; same choice: **{c.same_choice}**; max |score difference| "
            f"{c.max_abs_score_diff:.2e}.",
            "",
        ]
    if result.targets:
        lines += [
            "#### Targets",
            "",
            "Read on ResNet-20 at batch 256, fp32, where measured (else the first configuration); "
            "the per-image bound is 8× on CPU and 50× on CUDA. 'met' judges the medians; "
            "the fastest rounds are shown for machines with intermittent background load.",
            "",
            markdown_table(
                ["target", "measured (medians)", "from fastest rounds", "bound", "met"],
                [
                    [
                        t.name,
                        f"{t.value:.2f}",
                        "—" if t.value_best is None else f"{t.value_best:.2f}",
                        ("≥ " if t.higher_is_better else "≤ ") + f"{t.bound:g}",
                        "yes" if t.met else "**no**",
                    ]
                    for t in result.targets
                ],
            ),
            "",
        ]
    lines += [f"Note: {n}" for n in result.notes]
    return "\n".join(lines)


def _parser(prog: str = "python -m odin_monitor.bench.speed") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog=(
            "example: odin-monitor bench speed --depths 20 --batch-sizes 256 --n-batches 2 "
            "--repeats 9 --markdown docs/results/speed_cpu.md"
        ),
        description="ODIN speed vs a plain forward, the paper's per-image loop and pytorch-ood.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="shared data folder")
    p.add_argument("--synthetic", action="store_true", help="random weights and images")
    p.add_argument("--depths", type=int, nargs="+", default=[20], choices=DEPTHS)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=PRECISIONS)
    p.add_argument("--n-batches", type=int, default=1)
    p.add_argument("--n-per-image", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--no-per-image", action="store_true")
    p.add_argument("--no-channels-last", action="store_true", help="skip the channels_last forward")
    p.add_argument("--no-calibration", action="store_true")
    p.add_argument("--calib-n", type=int, default=64)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--markdown", type=Path, default=None, help="write the report here")
    p.add_argument("--json", type=Path, default=None, help="write the raw rows here")
    p.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry: run, print (and optionally write) the report.

    Exits 1 when the grid and the naive loop choose different pairs.
    """
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    if args.memory_worker is not None:
        _memory_worker(json.loads(args.memory_worker))
        return 0
    result = run_speed(
        data_dir=args.data_dir,
        synthetic=args.synthetic,
        depths=args.depths,
        batch_sizes=args.batch_sizes,
        precisions=args.precisions,
        n_batches=args.n_batches,
        n_per_image=args.n_per_image,
        repeats=args.repeats,
        device=args.device,
        threads=args.threads,
        include_peer=not args.no_peer,
        include_per_image=not args.no_per_image,
        include_channels_last=not args.no_channels_last,
        calibration=not args.no_calibration,
        calib_n=args.calib_n,
        memory=not args.no_memory,
        seed=args.seed,
        quick=args.quick,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    text = format_markdown(result)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n", encoding="utf-8")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "rows": [asdict(r) for r in result.rows],
            "calibration": None if result.calibration is None else asdict(result.calibration),
            "targets": [asdict(t) | {"met": t.met} for t in result.targets],
            "machine": result.machine,
            "settings": result.settings,
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if result.calibration is not None and not result.calibration.same_choice:
        print("ERROR: the grid and the naive loop chose different pairs.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
