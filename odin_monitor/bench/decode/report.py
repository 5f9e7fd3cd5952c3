"""The decode benchmark's markdown report."""

from __future__ import annotations

from odin_monitor.bench.decode.run import DecodeResult

__all__ = ["CLEARLY_FASTER", "format_markdown"]

#: "Clearly faster" than Pillow: at least this speedup.
CLEARLY_FASTER = 1.5


def format_markdown(result: DecodeResult) -> str:
    """The result as markdown: header, one table, the verdict per format."""
    m = result.machine
    lines = [
        "### Decode cost: Pillow vs torchvision.io, beside the ODIN pass",
        "",
        f"Command: `{result.command}`",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, torch threads "
        f"{m.get('torch_threads', '?')}; torch {m.get('torch', '?')}; load average (1 min) "
        f"{m.get('load_average_1m', '?')} at the start, {m.get('load_average_1m_end', '?')} "
        f"at the end; {m.get('date', '?')}.",
        "",
        f"Images: {result.images_source}, encoded with Pillow as PNG and JPEG (quality "
        f"{result.jpeg_quality}); one batch of {result.n_images} decoded to float32 "
        f"(N, 3, 32, 32) in [0, 1]; median of {result.repeats} repeats after one warm-up. "
        f"ODIN pass: `score_batch` of the same {result.n_images} decoded images, "
        f"{result.model}: **{result.odin_ms_per_image:.3f} ms/image**.",
        "",
        "| format | decoder | ms/image | × Pillow speed | decode / ODIN pass | "
        "max abs diff vs Pillow | values differing | bit-identical |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result.rows:
        lines.append(
            f"| {r.file_format} | {r.method} | {r.ms_per_image:.4f} | {r.speedup:.2f} | "
            f"{100 * r.ms_per_image / result.odin_ms_per_image:.1f}% | {r.max_abs_diff:.3g} | "
            f"{100 * r.differing_fraction:.2f}% | {'yes' if r.identical else 'no'} |"
        )
    lines.append("")
    for fmt in dict.fromkeys(r.file_format for r in result.rows):
        best = result.fastest(fmt)
        pil = next(r for r in result.rows if r.file_format == fmt and r.speedup == 1.0)
        clearly = best.speedup >= CLEARLY_FASTER
        lines.append(
            f"- {fmt}: fastest here {best.method} ({best.ms_per_image:.4f} ms/image, "
            f"{best.speedup:.2f}× Pillow); clearly faster (≥ {CLEARLY_FASTER:g}×): "
            f"{'yes' if clearly else 'no'}; bit-identical to Pillow: "
            f"{'yes' if best.identical else 'no'}. Pillow decode = "
            f"{100 * pil.ms_per_image / result.odin_ms_per_image:.1f}% of the ODIN pass."
        )
    if result.notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in result.notes]]
    return "\n".join(lines) + "\n"
