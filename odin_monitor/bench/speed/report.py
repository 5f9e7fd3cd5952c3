"""The speed benchmark's report: one table per configuration, calibration, targets."""

from __future__ import annotations

from odin_monitor.bench.common import (
    markdown_table,
)
from odin_monitor.bench.speed.methods import FORWARD
from odin_monitor.bench.speed.results import CalibrationTiming, SpeedResult, SpeedRow

__all__ = ["format_markdown"]


def _mb(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _choice(pair: tuple[float, float] | None) -> str:
    return "—" if pair is None else f"T={pair[0]:g}, ε={pair[1]:g}"


def _calibration_lines(c: CalibrationTiming, inputs: str | None = None) -> list[str]:
    rows = [
        [
            f"{t.search} search"
            + (", compile=True" if t.compiled else "")
            + (" (calibrate's default)" if k == 0 else "")
            + f": {t.detail}",
            f"{t.seconds:.1f}",
            f"{t.seconds / c.naive_seconds:.3f}",
            _choice(t.choice),
        ]
        for k, t in enumerate(c.searches)
    ]
    rows += [
        [
            "full grid: grid_scores (one backward per T)",
            f"{c.ours_seconds:.1f}",
            f"{c.ratio:.3f}",
            _choice(c.ours_choice),
        ],
        ["naive: odin_scores per pair", f"{c.naive_seconds:.1f}", "1.000", _choice(c.naive_choice)],
    ]
    runs = "; ".join(
        f"{t.search}{' compiled' if t.compiled else ''} " + ", ".join(f"{r:.1f}" for r in t.rounds)
        for t in c.searches
    )
    return [
        f"#### Calibration, ResNet-{c.depth}: {c.n_pairs}-pair grid on {c.n_id} ID + "
        f"{c.n_ood} OOD images" + (f" ({inputs})" if inputs else ""),
        "",
        markdown_table(["method", "seconds", "× naive", "chosen (T, ε)"], rows),
        "",
        f"Same choice: **{c.same_choice}**; max |score difference| full grid vs naive "
        f"{c.max_abs_score_diff:.2e}. The naive loop and the full grid alternate chunk by "
        "chunk (sums of their chunks, scores only); the searches run whole, one after "
        "another, at evenly spaced points of that alternation, their choices included"
        + (f" (medians of the runs: {runs} s)." if runs else "."),
        "",
    ]


def format_markdown(result: SpeedResult) -> str:
    """The speed report as markdown: setup, one table per configuration, calibration, targets."""
    m, s = result.machine, result.settings
    lines = [
        f"Command: `{result.command}`",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpu_cores')} cores, torch threads {s.get('threads')}"
        + (f", GPU {m['gpu']} (CUDA {m.get('cuda')})" if "gpu" in m else "")
        + f"; torch {m.get('torch')}; load average (1 min) at the end "
        + f"{m.get('load_average_1m', '?')}"
        + f"; {m.get('date')}.",
        "",
        f"Settings: device `{s.get('device')}`, {s.get('weights')} weights, inputs "
        f"{s.get('inputs')}, T={s.get('temperature'):g}, ε={s.get('epsilon'):g}; median of "
        f"{s.get('repeats')} interleaved rounds after one warm-up; per-image loop on "
        f"{s.get('n_per_image')} images; pytorch-ood {s.get('pytorch_ood') or 'not installed'}.",
        "",
    ]
    groups: list[tuple[tuple[int, int, str], list[SpeedRow]]] = []
    for r in result.rows:  # each configuration's rows start with its forward
        if r.method == FORWARD:
            groups.append(((r.depth, r.batch_size, r.precision), []))
        groups[-1][1].append(r)
    headers = [
        "method",
        "precision",
        "batch",
        "images",
        "median s",
        "images/s",
        "× forward (per image)",
        "best s",
        "× forward (best)",
        "peak memory MiB",
        "note",
    ]
    for (depth, bs, precision), rs in groups:
        lines += [f"#### ResNet-{depth}, batch {bs}, {precision}", ""]
        lines.append(
            markdown_table(
                headers,
                [
                    [
                        r.method,
                        r.precision,
                        r.batch_size,
                        r.n_images,
                        f"{r.seconds:.4f}",
                        f"{r.images_per_s:,.0f}",
                        f"{r.ratio_to_forward:.2f}",
                        f"{r.best_seconds:.4f}",
                        f"{r.ratio_to_forward_best:.2f}",
                        _mb(r.peak_memory_mb),
                        r.note,
                    ]
                    for r in rs
                ],
            )
        )
        lines.append("")
    c = result.calibration
    if c is not None:
        lines += _calibration_lines(c, s.get("calibration_inputs"))
    if result.targets:
        lines += [
            "#### Targets",
            "",
            "Read on ResNet-20 at batch 256, fp32, where measured (else the first configuration); "
            "the per-image bound is 8× on CPU and 50× on CUDA. 'met' judges the medians; "
            "the fastest rounds are shown for machines with intermittent background load.",
            "",
            markdown_table(
                ["target", "measured (medians)", "from fastest rounds", "bound", "met"],
                [
                    [
                        t.name,
                        f"{t.value:.2f}",
                        "—" if t.value_best is None else f"{t.value_best:.2f}",
                        ("≥ " if t.higher_is_better else "≤ ") + f"{t.bound:g}",
                        "yes" if t.met else "**no**",
                    ]
                    for t in result.targets
                ],
            ),
            "",
        ]
    lines += [f"Note: {n}" for n in result.notes]
    return "\n".join(lines)
