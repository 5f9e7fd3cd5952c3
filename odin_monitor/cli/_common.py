"""What every command shares: global flags, one-line errors, progress bars, output.

Exit codes (every command):

* 0: done, nothing to report;
* 1: the command failed (bad argument, bad input file, unreachable store, ...);
  one line on stderr says why (``--debug`` shows the traceback);
* 2: usage error (unknown option, missing argument), from click;
* 3: done, and an OOD alert fired (``score``, ``monitor``): for cron;
* 4: a batch was quarantined (unreadable, wrong shape, NaN, out of range);
* 5: batches were scored and logged, but a report or notifier failed (degraded).

Codes 3-5 are :mod:`odin_monitor.monitoring.result`'s cron codes; with several
batches an alert wins over a quarantine, which wins over a failed report.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

__all__ = [
    "EXIT_ERROR",
    "CliState",
    "OdinGroup",
    "emit",
    "info",
    "parse_floats",
    "progress",
    "state",
]

EXIT_ERROR = 1


@dataclass
class CliState:
    """Global flags, stored on the click context."""

    quiet: bool = False
    as_json: bool = False
    debug: bool = False


def state() -> CliState:
    """The :class:`CliState` of the running command (defaults outside a command)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(CliState) if ctx is not None else None
    return found if found is not None else CliState()


def _friendly(err: BaseException) -> str | None:
    """A one-line message for errors a user can fix; ``None`` for real bugs."""
    from odin_monitor.errors import OdinError

    if isinstance(err, OdinError | ValueError | FileNotFoundError | PermissionError):
        return str(err)
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    if isinstance(err, MlflowException):
        return err.message
    return None


class OdinGroup(click.Group):
    """A click group that turns library errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; print known errors as one line unless ``--debug``."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:
            st = ctx.find_object(CliState) or CliState()
            message = _friendly(err)
            if st.debug or message is None:
                raise
            click.echo(
                f"Error: {message.splitlines()[0] if message else type(err).__name__}", err=True
            )
            ctx.exit(EXIT_ERROR)


def emit(payload: dict[str, Any], human: str | Callable[[], str]) -> None:
    """Print a result: JSON on stdout with ``--json``, else the human text (not if quiet)."""
    st = state()
    if st.as_json:
        click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
    elif not st.quiet:
        click.echo(human() if callable(human) else human)


def info(message: str) -> None:
    """A progress message on stderr, silenced by ``--quiet`` and ``--json``."""
    st = state()
    if not (st.quiet or st.as_json):
        click.echo(message, err=True)


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (hidden by ``--quiet``/``--json``); yields ``advance(n)``."""
    st = state()
    if st.quiet or st.as_json or total <= 0:
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def compile_option(default: str, when: str) -> Callable[[Any], Any]:
    """The ``--compile auto|true|false`` option (the compiled scorer of odin_monitor.compiled)."""
    return click.option(
        "--compile",
        "compile_setting",
        type=click.Choice(["auto", "true", "false"], case_sensitive=False),
        default=default,
        show_default=True,
        help="Score on a compiled copy of the classifier (BatchNorm folded, the ODIN step "
        "one torch.compile graph; compiled once at start, seconds to a minute on a CPU; "
        "auto: on for CPU with a C++ "
        f"compiler and CUDA{when}). Falls back to eager with a warning where it cannot.",
    )


def parse_floats(text: str | None, name: str) -> tuple[float, ...] | None:
    """``"1,2.5,1000"`` → ``(1.0, 2.5, 1000.0)``; a click error names the option."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise click.BadParameter(
            f"expected comma-separated numbers such as 1,10,1000, got {text!r}", param_hint=name
        ) from err
