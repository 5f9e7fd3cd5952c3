"""How a batch result is printed: a JSON-ready summary and a line for a person."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from odin_monitor.monitoring import BatchResult


def summarize(result: BatchResult) -> dict[str, Any]:
    """JSON-ready summary of a batch result."""
    rec = result.record
    return {
        "batch_id": result.batch_id,
        "n_images": None if rec is None else rec.n_images,
        "n_ood": None if rec is None else rec.n_ood,
        "ood_rate": None if rec is None else rec.ood_rate,
        "duplicate": result.duplicate,
        "quarantine_reason": result.quarantine_reason,
        "alerts": [a.to_dict() for a in result.alerts],
        "html_report": result.html_path,
        "errors": list(result.errors),
        "exit_code": result.exit_code,
    }


def human(result: BatchResult) -> str:
    """One line (plus alerts, warnings and the report's path) for a person."""
    rec = result.record
    if rec is None:
        return f"batch {result.batch_id}: QUARANTINED ({result.quarantine_reason})"
    head = f"batch {result.batch_id}: {rec.n_ood}/{rec.n_images} OOD ({100 * rec.ood_rate:.1f}%)"
    if result.duplicate:
        head += " [already logged]"
    lines = [head]
    lines += [f"  ALERT {a.message}" for a in result.alerts]
    lines += [f"  warning: {e}" for e in result.errors]
    if result.html_path:
        lines.append(f"  report: {result.html_path}")
    return "\n".join(lines)
