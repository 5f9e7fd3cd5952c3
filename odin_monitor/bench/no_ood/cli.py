"""Command line of the no-OOD benchmark (``python -m odin_monitor.bench.no_ood``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from odin_monitor.bench.common import DEPTHS, publish, stderr_log
from odin_monitor.bench.no_ood.report import format_markdown
from odin_monitor.bench.no_ood.run import run_no_ood
from odin_monitor.errors import DataLoadError

__all__ = ["main"]

SIZES = {
    "n_id_val": 500,
    "n_id_test": 500,
    "n_tin_val": 1000,
    "n_tin_test": 1500,
    "n_noise_val": 300,
    "n_noise_test": 500,
    "n_jigsaw": 400,
}


def _parser(prog: str = "python -m odin_monitor.bench.no_ood") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Calibration without OOD data (issue 12): the no-OOD rules (noise, paper default, "
            "mean ID score, jigsaw) against an OOD-tuned detector and MSP on ../shared/data."
        ),
        epilog="example: odin-monitor bench no-ood --cache ~/.cache/odin-no-ood --threads 1 "
        "--markdown no_ood.md",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="shared data folder")
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    p.add_argument("--cache", type=Path, default=None, help="folder of score grids, reused")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    for name, default in SIZES.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--verify-calibrate",
        action="store_true",
        help="also run calibrate(strategy='jigsaw') fresh at the first depth and compare",
    )
    p.add_argument("--markdown", type=Path, default=None, help="write the report here")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry: run, print (and optionally write) the markdown report.

    Returns 0, or 2 with the reason on stderr when the shared data is absent.
    """
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run_no_ood(
            data_dir=args.data_dir,
            depths=args.depths,
            cache_dir=args.cache,
            verify_calibrate=args.verify_calibrate,
            log=stderr_log(),
            batch_size=args.batch_size,
            device=args.device,
            **{k: getattr(args, k) for k in SIZES},
        )
    except DataLoadError as err:
        print(f"skipped: {err}", file=sys.stderr)
        return 2
    publish(format_markdown(result), args.markdown)
    return 0
