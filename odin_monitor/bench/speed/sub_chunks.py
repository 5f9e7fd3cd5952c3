"""The compiled scorer's CPU sub-chunk size, A/B in one process.

:func:`odin_monitor.compiled.sub_chunk` splits each chunk into sub-chunks of up to 64
images on CPU. This script times the same compiled step (one graph, compiled once) with
the chunk run whole and in sub-chunks of several sizes, interleaved round by round with a
plain eager forward, and prints each as a ratio to that forward::

    python -m odin_monitor.bench.speed.sub_chunks --depth 20 --repeats 11 --threads 2

Example:
    >>> sizes_label(None), sizes_label(64)
    ('whole chunk', 'sub-chunks of 64')
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence

import torch

import odin_monitor.compiled as compiled_mod
from odin_monitor.bench.common import load_resnet, machine_info, markdown_table, resolve_data_dir
from odin_monitor.bench.speed.methods import FACTORIES, FORWARD, OURS_COMPILED, inputs
from odin_monitor.bench.speed.timing import time_interleaved
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

__all__ = ["main", "sizes_label", "time_sub_chunks"]


def sizes_label(size: int | None) -> str:
    """How a sub-chunk size reads in the table."""
    return "whole chunk" if size is None else f"sub-chunks of {size}"


def _with_sub_chunk(
    run: Callable[[torch.Tensor], object], size: int | None
) -> Callable[[torch.Tensor], object]:
    def timed(x: torch.Tensor) -> object:
        original = compiled_mod.sub_chunk
        compiled_mod.sub_chunk = lambda device, image_shape: size
        try:
            return run(x)
        finally:
            compiled_mod.sub_chunk = original

    return timed


def time_sub_chunks(
    depth: int,
    sizes: Sequence[int | None],
    *,
    batch_size: int = 256,
    n_images: int = 512,
    repeats: int = 11,
) -> dict[str, float]:
    """Median seconds of the plain forward and of the compiled scorer per sub-chunk size."""
    ddir = resolve_data_dir(None)
    dev = torch.device("cpu")
    model = load_resnet(depth, ddir, dev)
    norm = CIFAR_RESNET_NORMALIZATION
    x = inputs(ddir, n_images, 0)
    compiled = FACTORIES[OURS_COMPILED](model, norm, batch_size, dev, False)
    calls = {FORWARD: (FACTORIES[FORWARD](model, norm, batch_size, dev, False), x)}
    for size in sizes:
        calls[sizes_label(size)] = (_with_sub_chunk(compiled, size), x)
    times = time_interleaved(calls, repeats, dev)
    return {name: statistics.median(rounds) for name, rounds in times.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--sizes", default="none,128,64,32", help="'none' = the whole chunk")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [None if s == "none" else int(s) for s in args.sizes.split(",")]
    med = time_sub_chunks(args.depth, sizes, repeats=args.repeats)
    base = med[FORWARD]
    info = machine_info("cpu")
    print(f"ResNet-{args.depth}, batch 256, 512 images, {info.get('cpu', '')}")
    rows = [(name, f"{sec:.4f}", f"{sec / base:.2f}") for name, sec in med.items()]
    print(markdown_table(["method", "median s", "× forward"], rows))


if __name__ == "__main__":
    main()
