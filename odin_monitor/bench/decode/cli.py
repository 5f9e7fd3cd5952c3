"""Command line of the decode benchmark (``python -m odin_monitor.bench.decode``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from odin_monitor.bench.common import Stopwatch, publish, stderr_log
from odin_monitor.bench.decode.report import format_markdown
from odin_monitor.bench.decode.run import run_decode

__all__ = ["main"]


def _parser(prog: str = "python -m odin_monitor.bench.decode") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog="example: odin-monitor bench decode --n-images 256 --markdown decode.md",
        description="Decode ms/image of Pillow (odin_monitor.preprocess) vs torchvision.io "
        "(per file, batched JPEG, GPU nvJPEG when CUDA is there) on real CIFAR-10 PNG and JPEG "
        "files, bit-identity to Pillow, beside the ODIN pass on the same batch.",
    )
    p.add_argument("--data-dir", type=Path, help="data folder (default $ODIN_SHARED_DATA, "
                   "else ../shared/data)")  # fmt: skip
    p.add_argument("--n-images", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--formats", nargs="+", choices=["PNG", "JPEG"], default=["PNG", "JPEG"])
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", type=Path, help="write the markdown report here")
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    log = stderr_log(Stopwatch())

    result = run_decode(
        data_dir=args.data_dir,
        n_images=args.n_images,
        file_formats=args.formats,
        jpeg_quality=args.jpeg_quality,
        repeats=args.repeats,
        seed=args.seed,
        log=log,
    )
    publish(format_markdown(result), args.markdown, args.json, result.to_dict())
    return 0
