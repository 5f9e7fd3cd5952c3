"""The no-OOD benchmark's markdown report: protocol, validation selection, per-depth tables."""

from __future__ import annotations

from odin_monitor.bench.common import markdown_table, pct
from odin_monitor.bench.no_ood.config import (
    MSP,
    NO_OOD_RULES,
    PROTOCOL,
    REAL_SETS,
    REF,
    RULE_NAMES,
    TEST_SETS,
)
from odin_monitor.bench.no_ood.results import DepthNoOod, NoOodResult
from odin_monitor.bench.no_ood.rules import goal_limit, meets_goal

__all__ = ["depth_table", "format_markdown", "goal_from_numbers"]

COLUMNS = (REF, MSP, *NO_OOD_RULES)


def _ratio(value: float, ref: float) -> str:
    return f"×{value / ref:.2f}" if ref > 0 else "×—"


def _cell(d: DepthNoOod, rule: str, name: str) -> str:
    m, ref = d.test[rule][name], d.test[REF][name]
    text = f"{pct(m['fpr_at_tpr'])} / {pct(m['auroc'])}"
    if rule == REF:
        return text
    text += f" ({_ratio(m['fpr_at_tpr'], ref['fpr_at_tpr'])})"
    if rule in NO_OOD_RULES and name in REAL_SETS and name in d.goal[rule]:
        text += " ✗"
    return text


def depth_table(d: DepthNoOod) -> str:
    """Table-3 columns of one depth: rows = test sets, columns = the rules.

    Each cell is ``FPR@95 / AUROC (×ratio of FPR to REF)`` in %, ``✗`` where a no-OOD
    rule misses the goal on a real set; the last row is the goal verdict.
    """
    headers = ["test set", *(f"{r}: {RULE_NAMES[r]}" for r in COLUMNS)]
    rows: list[list[str]] = [[name, *(_cell(d, r, name) for r in COLUMNS)] for name in TEST_SETS]
    rows.append(
        [
            "**goal** (real sets)",
            "—",
            "—",
            *(
                "**met**" if not d.goal[r] else "missed: " + ", ".join(d.goal[r])
                for r in NO_OOD_RULES
            ),
        ]
    )
    return markdown_table(headers, rows)


def _pair(d: DepthNoOod, rule: str) -> str:
    c = d.choices[rule]
    return f"T={c.temperature:g}, ε={c.epsilon:g}"


def format_markdown(result: NoOodResult) -> str:
    """The report: protocol, machine, chosen pairs, validation selection, test tables."""
    cfg = result.config
    depths = result.depths
    lines = [
        "# Calibration without OOD data (issue 12)",
        "",
        f"Command: `{result.command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in result.machine.items()),
        "",
        f"Sizes: ID validation {cfg.n_id_val}, ID test {cfg.n_id_test}, TIN-crop validation "
        f"{cfg.n_tin_val}, TIN test {cfg.n_tin_test} per file, noise validation "
        f"{cfg.n_noise_val}, noise test {cfg.n_noise_test} per kind, jigsaw {cfg.n_jigsaw}.",
        "",
        "## Protocol",
        "",
        PROTOCOL,
        "## Chosen (T, ε) per rule",
        "",
        markdown_table(
            ["rule", *(f"ResNet-{d.depth}" for d in depths)],
            [[f"{r}: {RULE_NAMES[r]}", *(_pair(d, r) for d in depths)] for r in COLUMNS],
        ),
        "",
        "## Selection on validation (ID validation vs TIN-crop validation, FPR@95 %)",
        "",
        "Cell: FPR (×ratio to REF; excess over 1.15·REF+2 in points).",
        "",
    ]
    rank = {r.rule: r for r in result.ranking}
    rows = []
    for r in COLUMNS:
        cells = []
        for d in depths:
            c, ref = d.choices[r], d.choices[REF].val_fpr
            extra = (
                ""
                if r in (REF, MSP)
                else (f" ({_ratio(c.val_fpr, ref)}; {100 * (c.val_fpr - goal_limit(ref)):+.1f})")
            )
            cells.append(pct(c.val_fpr) + extra)
        if r in rank:
            k = rank[r]
            tail = [
                f"{100 * k.worst_excess:+.1f}",
                f"{k.mean_ratio:.2f}",
                "yes" if k.below_msp else "no",
            ]
        else:
            tail = ["—", "—", "—"]
        rows.append([f"{r}: {RULE_NAMES[r]}", *cells, *tail])
    lines += [
        markdown_table(
            ["rule", *(f"ResNet-{d.depth}" for d in depths), "worst excess", "mean ratio", "< MSP"],
            rows,
        ),
        "",
        f"**Chosen by the pre-stated rule (validation only): {result.winner} "
        f"({RULE_NAMES[result.winner]}).**",
        "",
    ]
    check = result.calibrate_check
    if check is not None:
        lines += [
            f"`calibrate(strategy='jigsaw')` at ResNet-{check.depth}, computed fresh: pair "
            f"T={check.calibrate_pair[0]:g}, ε={check.calibrate_pair[1]:g} (R4 of this run: "
            f"T={check.r4_pair[0]:g}, ε={check.r4_pair[1]:g}); max |Δ| of the score cubes vs "
            f"this run's: ID {check.max_abs_diff_id:.1e}, jigsaw {check.max_abs_diff_jigsaw:.1e}"
            f" → {'equal' if check.equal else 'DIFFERENT'}.",
            "",
        ]
    lines += [
        "## Test: FPR@95%TPR / AUROC (%), ratio of FPR to REF",
        "",
        "Goal on each real set: FPR ≤ 1.15 × REF + 2 points and FPR < MSP; ✗ marks a miss.",
        "",
    ]
    for d in depths:
        limits = ", ".join(
            f"{n} {pct(goal_limit(d.test[REF][n]['fpr_at_tpr']))}" for n in REAL_SETS
        )
        computed = f"{len(d.computed)} score blocks computed, the rest from the cache"
        lines += [
            f"### ResNet-{d.depth} ({d.seconds / 60:.1f} min; {computed})",
            "",
            depth_table(d),
            "",
            f"Goal limits (FPR %): {limits}.",
            "",
        ]
    return "\n".join(lines)


def goal_from_numbers(
    fpr: dict[str, float], ref: dict[str, float], msp: dict[str, float]
) -> tuple[str, ...]:
    """The real sets where ``fpr`` misses the goal, from given FPRs (set -> FPR)."""
    return tuple(n for n in REAL_SETS if not meets_goal(fpr[n], ref[n], msp[n]))
