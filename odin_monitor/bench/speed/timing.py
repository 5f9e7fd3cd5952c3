"""Timing and peak memory: interleaved rounds, CUDA allocator peaks, CPU peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import torch
from torch import nn

from odin_monitor.bench.common import (
    load_resnet,
)
from odin_monitor.bench.speed.methods import FACTORIES, PEER, PER_IMAGE, inputs, sync
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.normalization import Normalization

__all__ = [
    "cpu_peak_mb_subprocess",
    "cuda_peak_mb",
    "memory_worker",
    "peak_memory_mb",
    "time_interleaved",
]


def time_interleaved(
    calls: dict[str, tuple[Callable[[torch.Tensor], object], torch.Tensor]],
    repeats: int,
    dev: torch.device,
) -> dict[str, list[float]]:
    """Seconds of every round of every call, the calls interleaved, after one warm-up each."""
    for fn, x in calls.values():  # warm-up: allocator, oneDNN primitives, cuDNN autotune
        fn(x)
    sync(dev)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, x) in calls.items():
            sync(dev)
            t0 = perf_counter()
            fn(x)
            sync(dev)
            times[name].append(perf_counter() - t0)
    return times


def cuda_peak_mb(fn: Callable[[torch.Tensor], object], x: torch.Tensor, dev: torch.device) -> float:
    """Peak CUDA allocation (MiB) of one call, over what was allocated before it."""
    sync(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    fn(x)
    sync(dev)
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


def cpu_peak_mb_subprocess(spec: dict[str, Any]) -> float | None:
    """Run one method once in a fresh interpreter; its peak RSS rise in MiB."""
    cmd = [sys.executable, "-m", "odin_monitor.bench.speed", "--memory-worker", json.dumps(spec)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    try:
        return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def memory_worker(spec: dict[str, Any]) -> None:
    """In the subprocess: load, run ``spec['method']`` once, print its peak RSS rise as JSON."""
    torch.set_num_threads(int(spec["threads"]))
    dev = torch.device("cpu")
    data_dir = None if spec["data_dir"] is None else Path(spec["data_dir"])
    model = load_resnet(int(spec["depth"]), data_dir, dev)
    x = inputs(data_dir, int(spec["n_images"]), int(spec["seed"]))
    fn = FACTORIES[spec["method"]](
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


def peak_memory_mb(
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
    """Peak memory of one method (CUDA: in process; CPU: a subprocess); ``None`` elsewhere."""
    if dev.type == "cuda":
        fn, x = calls[method]
        return cuda_peak_mb(fn, x, dev)
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
    return cpu_peak_mb_subprocess(spec)
