"""What the serving-process tunings buy: one model served four ways, side by side, interleaved.

The same image model is served with ``mlflow models serve`` on 127.0.0.1 once per
variant of :data:`VARIANTS`: as every scoring server now runs it (glibc malloc tuned at
load, :mod:`mlflow_plugin.allocator`; loading and scoring on one thread,
:mod:`mlflow_plugin.scorer_thread`), with either turned off, and with both off (how a
served model ran before them). Rounds alternate between the servers, so all see the same
machine: each round sends a burst of base64-PNG requests at each concurrency to each
server and reads, from ``/proc``, the server process group's user and kernel CPU time and
minor page faults, and at the end its peak resident memory (``VmHWM``). The servers'
answers must be equal (the tunings change where memory comes from and which thread
scores, not a score). Linux only (``/proc``).

Run: ``python -m odin_monitor.bench.serve.tuning_ab --batch-size 256 --rounds 4 --compile``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow_plugin.allocator import MALLOC_TUNING_ENV
from mlflow_plugin.scorer_thread import SCORER_THREAD_ENV
from mlflow_plugin.serving import running_server
from odin_monitor.bench.common import (
    Log,
    Stopwatch,
    command_line,
    machine_info,
    markdown_table,
    publish,
    stderr_log,
)
from odin_monitor.bench.resnet20 import find_data_dir
from odin_monitor.bench.serve.bodies import image_body
from odin_monitor.bench.serve.client import compare, load, post, predictions_frame
from odin_monitor.bench.serve.run import _models, _request_images

__all__ = ["VARIANTS", "Burst", "Cost", "format_ab", "group_cost", "main", "run_ab"]

#: Server variants, in report order: name -> environment; the last is the baseline.
VARIANTS: dict[str, dict[str, str]] = {
    "both (default)": {},
    "malloc tuning only": {SCORER_THREAD_ENV: "false"},
    "scorer thread only": {MALLOC_TUNING_ENV: "false"},
    "neither": {MALLOC_TUNING_ENV: "false", SCORER_THREAD_ENV: "false"},
}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Cost:
    """CPU seconds (user, kernel) and minor page faults of a process group so far."""

    user_s: float
    sys_s: float
    minor_faults: int


@dataclass(frozen=True)
class Burst:
    """One burst of requests to one server: throughput and the server's cost per request."""

    variant: str
    concurrency: int
    images_per_s: float
    user_ms: float
    sys_ms: float
    faults: float


