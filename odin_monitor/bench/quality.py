"""Quality benchmark: the ODIN paper's Tables 2 and 3 on real data (MSP vs ODIN).

Protocol (Liang, Li & Srikant, ICLR 2018, section 4 and appendix), as run here:

* **In-distribution**: ``cifar10_test_lossless.npz`` (the first 1,000 CIFAR-10 test
  images, lossless), split by a seeded permutation into a validation half and a
  test half (500/500).
* **OOD sources**: Tiny ImageNet crop, Tiny ImageNet resize (Pillow), Tiny ImageNet
  resize (the ODIN authors' own files), and seeded Gaussian and Uniform noise. The
  three Tiny ImageNet files hold the *same* 10,000 source images (row ``i`` is
  ``test_i`` in each), so one seeded split of the row indices is shared by all three:
  no source image is in a validation split of one and a test split of another.
  Each source gives ``n_ood_val`` validation and ``n_ood_test`` test images,
  disjoint.
* **Table 2** (the paper's protocol): for each test source, ``(T, ε)`` is the pair of
  the grid with the lowest FPR at 95% TPR on the ID validation half vs *that
  source's held-out validation split* (disjoint images, as the paper held out 1,000
  images of each OOD set); metrics are then read on the ID test half vs the source's
  test split. MSP is ``T = 1, ε = 0``.
* **Table 3** (transfer): rows = test sources; columns = the validation set the
  pair was chosen on: each source's validation split, Gaussian+Uniform pooled
  (what :func:`odin_monitor.calibrate` does without OOD data), and "no OOD data" =
  the paper's default ``T = 1000, ε = 0.0014``.

The grid is computed with :func:`odin_monitor.scoring.grid_scores` (one backward per
``T``), selection uses :func:`odin_monitor.calibration.select_best`, metrics
:func:`odin_monitor.ood_metrics`: the benchmark measures the library itself.

Run ``python -m odin_monitor.bench.quality --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    pct,
    resolve_data_dir,
)
from odin_monitor.columns import spread_transform
from odin_monitor.data import load_images, to_float_nchw
from odin_monitor.errors import InputValidationError
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES, CalibrationGrid
from odin_monitor.metrics import ood_metrics
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.scoring import grid_scores, model_logits
from odin_monitor.synthetic import gaussian_noise, uniform_noise

__all__ = [
    "ID_FILE",
    "NO_OOD",
    "OOD_FILES",
    "POOLED_SYNTHETIC",
    "QUICK_EPSILONS",
    "QUICK_TEMPERATURES",
    "Choice",
    "DepthQuality",
    "QualityConfig",
    "QualityResult",
    "format_markdown",
    "run_quality",
]

ID_FILE = "cifar10_test_lossless.npz"
#: Real OOD sources: display name -> file in the data folder.
OOD_FILES: dict[str, str] = {
    "TIN crop": "ood_tinyimagenet_crop.npz",
    "TIN resize (Pillow)": "ood_tinyimagenet_resize.npz",
    "TIN resize (ODIN authors')": "ood_tinyimagenet_resize_odin.npz",
}
SYNTHETIC = ("Gaussian", "Uniform")
POOLED_SYNTHETIC = "Gaussian+Uniform"
NO_OOD = "no OOD data (T=1000, ε=0.0014)"
PAPER_DEFAULT = (1000.0, 0.0014)
#: The set whose plots (ROC, histograms, grid heatmap) are drawn: the paper's own files.
PLOT_SOURCE = "TIN resize (ODIN authors')"
QUICK_TEMPERATURES: tuple[float, ...] = (1, 10, 100, 1000)
QUICK_EPSILONS: tuple[float, ...] = (0.0, 0.0007, 0.0014, 0.0028)
IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class QualityConfig:
    """Everything that determines a quality run (all of it is printed with the results).

    Attributes:
        data_dir: The shared data folder.
        depths: ResNet depths to evaluate.
        temperatures: The ``T`` grid.
        epsilons: The ``ε`` grid (pixel units).
        n_id_val: In-distribution validation images (of the 1,000 lossless ones).
        n_id_test: In-distribution test images, disjoint from validation; ``None`` = the rest.
        n_ood_val: Validation images per OOD source.
        n_ood_test: Test images per OOD source.
        seed: Seed of every split and of the synthetic sets.
        batch_size: Images per chunk.
        device: Torch device.
        tpr_target: TPR at which FPR is read (0.95 in the paper).
        plots_dir: Where to write PNG plots; ``None`` = no plots.
    """

    data_dir: Path
    depths: tuple[int, ...] = DEPTHS
    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    epsilons: tuple[float, ...] = PAPER_EPSILONS
    n_id_val: int = 500
    n_id_test: int | None = None
    n_ood_val: int = 1000
    n_ood_test: int = 2000
    seed: int = 0
    batch_size: int = 256
    device: str = "cpu"
    tpr_target: float = 0.95
    plots_dir: Path | None = None


@dataclass(frozen=True)
class Choice:
    """The ``(T, ε)`` chosen on one validation set, with its validation FPR."""

    validation: str
    temperature: float
    epsilon: float
    val_fpr: float | None


@dataclass(frozen=True)
class DepthQuality:
    """Results of one ResNet depth.

    Attributes:
        depth: ResNet depth.
        id_test_accuracy: Top-1 accuracy on the in-distribution test half.
        choices: Validation column -> chosen pair (Table 3 columns; Table 2 uses the
            test source's own column).
        msp: Test source -> MSP metrics (``ood_metrics`` keys).
        odin: Test source -> ODIN metrics at the pair chosen on its own validation split.
        transfer: Test source -> validation column -> ODIN metrics at that column's pair.
        grid_fpr: Validation column -> validation FPR over the grid, ``(len(T), len(ε))``.
        seconds: Wall time of this depth.
        plots: Files written.
    """

    depth: int
    id_test_accuracy: float
    choices: dict[str, Choice]
    msp: dict[str, dict[str, float]]
    odin: dict[str, dict[str, float]]
    transfer: dict[str, dict[str, dict[str, float]]]
    grid_fpr: dict[str, np.ndarray] = field(repr=False)
    seconds: float = 0.0
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class QualityResult:
    """What :func:`run_quality` returns."""

    config: QualityConfig
    depths: tuple[DepthQuality, ...]
    machine: dict[str, str]
    command: str
    n_id_test: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class _Data:
    id_val: torch.Tensor
    id_test: torch.Tensor
    id_test_labels: np.ndarray
    ood_val: dict[str, torch.Tensor]
    ood_test: dict[str, torch.Tensor]


def _check_config(cfg: QualityConfig) -> None:
    if not cfg.depths:
        raise InputValidationError("Expected at least one ResNet depth.")
    bad = [d for d in cfg.depths if d not in DEPTHS]
    if bad:
        raise InputValidationError(f"Expected depths among {DEPTHS}, but got {bad}.")
    if 1.0 not in cfg.temperatures or 0.0 not in cfg.epsilons:
        raise InputValidationError(
            "Expected T = 1 and ε = 0 in the grid: they are the MSP baseline, "
            f"but got T={cfg.temperatures}, ε={cfg.epsilons}."
        )
    for name in ("n_id_val", "n_ood_val", "n_ood_test", "batch_size"):
        if getattr(cfg, name) < 1:
            raise InputValidationError(f"Expected `{name}` >= 1, got {getattr(cfg, name)}.")


def _load(cfg: QualityConfig, log: Log) -> _Data:
    id_path = data_file(cfg.data_dir, ID_FILE)
    x_id = load_images(id_path)
    labels = np.load(id_path)["labels"]
    n_id = x_id.shape[0]
    if not 1 <= cfg.n_id_val < n_id:
        raise InputValidationError(
            f"Expected 1 <= n_id_val < {n_id} (the ID images), but got {cfg.n_id_val}."
        )
    n_test = n_id - cfg.n_id_val if cfg.n_id_test is None else cfg.n_id_test
    if not 1 <= n_test <= n_id - cfg.n_id_val:
        raise InputValidationError(
            f"Expected 1 <= n_id_test <= {n_id - cfg.n_id_val} (ID images left after "
            f"validation), but got {cfg.n_id_test}."
        )
    perm = np.random.default_rng(cfg.seed).permutation(n_id)
    val_idx = np.sort(perm[: cfg.n_id_val])
    test_idx = np.sort(perm[cfg.n_id_val : cfg.n_id_val + n_test])
    ood_val: dict[str, torch.Tensor] = {}
    ood_test: dict[str, torch.Tensor] = {}
    n_need = cfg.n_ood_val + cfg.n_ood_test
    tin_split: tuple[np.ndarray, np.ndarray] | None = None
    for name, fname in OOD_FILES.items():
        path = data_file(cfg.data_dir, fname)
        with np.load(path, allow_pickle=False) as npz:
            raw = npz["images"]  # uint8 (N, 32, 32, 3); converted to float after indexing
        if tin_split is None:
            if n_need > raw.shape[0]:
                raise InputValidationError(
                    f"Expected n_ood_val + n_ood_test <= {raw.shape[0]} (images in {fname}), "
                    f"but got {cfg.n_ood_val} + {cfg.n_ood_test}."
                )
            # One split of the 10,000 Tiny ImageNet source images, shared by all three files.
            p = np.random.default_rng(cfg.seed + 1).permutation(raw.shape[0])
            tin_split = (np.sort(p[: cfg.n_ood_val]), np.sort(p[cfg.n_ood_val : n_need]))
        ood_val[name] = torch.from_numpy(to_float_nchw(raw[tin_split[0]], fname))
        ood_test[name] = torch.from_numpy(to_float_nchw(raw[tin_split[1]], fname))
    for k, (name, make) in enumerate(zip(SYNTHETIC, (gaussian_noise, uniform_noise), strict=True)):
        x = make(n_need, IMAGE_SHAPE, seed=cfg.seed + 100 + k)
        ood_val[name] = torch.from_numpy(x[: cfg.n_ood_val])
        ood_test[name] = torch.from_numpy(x[cfg.n_ood_val :])
    log(
        f"data: ID {n_id} -> val {len(val_idx)} / test {len(test_idx)}; "
        f"OOD per source: val {cfg.n_ood_val} / test {cfg.n_ood_test}"
    )
    return _Data(
        id_val=torch.from_numpy(x_id[val_idx]),
        id_test=torch.from_numpy(x_id[test_idx]),
        id_test_labels=labels[test_idx],
        ood_val=ood_val,
        ood_test=ood_test,
    )


def _score_pairs(
    model: nn.Module,
    x: torch.Tensor,
    pairs: Sequence[tuple[float, float]],
    cfg: QualityConfig,
) -> dict[tuple[float, float], np.ndarray]:
    """ODIN scores at a few pairs, sharing one backward per distinct ``T``."""
    by_t: dict[float, list[float]] = {}
    for t, e in pairs:
        by_t.setdefault(t, [])
        if e not in by_t[t]:
            by_t[t].append(e)
    out: dict[tuple[float, float], np.ndarray] = {}
    for t, eps in by_t.items():
        s = grid_scores(
            model,
            x,
            temperatures=[t],
            epsilons=eps,
            normalization=CIFAR_RESNET_NORMALIZATION,
            batch_size=cfg.batch_size,
            device=cfg.device,
        ).numpy()
        for j, e in enumerate(eps):
            out[(t, e)] = s[0, j]
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, labels: np.ndarray, cfg: QualityConfig) -> float:
    preds = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], cfg.batch_size):
            xb = x[start : start + cfg.batch_size].to(cfg.device)
            preds.append(model_logits(model, xb, CIFAR_RESNET_NORMALIZATION).argmax(1).cpu())
    return float((torch.cat(preds).numpy() == labels).mean())


def _run_depth(depth: int, data: _Data, cfg: QualityConfig, log: Log) -> DepthQuality:
    clock = Stopwatch()
    model = load_resnet(depth, cfg.data_dir, cfg.device)
    temps, eps = tuple(float(t) for t in cfg.temperatures), tuple(float(e) for e in cfg.epsilons)
    common: dict[str, Any] = {
        "temperatures": temps,
        "epsilons": eps,
        "normalization": CIFAR_RESNET_NORMALIZATION,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
    }
    n_pairs = len(temps) * len(eps)
    log(f"[{clock}] ResNet-{depth}: {n_pairs}-pair grid on ID validation ({len(data.id_val)})")
    s_id_val = grid_scores(model, data.id_val, **common).numpy()
    s_ood_val: dict[str, np.ndarray] = {}
    for name, x in data.ood_val.items():
        log(f"[{clock}] ResNet-{depth}: grid on {name} validation ({len(x)})")
        s_ood_val[name] = grid_scores(model, x, **common).numpy()
    s_ood_val[POOLED_SYNTHETIC] = np.concatenate([s_ood_val[n] for n in SYNTHETIC], axis=2)

    choices: dict[str, Choice] = {}
    grid_fpr: dict[str, np.ndarray] = {}
    views: dict[str, CalibrationGrid] = {}
    for name, s_ood in s_ood_val.items():
        view = CalibrationGrid.from_scores(s_id_val, s_ood, temps, eps, cfg.tpr_target)
        views[name] = view
        grid_fpr[name] = view.metric_matrix("fpr_at_tpr")
        b = view.best
        choices[name] = Choice(name, b.temperature, b.epsilon, b.metrics["fpr_at_tpr"])
    choices[NO_OOD] = Choice(NO_OOD, *PAPER_DEFAULT, None)
    pairs = sorted({(c.temperature, c.epsilon) for c in choices.values()} | {(1.0, 0.0)})
    log(f"[{clock}] ResNet-{depth}: chosen pairs {pairs}; scoring test sets")

    s_id_test = _score_pairs(model, data.id_test, pairs, cfg)
    msp: dict[str, dict[str, float]] = {}
    odin: dict[str, dict[str, float]] = {}
    transfer: dict[str, dict[str, dict[str, float]]] = {}
    test_scores: dict[str, dict[tuple[float, float], np.ndarray]] = {}
    for name, x in data.ood_test.items():
        s = _score_pairs(model, x, pairs, cfg)
        test_scores[name] = s
        msp[name] = ood_metrics(s_id_test[(1.0, 0.0)], s[(1.0, 0.0)], cfg.tpr_target)
        transfer[name] = {
            col: ood_metrics(
                s_id_test[(c.temperature, c.epsilon)], s[(c.temperature, c.epsilon)], cfg.tpr_target
            )
            for col, c in choices.items()
        }
        odin[name] = transfer[name][name]
    accuracy = _accuracy(model, data.id_test, data.id_test_labels, cfg)
    plots: tuple[Path, ...] = ()
    if cfg.plots_dir is not None:
        plots = _plots(depth, cfg, choices, views, s_id_test, test_scores)
    log(f"[{clock}] ResNet-{depth}: done (ID test accuracy {pct(accuracy)}%)")
    return DepthQuality(
        depth=depth,
        id_test_accuracy=accuracy,
        choices=choices,
        msp=msp,
        odin=odin,
        transfer=transfer,
        grid_fpr=grid_fpr,
        seconds=clock.seconds,
        plots=plots,
    )


def _plots(
    depth: int,
    cfg: QualityConfig,
    choices: Mapping[str, Choice],
    views: Mapping[str, CalibrationGrid],
    s_id_test: Mapping[tuple[float, float], np.ndarray],
    test_scores: Mapping[str, Mapping[tuple[float, float], np.ndarray]],
) -> tuple[Path, ...]:
    from odin_monitor.plots import plot_grid_heatmap, plot_roc, plot_score_histograms, save_figure

    if cfg.plots_dir is None:
        return ()
    src = PLOT_SOURCE if PLOT_SOURCE in choices else next(iter(test_scores))
    c = choices[src]
    pair, base = (c.temperature, c.epsilon), (1.0, 0.0)
    out = []
    roc = plot_roc(
        {
            "MSP": (s_id_test[base], test_scores[src][base]),
            f"ODIN (T={c.temperature:g}, ε={c.epsilon:g})": (
                s_id_test[pair],
                test_scores[src][pair],
            ),
        },
        title=f"ResNet-{depth}: CIFAR-10 (test half) vs {src} (test split)",
    )
    out.append(save_figure(roc, cfg.plots_dir / f"roc_resnet{depth}.png"))
    k = 10  # CIFAR-10 classes: the spread form T·log(K·S) is readable where S crowds near 1/K.
    spread = {n: spread_transform(s[pair], c.temperature, k) for n, s in test_scores.items()}
    hist = plot_score_histograms(
        spread_transform(s_id_test[pair], c.temperature, k),
        spread,
        xlabel=f"ODIN spread score T·log(K·S), T={c.temperature:g}, ε={c.epsilon:g}",
        title=f"ResNet-{depth}: ODIN scores, ID test half vs OOD test splits",
    )
    out.append(save_figure(hist, cfg.plots_dir / f"hist_resnet{depth}.png"))
    heat = plot_grid_heatmap(views[src], "fpr_at_tpr")
    heat.axes[0].set_title(
        f"ResNet-{depth}: validation FPR@95%TPR (%), ID val vs {src} val — "
        f"chosen T={c.temperature:g}, ε={c.epsilon:g}",
        fontsize=9,
    )
    out.append(save_figure(heat, cfg.plots_dir / f"grid_resnet{depth}.png"))
    return tuple(out)


def run_quality(
    *,
    data_dir: str | Path | None = None,
    depths: Sequence[int] = DEPTHS,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    n_id_val: int = 500,
    n_id_test: int | None = None,
    n_ood_val: int = 1000,
    n_ood_test: int = 2000,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    tpr_target: float = 0.95,
    plots_dir: str | Path | None = None,
    quick: bool = False,
    log: Log | None = None,
) -> QualityResult:
    """Run the quality benchmark (see the module docstring for the protocol).

    Args:
        data_dir: The shared data folder (default: ``$ODIN_SHARED_DATA`` or ``../shared/data``).
        depths: ResNet depths (20, 32, 44, 56).
        temperatures: ``T`` grid (default: the paper's 10 values).
        epsilons: ``ε`` grid in pixel units (default: the paper's 21 values).
        n_id_val: ID validation images out of the 1,000 lossless ones.
        n_id_test: ID test images, disjoint from validation; ``None`` = all the rest.
        n_ood_val: Validation images per OOD source.
        n_ood_test: Test images per OOD source.
        seed: Seed of the splits and the synthetic sets.
        batch_size: Images per chunk.
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``.
        tpr_target: TPR at which FPR and detection error are read.
        plots_dir: Folder for PNG plots (ROC, histograms, grid heatmap per depth); ``None`` = none.
        quick: Smoke mode: ResNet-20 only, a 4×4 grid, 100 validation and 200 test
            images per OOD source (overrides ``depths``, the grid and the OOD sizes).
        log: Called with one line per step (progress); default: silent.

    Returns:
        :class:`QualityResult`; render it with :func:`format_markdown`.
    """
    if quick:
        depths, temperatures, epsilons = (20,), QUICK_TEMPERATURES, QUICK_EPSILONS
        n_ood_val, n_ood_test = 100, 200
    cfg = QualityConfig(
        data_dir=resolve_data_dir(data_dir),
        depths=tuple(int(d) for d in depths),
        temperatures=tuple(float(t) for t in temperatures),
        epsilons=tuple(float(e) for e in epsilons),
        n_id_val=n_id_val,
        n_id_test=n_id_test,
        n_ood_val=n_ood_val,
        n_ood_test=n_ood_test,
        seed=seed,
        batch_size=batch_size,
        device=device,
        tpr_target=tpr_target,
        plots_dir=None if plots_dir is None else Path(plots_dir),
    )
    _check_config(cfg)
    sink: Log = log or (lambda _line: None)
    data = _load(cfg, sink)
    results = tuple(_run_depth(d, data, cfg, sink) for d in cfg.depths)
    return QualityResult(
        config=cfg,
        depths=results,
        machine=machine_info(device),
        command=command_line(),
        n_id_test=int(data.id_test.shape[0]),
        sources=tuple(data.ood_test),
    )


_TABLE2_METRICS = (
    ("fpr_at_tpr", "FPR at 95% TPR ↓"),
    ("detection_error", "Detection error ↓"),
    ("auroc", "AUROC ↑"),
    ("aupr_in", "AUPR-In ↑"),
    ("aupr_out", "AUPR-Out ↑"),
)


def _fmt_pair(c: Choice) -> str:
    return f"T={c.temperature:g}, ε={c.epsilon:g}"


def format_table2(d: DepthQuality) -> str:
    """The Table-2-like table of one depth: MSP / ODIN per test source, in %."""
    headers = ["OOD test set", "(T, ε) chosen on", *(h for _, h in _TABLE2_METRICS)]
    rows = []
    for name, m_odin in d.odin.items():
        m_msp = d.msp[name]
        cells = [f"{pct(m_msp[k])} / **{pct(m_odin[k])}**" for k, _ in _TABLE2_METRICS]
        rows.append([name, f"{name} val: {_fmt_pair(d.choices[name])}", *cells])
    return markdown_table(headers, rows)


def format_table3(d: DepthQuality, metric: str = "fpr_at_tpr") -> str:
    """The Table-3-like transfer table of one depth: ODIN ``metric`` (%) per test × validation."""
    cols = list(d.choices)
    headers = ["test ↓ / validation →", "MSP", *cols]
    rows = [["chosen (T, ε)", "T=1, ε=0", *(_fmt_pair(d.choices[c]) for c in cols)]]
    for name, by_col in d.transfer.items():
        cells = []
        for c in cols:
            text = pct(by_col[c][metric])
            cells.append(f"**{text}**" if c == name else text)
        rows.append([name, pct(d.msp[name][metric]), *cells])
    return markdown_table(headers, rows)


def format_summary(result: QualityResult, source: str = PLOT_SOURCE) -> str:
    """One line per depth: accuracy and MSP vs ODIN on one test source."""
    headers = [
        "ResNet",
        "ID test acc. %",
        f"MSP FPR@95 ({source})",
        "ODIN FPR@95",
        "MSP AUROC",
        "ODIN AUROC",
        "(T, ε)",
        "time",
    ]
    rows = []
    for d in result.depths:
        if source not in d.odin:
            continue
        rows.append(
            [
                d.depth,
                pct(d.id_test_accuracy),
                pct(d.msp[source]["fpr_at_tpr"]),
                pct(d.odin[source]["fpr_at_tpr"]),
                pct(d.msp[source]["auroc"]),
                pct(d.odin[source]["auroc"]),
                _fmt_pair(d.choices[source]),
                f"{d.seconds / 60:.1f} min",
            ]
        )
    return markdown_table(headers, rows)


def format_markdown(result: QualityResult, plots_relative_to: Path | None = None) -> str:
    """The whole quality report as markdown: setup, summary, Tables 2 and 3 per depth.

    Args:
        result: What :func:`run_quality` returned.
        plots_relative_to: Write plot links relative to this folder (e.g. ``docs/``).
    """
    cfg = result.config
    m = result.machine
    n_pairs = len(cfg.temperatures) * len(cfg.epsilons)
    lines = [
        f"Command: `{result.command}`",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpu_cores')} cores, torch threads "
        f"{m.get('torch_threads')}, torch {m.get('torch')}, device `{cfg.device}`"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f"; {m.get('date')}.",
        "",
        f"Setup: ID = `{ID_FILE}` split {cfg.n_id_val} validation / {result.n_id_test} test "
        f"(seed {cfg.seed}); per OOD source {cfg.n_ood_val} validation / {cfg.n_ood_test} test "
        f"images, disjoint (one split of the Tiny ImageNet indices shared by its three files); "
        f"Gaussian N(0.5, 1) clipped and Uniform U[0, 1] noise, float pixels, seeded. "
        f"Grid: {len(cfg.temperatures)} T × {len(cfg.epsilons)} ε = {n_pairs} pairs "
        f"(T ∈ {{{', '.join(f'{t:g}' for t in cfg.temperatures)}}}, "
        f"ε ∈ [{min(cfg.epsilons):g}, {max(cfg.epsilons):g}]); the pair with the lowest "
        f"validation FPR at {cfg.tpr_target:.0%} TPR wins (ties: higher AUROC, smaller T, ε). "
        f"Cells are MSP / **ODIN**, in %. With {result.n_id_test} ID test images the 95% TPR "
        f"threshold rests on the lowest ~{round(0.05 * result.n_id_test)} ID scores: expect "
        f"about ±1–2 points of sampling noise on FPR.",
        "",
        "### Summary",
        "",
        format_summary(result),
        "",
    ]
    for d in result.depths:
        lines += [
            f"### ResNet-{d.depth} (ID test accuracy {pct(d.id_test_accuracy)}%, "
            f"{d.seconds / 60:.1f} min)",
            "",
            "Table 2 protocol: (T, ε) chosen on the held-out validation split of the same OOD "
            "source (disjoint images), metrics on the test split.",
            "",
            format_table2(d),
            "",
            "Transfer (like the paper's Table 3): ODIN FPR at 95% TPR (%) on each test set "
            "(rows) with (T, ε) chosen on each validation set (columns); bold = same source.",
            "",
            format_table3(d),
            "",
        ]
        for p in d.plots:
            shown = p
            if plots_relative_to is not None:
                try:
                    shown = p.resolve().relative_to(plots_relative_to.resolve())
                except ValueError:
                    shown = p
            lines.append(f"![{p.stem}]({shown.as_posix()})")
        if d.plots:
            lines.append("")
    return "\n".join(lines)


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
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    rel = args.markdown.parent if args.markdown is not None else None
    text = format_markdown(result, plots_relative_to=rel)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
