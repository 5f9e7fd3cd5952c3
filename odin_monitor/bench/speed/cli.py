"""Command line of the speed benchmark (``python -m odin_monitor.bench.speed``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from odin_monitor.bench.common import (
    DEPTHS,
    publish,
    stderr_log,
)
from odin_monitor.bench.speed.methods import ID_FILES, PRECISIONS
from odin_monitor.bench.speed.report import format_markdown
from odin_monitor.bench.speed.run import run_speed
from odin_monitor.bench.speed.timing import memory_worker

__all__ = ["main"]


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
    p.add_argument(
        "--no-compiled", action="store_true", help="skip the compiled scorer (torch.compile)"
    )
    p.add_argument("--no-calibration", action="store_true")
    p.add_argument(
        "--calib-n", type=int, default=256, help="ID and OOD images each for calibration timing"
    )
    p.add_argument(
        "--calib-id",
        choices=tuple(ID_FILES),
        default="jpeg",
        help="ID images of the calibration timing: the JPEG-degraded CIFAR-10 test set "
        "(default, the speed rows' images) or the lossless one (at most 1,000)",
    )
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--markdown", type=Path, default=None, help="write the report here")
    p.add_argument("--json", type=Path, default=None, help="write the raw rows here")
    p.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry: run, print (and optionally write) the report.

    Exits 1 when the searches, the full grid and the naive loop choose different pairs.
    """
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    if args.memory_worker is not None:
        memory_worker(json.loads(args.memory_worker))
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
        include_compiled=not args.no_compiled,
        calibration=not args.no_calibration,
        calib_n=args.calib_n,
        calib_id=args.calib_id,
        memory=not args.no_memory,
        seed=args.seed,
        quick=args.quick,
        log=stderr_log(),
    )
    payload = {
        "rows": [asdict(r) for r in result.rows],
        "calibration": None if result.calibration is None else asdict(result.calibration),
        "targets": [asdict(t) | {"met": t.met} for t in result.targets],
        "machine": result.machine,
        "settings": result.settings,
    }
    publish(format_markdown(result), args.markdown, args.json, payload)
    if result.calibration is not None and not result.calibration.same_choice:
        print(
            "ERROR: the searches, the full grid and the naive loop chose different pairs.",
            file=sys.stderr,
        )
        return 1
    return 0
