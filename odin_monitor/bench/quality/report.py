"""The quality benchmark's report: the paper's Tables 2 and 3 per depth, as markdown."""

from __future__ import annotations

from pathlib import Path

from odin_monitor.bench.common import markdown_table, pct
from odin_monitor.bench.quality.config import ID_FILE, PLOT_SOURCE
from odin_monitor.bench.quality.results import Choice, DepthQuality, QualityResult

__all__ = ["format_markdown", "format_summary", "format_table2", "format_table3"]

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
