"""Running the speed benchmark: every method per (depth, batch size, precision), the targets.

Same model, same inputs, one process, methods **interleaved** round by round (so
background load hits them alike), after one warm-up call each; the figure of a
method is the median of its rounds. Ratios are per image:
``(time per image of a method) / (time per image of a plain forward)``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from odin_monitor.bench.common import (
    Log,
    Stopwatch,
    command_line,
    load_resnet,
    machine_info,
    resolve_data_dir,
)
from odin_monitor.bench.peers import pytorch_ood_version
from odin_monitor.bench.speed.calibration import time_calibration
from odin_monitor.bench.speed.compiled_check import check_compiled
from odin_monitor.bench.speed.methods import (
    EPSILON,
    FACTORIES,
    FORWARD,
    FORWARD_CL,
    ID_FILES,
    OOD_FILE,
    OURS,
    OURS_COMPILED,
    PEER,
    PER_IMAGE,
    PRECISIONS,
    TEMPERATURE,
    inputs,
    ood_inputs,
)
from odin_monitor.bench.speed.results import CalibrationTiming, SpeedResult, SpeedRow, TargetCheck
from odin_monitor.bench.speed.timing import peak_memory_mb, time_interleaved
from odin_monitor.errors import InputValidationError
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

__all__ = ["run_speed", "targets"]


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
    include_compiled: bool = True,
    calibration: bool = True,
    calib_n: int = 256,
    calib_id: str = "jpeg",
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
        include_compiled: Also time the compiled scorer (:mod:`odin_monitor.compiled`);
            its first call (the compilation) is timed apart and reported, and its scores
            are compared with the eager path's.
        calibration: Time the grid searches (coarse-to-fine, calibrate's default, and
            halving) and the full grid against the naive loop (first depth and batch
            size, fp32).
        calib_n: ID and OOD images each for the calibration timing (halving needs
            256 or more: its subsets hold a quarter, at least 64 images).
        calib_id: The calibration timing's ID images: ``"jpeg"`` (the speed rows' images,
            JPEG-degraded CIFAR-10) or ``"lossless"`` (the lossless CIFAR-10 test images,
            at most 1,000). The searches' costs depend on the data: against Tiny ImageNet
            crop the JPEG set's FPR landscape is flat, so most pairs contend in halving.
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
    if calib_id not in ID_FILES:
        raise InputValidationError(
            f"Expected calib_id among {sorted(ID_FILES)}, but got {calib_id!r}."
        )
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
    x_all = inputs(ddir, max(n_max, n_per_image), seed)
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
                if include_compiled:
                    methods.append(OURS_COMPILED)
                if peer_version is not None and not amp:
                    methods.append(PEER)
                want_loop = include_per_image and per_image_row is None
                if want_loop:
                    methods.append(PER_IMAGE)
                calls = {
                    m: (
                        FACTORIES[m](model, norm, bs, dev, amp and m not in (PEER, PER_IMAGE)),
                        x_all[:n_per_image] if m == PER_IMAGE else x,
                    )
                    for m in methods
                }
                sink(
                    f"[{clock}] ResNet-{depth} batch {bs} {precision}: timing {', '.join(methods)}"
                )
                if include_compiled:
                    notes.extend(check_compiled(calls[OURS], calls[OURS_COMPILED], dev, depth, bs))
                times = time_interleaved(calls, repeats, dev)
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
                    # The compiled scorer's memory is not measured: a subprocess per
                    # measurement would compile again (minutes on a CPU).
                    if memory and (m != PER_IMAGE or want_loop) and m != OURS_COMPILED:
                        peak = peak_memory_mb(
                            m, model, norm, bs, dev, amp, calls, depth, ddir, n, seed
                        )
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
                        f"[{clock}] ResNet-{depth}: calibration, searches and full grid vs "
                        "naive loop "
                        f"({calib_n} ID + {calib_n} OOD)"
                    )
                    calib = time_calibration(
                        model,
                        x_all[:calib_n]
                        if x_all.shape[0] >= calib_n and calib_id == "jpeg"
                        else inputs(ddir, calib_n, seed, calib_id),
                        ood_inputs(ddir, calib_n, seed),
                        depth=depth,
                        temperatures=calib_temperatures,
                        epsilons=calib_epsilons,
                        batch_size=bs,
                        device=dev,
                        compiled=include_compiled,
                    )
    result_rows = tuple(rows)
    sink(f"[{clock}] done")
    return SpeedResult(
        rows=result_rows,
        calibration=calib,
        targets=targets(result_rows, calib, dev),
        machine=machine_info(dev),
        command=command_line(),
        settings={
            "device": str(dev),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "n_batches": n_batches,
            "n_per_image": n_per_image,
            "inputs": "random" if ddir is None else f"{ID_FILES['jpeg']} (first images)",
            "calibration_inputs": "random"
            if ddir is None
            else f"{ID_FILES[calib_id]} vs {OOD_FILE} (first images)",
            "weights": "random init" if ddir is None else "pretrained",
            "temperature": TEMPERATURE,
            "epsilon": EPSILON,
            "pytorch_ood": peer_version,
        },
        notes=tuple(notes),
    )


def targets(
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

    def speedup(m: str, other: str, bound: float) -> TargetCheck:
        a, b = sel[m], sel[other]
        best = (b.best_seconds / b.n_images) / (a.best_seconds / a.n_images)
        name = f"{m} throughput / {other} throughput"
        return TargetCheck(name, a.images_per_s / b.images_per_s, bound, True, best)

    def ratios(m: str, bound: float) -> list[TargetCheck]:
        a = sel[m]
        checks = [
            TargetCheck(
                f"{m} / forward (time per image)",
                a.ratio_to_forward,
                bound,
                False,
                a.ratio_to_forward_best,
            )
        ]
        if FORWARD_CL in sel:
            b = sel[FORWARD_CL]
            checks.append(
                TargetCheck(
                    f"{m} / {FORWARD_CL} (time per image)",
                    (a.seconds / a.n_images) / (b.seconds / b.n_images),
                    bound,
                    False,
                    (a.best_seconds / a.n_images) / (b.best_seconds / b.n_images),
                )
            )
        return checks

    if OURS_COMPILED in sel:
        out.extend(ratios(OURS_COMPILED, 2.0))
        if PEER in sel:
            out.append(speedup(OURS_COMPILED, PEER, 1.5 if dev.type == "cpu" else 1.2))
    if OURS in sel:
        out.extend(ratios(OURS, 3.3))
        if PEER in sel:
            out.append(speedup(OURS, PEER, 1.1))
        if PER_IMAGE in sel:
            out.append(speedup(OURS, PER_IMAGE, 50.0 if dev.type == "cuda" else 8.0))
    if calib is not None:
        value = calib.search_ratio
        name = (
            f"calibration: {calib.searches[0].search} search time / naive loop time"
            if value is not None and calib.searches
            else "calibration: grid time / naive loop time"
        )
        if value is None:  # not timed: the full grid stands for calibration
            value = calib.ratio
        out.append(TargetCheck(name, value, 0.25, False))
    return tuple(out)