def _group(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def group_cost(pgid: int) -> Cost:
    """User and kernel CPU and minor faults of every process in ``pgid`` (``/proc``).

    Raises:
        RuntimeError: No ``/proc`` here (not Linux).
    """
    if not Path("/proc/self/stat").is_file():
        raise RuntimeError("Expected Linux /proc to read a server's CPU time, but it is absent.")
    user = kernel = faults = 0
    for pid in _group(pgid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            faults += int(fields[7])
            user += int(fields[11])
            kernel += int(fields[12])
    return Cost(user / _TICK, kernel / _TICK, faults)


def _peak_rss_mib(pgid: int) -> float:
    peak = 0
    for pid in _group(pgid):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return peak / 1024


def _burst(variant: str, port: int, pgid: int, body: bytes, batch: int, conc: int, n: int) -> Burst:
    before = group_cost(pgid)
    outcomes, wall, _ = load(port, [body], n, conc, 1e9, 300.0)
    after = group_cost(pgid)
    bad = [o for o in outcomes if o.status != 200]
    if bad or len(outcomes) != n:
        raise RuntimeError(f"{variant} server: {len(bad)} of {n} requests failed: {bad[:1]}")
    return Burst(
        variant,
        conc,
        batch * n / wall,
        (after.user_s - before.user_s) / n * 1e3,
        (after.sys_s - before.sys_s) / n * 1e3,
        (after.minor_faults - before.minor_faults) / n,
    )


def run_ab(
    data_dir: Path | None = None,
    *,
    batch_size: int = 256,
    concurrency: Sequence[int] = (1, 4),
    rounds: int = 4,
    requests: int = 8,
    compile: bool = True,
    seed: int = 0,
    log: Log | None = None,
) -> tuple[list[Burst], dict[str, float], str]:
    """Serve one image model as each variant; alternate bursts of requests between them.

    Returns:
        The bursts (``rounds`` per variant and concurrency), each server's peak RSS
        (MiB), and a description of the model.

    Raises:
        ValueError: A bad argument.
        RuntimeError: A request failed, or the two servers answered differently.
    """
    if batch_size < 1 or rounds < 1 or requests < 1 or not concurrency or min(concurrency) < 1:
        raise ValueError(
            "Expected batch_size, rounds, requests and every concurrency >= 1, but got "
            f"{batch_size}, {rounds}, {requests}, {tuple(concurrency)}."
        )
    say: Log = log or (lambda _line: None)
    data = find_data_dir(data_dir)
    bursts: list[Burst] = []
    with tempfile.TemporaryDirectory(prefix="odin-tuning-ab-") as tmp_name:
        tmp = Path(tmp_name)
        folders, desc, _ = _models(None, tmp, data, ("image",), None, seed, say, [])
        images = _request_images(data, (3, 32, 32), "PNG", batch_size, seed)
        body = image_body(images.files[:batch_size])
        with contextlib.ExitStack() as stack:
            servers = {}
            for i, (name, variant) in enumerate(VARIANTS.items()):
                env = variant | ({"ODIN_COMPILE": "true"} if compile else {})
                say(f"starting the {name} server {variant or ''}")
                servers[name] = stack.enter_context(
                    running_server(
                        folders["image"],
                        log_file=tmp / f"server-{i}.log",
                        timeout=180.0,
                        extra_env=env,
                    )
                )
            answers = {}
            for name, server in servers.items():
                outcome, payload = post(server.port, body, 300.0)
                if outcome.status != 200:
                    raise RuntimeError(f"{name} server: {outcome.error}")
                answers[name] = predictions_frame(payload)
                _burst(name, server.port, server.proc.pid, body, batch_size, max(concurrency), 2)
            first = next(iter(answers.values()))
            for name, answer in answers.items():
                diff, labels = compare(answer, first)
                if not (diff == 0.0 and labels):
                    raise RuntimeError(f"The {name} server's scores differ (max {diff}).")
            for r in range(rounds):
                say(f"round {r + 1} of {rounds}")
                for conc in concurrency:
                    for name, server in servers.items():
                        bursts.append(_burst(name, server.port, server.proc.pid, body,
                                             batch_size, conc, requests))  # fmt: skip
            peaks = {name: _peak_rss_mib(s.proc.pid) for name, s in servers.items()}
    scorer = "compiled scorer (ODIN_COMPILE=true)" if compile else "eager scorer"
    return bursts, peaks, f"{desc}; {scorer}; {batch_size} base64 PNG files per request"


def format_ab(bursts: Sequence[Burst], peaks: dict[str, float], model: str, command: str) -> str:
    """The markdown report: medians per variant and concurrency, and each / the baseline."""
    rows, speed = [], {}
    for conc in dict.fromkeys(b.concurrency for b in bursts):
        for name in VARIANTS:
            mine = [b for b in bursts if b.variant == name and b.concurrency == conc]
            med = statistics.median(b.images_per_s for b in mine)
            speed[(name, conc)] = med
            rows.append([
                name, conc, f"{med:.1f}", " ".join(f"{b.images_per_s:.0f}" for b in mine),
                f"{statistics.median(b.user_ms for b in mine):.0f}",
                f"{statistics.median(b.sys_ms for b in mine):.0f}",
                f"{statistics.median(b.faults for b in mine):,.0f}", f"{peaks[name]:,.0f}",
            ])  # fmt: skip
    names, base = list(VARIANTS)[:-1], list(VARIANTS)[-1]
    ratios = "; ".join(
        f"concurrency {c}: "
        + ", ".join(f"{n} {speed[(n, c)] / speed[(base, c)]:.2f}×" for n in names)
        for c in dict.fromkeys(b.concurrency for b in bursts)
    )
    head = ["server", "concurrency", "images/s (median)", "per round", "user ms/request",
            "kernel ms/request", "minor faults/request", "peak RSS MiB"]  # fmt: skip
    m = machine_info()
    where = f"{m['cpu']}, {m['cpu_cores']} cores, torch threads {m['torch_threads']}"
    return "\n".join([
        "#### Serving-process tunings: one model served four ways, interleaved",
        "", f"Command: `{command}`", "",
        f"Machine: {where}, {m['date']}; "
        f"load average (1 min) {os.getloadavg()[0]:.2f} at the end.", "",
        f"Model: {model}.", "", markdown_table(head, rows), "",
        f"Images/s ÷ {base}'s: {ratios}. Scores of all servers equal "
        "(max |difference| 0). CPU time, faults and peak RSS are the server process "
        "group's, from /proc; the client threads share the same cores.",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m odin_monitor.bench.serve.tuning_ab",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=None, help="shared data folder")
    p.add_argument("--batch-size", type=int, default=256, help="images per request")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--requests", type=int, default=8, help="requests per burst")
    p.add_argument("--compile", action="store_true", help="ODIN_COMPILE=true in every server")
    p.add_argument("--markdown", type=Path, help="write the report here")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    bursts, peaks, model = run_ab(
        args.data_dir, batch_size=args.batch_size, concurrency=args.concurrency,
        rounds=args.rounds, requests=args.requests, compile=args.compile,
        log=stderr_log(Stopwatch()),
    )  # fmt: skip
    publish(format_ab(bursts, peaks, model, command_line()), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
