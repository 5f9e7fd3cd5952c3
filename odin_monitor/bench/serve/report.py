"""The serving benchmark's markdown report."""

from __future__ import annotations

import math

from odin_monitor.bench.serve.results import SCORE_TOLERANCE, ServeResult

__all__ = ["format_markdown"]


def _f(value: float, digits: int = 1) -> str:
    return "—" if not math.isfinite(value) else f"{value:,.{digits}f}"


def format_markdown(result: ServeResult) -> str:
    """The result as a markdown report: header (command, machine, settings) and a table.

    Example:
        >>> text = format_markdown(run_serve(batch_sizes=(1,)))  # doctest: +SKIP
        >>> "| batch | requests | errors |" in text  # doctest: +SKIP
        True
    """
    m = result.machine
    lines = [
        "### `mlflow models serve`: latency and throughput on 127.0.0.1",
        "",
        f"Command: `{result.command}`",
        "",
        f"Server: `{result.server_command}` (started in {result.server_start_s:.1f} s)",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, torch threads "
        f"{m.get('torch_threads', '?')} (client and server alike); python {m.get('python', '?')}, "
        f"torch {m.get('torch', '?')}, mlflow {m.get('mlflow', '?')}; load average (1 min) "
        f"{m.get('load_average_1m', '?')} at the start, {m.get('load_average_1m_end', '?')} "
        f"at the end; {m.get('date', '?')}.",
        "",
        f"Model: {result.model}.",
        "",
        f"Load: {result.requests_per_size} timed requests per batch size after 2 warm-up "
        f"requests, {result.concurrency} concurrent client threads (a new connection per "
        f"request), {result.workers} uvicorn worker(s), limit {result.duration_limit_s:g} s "
        f'per batch size; JSON bodies `{{"inputs": images.tolist()}}` of float32 images '
        f"in [0, 1] from {result.images_source}, built before timing.",
        "",
    ]
    headers = [
        "batch", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "images/s",
        "in-process images/s", "HTTP/in-process",
    ]  # fmt: skip
    lines += [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" for _ in headers) + "|",
    ]
    for s in result.sizes:
        row = [
            str(s.batch_size),
            str(s.requests) if s.requests == s.planned else f"{s.requests} of {s.planned}",
            str(s.errors) if s.errors == 0 else f"**{s.errors}**",
            _f(s.p50_ms),
            _f(s.p95_ms),
            _f(s.p99_ms),
            _f(s.requests_per_s, 2),
            _f(s.images_per_s),
            _f(s.inprocess_images_per_s),
            _f(s.http_over_inprocess, 2),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Served scores vs in-process `score_batch` (one request per batch size):", ""]
    for s in result.sizes:
        verdict = "equal" if s.scores_match else "**DIFFER**"
        lines.append(
            f"- batch {s.batch_size}: max |served - in-process| over odin_score, spread_score, "
            f"msp = {s.score_max_abs_diff:.2e} (tolerance {SCORE_TOLERANCE:g}); predicted_class "
            f"and is_ood {'equal' if s.labels_match else 'differ'} → {verdict}; body "
            f"{s.body_mib:.2f} MiB; timed phase {s.wall_s:.1f} s."
        )
    lines += [
        "",
        "Columns: latency percentiles (numpy) over the successful timed requests, client side "
        "(send to last byte of the answer); req/s and images/s over the wall time of the timed "
        "phase; in-process images/s = batch size / median `score_batch` time of the same images "
        "in the benchmark process (same model folder, while the server was idle); "
        "HTTP/in-process = images/s ÷ in-process images/s. The client threads share the CPU "
        "with the server.",
    ]
    errors = [f"- batch {s.batch_size}: {e}" for s in result.sizes for e in s.error_samples]
    if errors:
        lines += ["", f"**{result.errors} failed request(s)**, first messages:", "", *errors]
    if result.notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in result.notes]]
    return "\n".join(lines) + "\n"
