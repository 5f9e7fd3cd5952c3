"""Command line of the quality benchmark (``python -m odin_monitor.bench.quality``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from odin_monitor.bench.common import DEPTHS, publish, stderr_log
from odin_monitor.bench.quality.report import format_markdown
from odin_monitor.bench.quality.run import run_quality
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES

__all__ = ["main"]


def _parser(prog: str = "python -m odin_monitor.bench.quality") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog=(
            "example: odin-monitor bench quality --depths 20 --n-ood-val 200 --n-ood-test 1000 "
            "--plots-dir docs/results --markdown docs/results/quality_resnet20.md"
        ),
        description="MSP vs ODIN on real data: the paper's Tables 2 and 3 for CIFAR-10 ResNets.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="shared data folder")
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    p.add_argument("--temperatures", type=float, nargs="+", default=list(PAPER_TEMPERATURES))
    p.add_argument("--epsilons", type=float, nargs="+", default=None, help="default: paper's 21")
    p.add_argument("--n-id-val", type=int, default=500)
    p.add_argument("--n-id-test", type=int, default=None, help="default: the rest")
    p.add_argument("--n-ood-val", type=int, default=1000)
    p.add_argument("--n-ood-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--plots-dir", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None, help="write the report here")
    p.add_argument("--quick", action="store_true", help="ResNet-20, 4x4 grid, small sets")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry: run, print (and optionally write) the markdown report."""
    args = (_parser(prog) if prog else _parser()).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_quality(
        data_dir=args.data_dir,
        depths=args.depths,
        temperatures=args.temperatures,
        epsilons=PAPER_EPSILONS if args.epsilons is None else args.epsilons,
        n_id_val=args.n_id_val,
        n_id_test=args.n_id_test,
        n_ood_val=args.n_ood_val,
        n_ood_test=args.n_ood_test,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        plots_dir=args.plots_dir,
        quick=args.quick,
        log=stderr_log(),
    )
    rel = args.markdown.parent if args.markdown is not None else None
    publish(format_markdown(result, plots_relative_to=rel), args.markdown)
    return 0
