"""The Spark benchmark's markdown report."""

from __future__ import annotations

from odin_monitor.bench.spark.results import SCORE_TOLERANCE, SparkResult

__all__ = ["format_markdown"]


def format_markdown(result: SparkResult) -> str:
    """The result as markdown: header, the throughput table, the score check."""
    m = result.machine
    n = result.n_images
    inproc = result.inprocess_images_per_s
    lines = [
        "### Spark `binaryFile` + `spark_udf` vs in-process scoring of the same files",
        "",
        f"Command: `{result.command}`",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, torch threads "
        f"{m.get('torch_threads', '?')} (driver; each Python worker takes torch's default); "
        f"python {m.get('python', '?')}, torch {m.get('torch', '?')}, Spark "
        f"{m.get('spark', '?')}, {m.get('java', '?')}; load average (1 min) "
        f"{m.get('load_average_1m', '?')} at the start, {m.get('load_average_1m_end', '?')} at "
        f"the end; {m.get('date', '?')}.",
        "",
        f'Model: {result.model}; saved with `input_kind="image"` (decoded by its '
        "preprocessing spec).",
        "",
        f"Files: {result.images_source}; {n:,} files, {result.folder_mib:.1f} MiB, in a "
        f'temporary folder. Spark: master `{result.master}`, `spark.read.format("binaryFile")'
        f"`, `coalesce({result.partitions})`, `mlflow.pyfunc.spark_udf(..., env_manager="
        '"local")` on `content` aliased to `image`, `toPandas()` of path + scores; session '
        f"start {result.session_start_s:.1f} s and `spark_udf` {result.udf_create_s:.1f} s "
        "not counted below; in-process rows are the fastest of as many passes as Spark's.",
        "",
        "| path | images | seconds | images/s | × in-process (read + decode + ODIN) |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, secs in enumerate(result.spark_pass_s, 1):
        what = "starts the Python workers, loads the model" if k == 1 else "workers reused"
        lines.append(
            f"| Spark pass {k} ({what}) | {n:,} | {secs:.2f} | {n / secs:,.1f} | "
            f"{n / secs / inproc:.2f} |"
        )
    rows = [
        ("in-process: read files + `PyFuncModel.predict` (decode + ODIN)",
         result.inprocess_pyfunc_s),
        ("in-process: `preprocess_images` alone (decode)", result.decode_s),
        ("in-process: `score_batch` alone on decoded tensors (ODIN)", result.odin_s),
    ]  # fmt: skip
    for name, secs in rows:
        lines.append(f"| {name} | {n:,} | {secs:.2f} | {n / secs:,.1f} | {n / secs / inproc:.2f} |")
    verdict = "equal" if result.scores_match else "**DIFFER**"
    lines += [
        "",
        f"Spark images/s (fastest pass): **{result.spark_images_per_s:,.1f}**; in-process "
        f"with decode: **{inproc:,.1f}**; Spark / in-process = "
        f"{result.spark_images_per_s / inproc:.2f}. Decode = "
        f"{1e3 * result.decode_s / n:.3f} ms/image, ODIN = {1e3 * result.odin_s / n:.3f} "
        "ms/image.",
        "",
        f"Scores: max |Spark - in-process| over odin_score, spread_score, msp = "
        f"{result.score_max_abs_diff:.2e} (tolerance {SCORE_TOLERANCE:g}); predicted_class "
        f"and is_ood {'equal' if result.labels_match else 'differ'} → {verdict}; OOD rate "
        f"{100 * result.ood_rate:.1f}%.",
    ]
    if result.notes:
        lines += ["", "Notes:", "", *[f"- {x}" for x in result.notes]]
    return "\n".join(lines) + "\n"
