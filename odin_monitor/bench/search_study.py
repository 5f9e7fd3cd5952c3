"""Do the searches choose as the full grid on real data, and what do they finish?

For each ID × OOD pair of sets: the full score cubes (:func:`odin_monitor.scoring.grid_scores`),
the coarse pass with estimates (:func:`odin_monitor.scoring.grid_pass` with
``estimate=True`` on :func:`odin_monitor.search.coarse_columns`), then the choices of
the rules on those cubes (:func:`odin_monitor.search.coarse_to_fine_choice`,
:func:`odin_monitor.search.halving_choice`, seed 0), compared with the full grid's;
prints a markdown table. The cubes are the expensive part (the paper's grid on 1,000 +
1,000 images: minutes per set on 2 CPU cores).

Run: ``python -m odin_monitor.bench.search_study --depth 20 --n 256``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odin_monitor.bench.common import (
    Log,
    command_line,
    data_file,
    load_resnet,
    markdown_table,
    resolve_data_dir,
    stderr_log,
)
from odin_monitor.data import load_images
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.scoring import grid_pass, grid_scores
from odin_monitor.search import coarse_columns, coarse_to_fine_choice, halving_choice

__all__ = ["StudyRow", "main", "study"]

ID_SETS = ("cifar10_test.npz", "cifar10_test_lossless.npz")
OOD_SETS = (
    "ood_tinyimagenet_crop.npz",
    "ood_tinyimagenet_resize.npz",
    "ood_tinyimagenet_resize_odin.npz",
)


@dataclass(frozen=True)
class StudyRow:
    """One ID × OOD pair of sets."""

    id_set: str
    ood_set: str
    full: tuple[float, float]
    full_fpr: float
    coarse_to_fine: tuple[float, float]
    finished: int
    rounds: int
    estimate_error: float
    halving: tuple[float, float]
    contenders: int


def study(
    model: torch.nn.Module,
    sets: dict[str, torch.Tensor],
    id_names: Sequence[str],
    ood_names: Sequence[str],
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    batch_size: int = 256,
    log: Log | None = None,
) -> list[StudyRow]:
    """Cubes per set (computed once each), then every ID × OOD row."""
    kw: dict[str, Any] = {
        "temperatures": temperatures,
        "epsilons": epsilons,
        "normalization": CIFAR_RESNET_NORMALIZATION,
        "batch_size": batch_size,
    }
    coarse = np.broadcast_to(coarse_columns(epsilons), (len(temperatures), len(epsilons)))
    cubes, est = {}, {}
    for name, x in sets.items():
        if log is not None:
            log(f"{name}: full grid and coarse pass on {x.shape[0]} images")
        cubes[name] = grid_scores(model, x, **kw).numpy()
        passed = grid_pass(model, x, pairs=coarse.copy(), estimate=True, **kw).estimates
        assert passed is not None  # asked for
        est[name] = passed.numpy()
    rows = []
    for i in id_names:
        for o in ood_names:
            full = CalibrationGrid.from_scores(cubes[i], cubes[o], temperatures, epsilons).best
            c2f = coarse_to_fine_choice(cubes[i], cubes[o], est[i], est[o], temperatures, epsilons)
            halv = halving_choice(cubes[i], cubes[o], temperatures, epsilons)
            rows.append(
                StudyRow(
                    i,
                    o,
                    (full.temperature, full.epsilon),
                    full.metrics["fpr_at_tpr"],
                    c2f.chosen,
                    int(c2f.finished.sum()),
                    c2f.rounds,
                    c2f.estimate_error,
                    halv.chosen,
                    int(halv.contenders.sum()),
                )
            )
    return rows


def _pair(p: tuple[float, float]) -> str:
    return f"T={p[0]:g}, ε={p[1]:g}"


def format_rows(rows: Sequence[StudyRow], n_pairs: int) -> str:
    """The study as a markdown table."""
    return markdown_table(
        [
            "ID",
            "OOD",
            "full grid",
            "FPR",
            "coarse-to-fine",
            "finished / rounds / error",
            "halving",
            "contenders",
        ],
        [
            [
                r.id_set,
                r.ood_set,
                _pair(r.full),
                f"{100 * r.full_fpr:.1f}%",
                _pair(r.coarse_to_fine) + ("" if r.coarse_to_fine == r.full else " **differs**"),
                f"{r.finished}/{n_pairs} / {r.rounds} / {r.estimate_error:.3f}",
                _pair(r.halving) + ("" if r.halving == r.full else " **differs**"),
                f"{r.contenders}/{n_pairs}",
            ]
            for r in rows
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The study's command line; exits 1 if coarse-to-fine chose differently."""
    p = argparse.ArgumentParser(
        prog="python -m odin_monitor.bench.search_study", description=__doc__.splitlines()[0]
    )
    p.add_argument("--data-dir", type=Path, default=None, help="shared data folder")
    p.add_argument("--depth", type=int, default=20, choices=(20, 32, 44, 56))
    p.add_argument("--n", type=int, default=256, help="images per set (first N)")
    p.add_argument("--ood", nargs="+", default=list(OOD_SETS), choices=OOD_SETS)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ddir = resolve_data_dir(args.data_dir)
    model = load_resnet(args.depth, ddir)
    names = [*ID_SETS, *args.ood]
    sets = {
        k: torch.as_tensor(np.ascontiguousarray(load_images(data_file(ddir, k), limit=args.n)))
        for k in names
    }
    rows = study(model, sets, ID_SETS, args.ood, log=stderr_log())
    n_pairs = len(PAPER_TEMPERATURES) * len(PAPER_EPSILONS)
    print(
        f"Command: `{command_line()}`\n\nResNet-{args.depth}, first {args.n} images per set, "
        f"the paper's {n_pairs} pairs:\n"
    )
    print(format_rows(rows, n_pairs))
    return 0 if all(r.coarse_to_fine == r.full for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
