"""Helpers shared by the benchmarks: the data folder, models, machine facts, tables.

Nothing here imports MLflow or Evidently, so the benchmarks run where only torch,
numpy, pandas, scikit-learn and matplotlib are installed (e.g. a bare GPU box).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from odin_monitor.errors import DataLoadError, InputValidationError

__all__ = [
    "DEPTHS",
    "Log",
    "Stopwatch",
    "command_line",
    "cpu_model",
    "data_file",
    "load_resnet",
    "machine_info",
    "markdown_table",
    "pct",
    "publish",
    "resolve_data_dir",
    "stderr_log",
]

#: CIFAR-10 ResNet depths with weights in the shared data folder.
DEPTHS: tuple[int, ...] = (20, 32, 44, 56)

#: A progress/log sink: called with one human-readable line per step.
Log = Callable[[str], None]

_DATA_HINT = (
    "The benchmarks read the real data folder described in shared/data/README.md "
    "(CIFAR-10 test images, pretrained CIFAR-10 ResNets, Tiny ImageNet OOD sets). "
    "Pass --data-dir PATH (or set ODIN_SHARED_DATA)."
)


def _candidates() -> list[Path]:
    out = []
    env = os.environ.get("ODIN_SHARED_DATA")
    if env:
        out.append(Path(env))
    out.append(Path.cwd().parent / "shared" / "data")
    out.append(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    return out


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$ODIN_SHARED_DATA``, else ``../shared/data``.

    ``../shared/data`` is tried relative to the working directory, then to the
    repository root.

    Raises:
        DataLoadError: The folder does not exist.
    """
    if data_dir is not None:
        p = Path(data_dir).expanduser()
        if not p.is_dir():
            raise DataLoadError(f"Expected a data folder at {p}, but there is none. {_DATA_HINT}")
        return p
    for p in _candidates():
        if p.is_dir():
            return p
    tried = ", ".join(str(p) for p in _candidates())
    raise DataLoadError(f"No data folder found (tried {tried}). {_DATA_HINT}")


def data_file(data_dir: Path, name: str) -> Path:
    """``data_dir / name``, or a clear error naming the missing file."""
    p = data_dir / name
    if not p.is_file():
        raise DataLoadError(
            f"Expected {name} in the data folder {data_dir}, but it is missing. {_DATA_HINT}"
        )
    return p


def load_resnet(depth: int, data_dir: Path | None, device: torch.device | str = "cpu") -> nn.Module:
    """A pretrained CIFAR-10 ResNet of ``depth`` in eval mode (random weights without data).

    Args:
        depth: 20, 32, 44 or 56.
        data_dir: Folder holding ``cifar10_resnet{depth}.pt``; ``None`` = random
            initialisation (seeded), for smoke runs without data.
        device: Where to put the model.
    """
    from odin_monitor.modelref import model_from_reference

    if depth not in DEPTHS:
        raise InputValidationError(f"Expected a ResNet depth in {DEPTHS}, but got {depth}.")
    ref = f"odin_monitor.models:resnet{depth}"
    if data_dir is None:
        torch.manual_seed(depth)
        return model_from_reference(ref).to(device).eval()
    weights = data_file(data_dir, f"cifar10_resnet{depth}.pt")
    return model_from_reference(ref, weights).to(device).eval()


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str = "cpu") -> dict[str, str]:
    """Facts to print next to any timing: date, CPU, cores, threads, versions, GPU."""
    dev = torch.device(device)
    info = {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cpu_cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = f"{os.getloadavg()[0]:.2f}"
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = str(torch.version.cuda)
    return info


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (cells formatted with ``str``).

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 2]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value: float, digits: int = 1) -> str:
    """A rate in [0, 1] as a percentage string. Example: ``pct(0.1234) == '12.3'``."""
    return f"{100 * value:.{digits}f}"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that started this process, as it could be typed again.

    A benchmark module run as a script shows as ``python -m`` of its module, a console
    script (``odin-monitor``) by its name.

    Example:
        >>> command_line(["/x/odin_monitor/bench/speed/__main__.py", "--quick"])
        'python -m odin_monitor.bench.speed --quick'
        >>> command_line(["/venv/bin/odin-monitor", "bench", "serve"])
        'odin-monitor bench serve'
    """
    import shlex

    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(".py") and "odin_monitor" in Path(args[0]).parts:
        mod = list(Path(args[0]).with_suffix("").parts)
        mod = mod[mod.index("odin_monitor") :]
        if mod[-1] == "__main__":
            mod.pop()
        args = ["python", "-m", ".".join(mod), *args[1:]]
    elif args and os.sep in args[0] and not args[0].endswith(".py"):
        args[0] = Path(args[0]).name  # a console script such as odin-monitor
    return " ".join(shlex.quote(a) for a in args)


def publish(
    text: str, markdown: Path | None = None, json_path: Path | None = None, payload: object = None
) -> None:
    """Print a report; write it to ``markdown`` and ``payload`` to ``json_path`` if given."""
    import json

    print(text)
    for path, content in (
        (markdown, text.rstrip("\n") + "\n"),
        (json_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n"),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")


def stderr_log(clock: Stopwatch | None = None) -> Callable[[str], None]:
    """A progress ``log`` for benchmarks: one line on stderr, after the elapsed time if timed.

    Example:
        >>> log = stderr_log()
        >>> log("hello")  # doctest: +SKIP
    """

    def log(line: str) -> None:
        prefix = "" if clock is None else f"[{clock}] "
        print(f"{prefix}{line}", file=sys.stderr, flush=True)

    return log


class Stopwatch:
    """Elapsed wall time since creation, for progress lines."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self._t0:7.1f}s"

    @property
    def seconds(self) -> float:
        """Seconds since creation."""
        return time.perf_counter() - self._t0
