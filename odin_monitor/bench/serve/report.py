"""The serving benchmark's markdown report."""

from __future__ import annotations

import math

from odin_monitor.bench.serve.results import SCORE_TOLERANCE, ServeResult

__all__ = ["format_markdown"]


def _f(value: float, digits: int = 1) -> str:
    return "—" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _servers(result: ServeResult) -> list[str]:
    if not result.servers:
        return [f"Server: `{result.server_command}` (started in {result.server_start_s:.1f} s)"]
    return [
        f"Server ({s['format']} requests): `{s['command']}` (started in {s['start_s']} s)  "
        for s in result.servers
    ]


def _kinds(result: ServeResult) -> list[str]:
    text = {
        "float": '- float: `{"inputs": images.tolist()}`, float32 (N, 3, 32, 32) in [0, 1], '
        'to a model saved with `input_kind="tensor"`;',
        "image": '- image: `{"dataframe_split": {"columns": ["image"], "data": [["<base64>"], '
        f"...]}}}}`, one {result.file_format} file per image (base64), to the same detector "
        'saved with `input_kind="image"` (decoded by its preprocessing spec).',
    }
    return ["Request kinds:", "", *(text[f] for f in result.formats)]


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
        *_servers(result),
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, torch threads "
        f"{m.get('torch_threads', '?')} (client and server alike); python {m.get('python', '?')}, "
        f"torch {m.get('torch', '?')}, mlflow {m.get('mlflow', '?')}; load average (1 min) "
        f"{m.get('load_average_1m', '?')} at the start, {m.get('load_average_1m_end', '?')} "
        f"at the end; {m.get('date', '?')}.",
        "",
        f"Model: {result.model}.",
        "",
        f"Load: {result.requests_per_size} timed requests per batch size and request kind "
        f"after 2 warm-up requests, {result.concurrency} concurrent client threads (a new "
        f"connection per request), {result.workers} uvicorn worker(s) per server, limit "
        f"{result.duration_limit_s:g} s per batch size; images from {result.images_source}; "
        "bodies built before timing.",
        "",
        *_kinds(result),
        "",
    ]
    headers = [
        "batch", "request", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s",
        "images/s", "body MiB", "in-process images/s", "in-process + decode images/s",
        "HTTP/in-process", "HTTP/in-process + decode",
    ]  # fmt: skip
    lines += [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" for _ in headers) + "|",
    ]
    for s in sorted(result.sizes, key=lambda s: (s.batch_size, s.format != "float")):
        row = [
            str(s.batch_size),
            s.format,
            str(s.requests) if s.requests == s.planned else f"{s.requests} of {s.planned}",
            str(s.errors) if s.errors == 0 else f"**{s.errors}**",
            _f(s.p50_ms),
            _f(s.p95_ms),
            _f(s.p99_ms),
            _f(s.requests_per_s, 2),
            _f(s.images_per_s),
            _f(s.body_mib, 3),
            _f(s.inprocess_images_per_s),
            _f(s.inprocess_decode_images_per_s),
            _f(s.http_over_inprocess, 2),
            _f(s.http_over_inprocess_decode, 2),
        ]
        lines.append("| " + " | ".join(row) + " |")
    goals = result.goals()
    if goals:
        lines += [
            "",
            "Goals (issue 11):",
            "",
            "| goal | measured | bound | met |",
            "|---|---|---|---|",
        ]
        for g in goals:
            value = f"{g.measured:.0f}" if g.bound == "= 0" else f"{g.measured:.2f}"
            lines.append(f"| {g.name} | {value} | {g.bound} | {'yes' if g.met else '**no**'} |")
    image = [s for s in result.sizes if s.format == "image"]
    if image:
        lines += ["", f"Decode cost in-process ({result.file_format} files, Pillow path of "
                  "`odin_monitor.preprocess.preprocess_images`) beside the ODIN pass "
                  "(`score_batch` on decoded tensors), median ms per image:", ""]  # fmt: skip
        for s in image:
            share = s.decode_ms_per_image / (s.decode_ms_per_image + s.odin_ms_per_image)
            lines.append(
                f"- batch {s.batch_size}: decode {s.decode_ms_per_image:.3f} ms/image, "
                f"ODIN {s.odin_ms_per_image:.3f} ms/image (decode = {100 * share:.1f}% of the "
                "two)."
            )
    lines += ["", "Served scores vs in-process `score_batch` (one request per kind and size):", ""]
    for s in result.sizes:
        verdict = "equal" if s.scores_match else "**DIFFER**"
        lines.append(
            f"- {s.format} batch {s.batch_size}: max |served - in-process| over odin_score, "
            f"spread_score, msp = {s.score_max_abs_diff:.2e} (tolerance {SCORE_TOLERANCE:g}); "
            f"predicted_class and is_ood {'equal' if s.labels_match else 'differ'} → "
            f"{verdict}; body {s.body_mib:.2f} MiB; timed phase {s.wall_s:.1f} s."
        )
    lines += [
        "",
        "Columns: latency percentiles (numpy) over the successful timed requests, client side "
        "(send to last byte of the answer); req/s and images/s over the wall time of the timed "
        "phase; in-process images/s = batch size / median `score_batch` time of the same images, "
        "already decoded, in the benchmark process (same model, while the servers were idle); "
        "in-process + decode = the same with `preprocess_images` of the same files first (image "
        "requests); HTTP/in-process = images/s ÷ in-process images/s. The client threads share "
        "the CPU with the servers.",
    ]
    errors = [
        f"- {s.format} batch {s.batch_size}: {e}" for s in result.sizes for e in s.error_samples
    ]
    if errors:
        lines += ["", f"**{result.errors} failed request(s)**, first messages:", "", *errors]
    if result.notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in result.notes]]
    return "\n".join(lines) + "\n"
