"""Run ``mlflow models serve`` for an ``odin`` model on 127.0.0.1, and stop it for sure.

One place for what the serving test, the serving example and the serving benchmark
all need: a free port, the command and its environment (``mlflow models serve``
starts ``uvicorn`` from ``PATH``, so this environment's ``bin`` goes first), waiting
for ``/ping``, and stopping the server's whole process group by its PID.

``guarded=True`` serves the same MLflow scoring app behind the request-body cap and
short error replies of :mod:`mlflow_plugin.asgi` (what ``odin-monitor serve`` runs):
:func:`guarded_serve_command` and :func:`guarded_serve_env`.

Example:
    >>> with running_server("models:/odin-demo@champion") as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:...
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_plugin.errors import ServerError
from odin_monitor.errors import ModelLoadError

__all__ = [
    "RunningServer",
    "ServerError",
    "free_port",
    "group_alive",
    "guarded_serve_command",
    "guarded_serve_env",
    "running_server",
    "serve_command",
    "serve_env",
    "stop_server",
    "wait_ready",
]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def serve_command(model_uri: str | Path, port: int, *, workers: int = 1) -> list[str]:
    """``mlflow models serve`` of ``model_uri`` on 127.0.0.1, with this environment's mlflow.

    Example:
        >>> serve_command("models:/m@champion", 5001)[1:4]
        ['models', 'serve', '-m']
    """
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    exe = str(mlflow_bin) if mlflow_bin.exists() else "mlflow"
    return [exe, "models", "serve", "-m", str(model_uri), "--env-manager", "local",
            "--host", HOST, "--port", str(port), "--workers", str(workers)]  # fmt: skip


def serve_env(tracking_uri: str | None = None) -> dict[str, str]:
    """The server's environment: this ``bin`` first on ``PATH``, telemetry off."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def guarded_serve_command(port: int, *, workers: int = 1, host: str = HOST) -> list[str]:
    """``uvicorn`` of MLflow's scoring app behind :mod:`mlflow_plugin.asgi`'s guards.

    The model comes from the environment (:func:`guarded_serve_env`).

    Example:
        >>> guarded_serve_command(5001)[-1]
        'mlflow_plugin._server_app:app'
    """
    return [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
            "--workers", str(workers), "mlflow_plugin._server_app:app"]  # fmt: skip


def guarded_serve_env(
    model_uri: str | Path,
    *,
    max_body_bytes: int | None = None,
    max_error_chars: int | None = None,
    tracking_uri: str | None = None,
) -> dict[str, str]:
    """The guarded server's environment; a ``models:/`` or ``runs:/`` URI is downloaded first.

    Raises:
        ModelLoadError: The model cannot be found or downloaded.
    """
    import mlflow.artifacts
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    from mlflow_plugin.asgi import MAX_BODY_ENV, MAX_ERROR_ENV

    env = serve_env(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=str(model_uri),
            tracking_uri=tracking_uri,
            registry_uri=tracking_uri,
        )
    except Exception as err:
        raise ModelLoadError(
            f"Expected an MLflow model at {model_uri}, but it cannot be found or downloaded "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})."
        ) from err
    env[scoring_server._SERVER_MODEL_PATH] = str(Path(local).resolve())
    env.setdefault(
        MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name, str(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get())
    )
    if max_body_bytes is not None:
        env[MAX_BODY_ENV] = str(int(max_body_bytes))
    if max_error_chars is not None:
        env[MAX_ERROR_ENV] = str(int(max_error_chars))
    return env


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return "(no server log)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _ping(port: int) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=2.0)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], log_file: Path | None = None, timeout: float = 180.0
) -> None:
    """Wait until the server answers ``/ping`` with 200.

    Raises:
        ServerError: The process exited, or no 200 came within ``timeout`` seconds;
            the message holds the end of the server's log.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"Expected the server to answer /ping on {HOST}:{port}, but it exited with "
                f"code {proc.returncode}. Last lines of its log:\n{_tail(log_file)}"
            )
        if _ping(port) == 200:
            return
        time.sleep(0.5)
    raise ServerError(
        f"Expected the server to answer /ping with 200 within {timeout:.0f} s, but it did not. "
        f"Last lines of its log:\n{_tail(log_file)}"
    )


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after ``timeout``.

    ``mlflow models serve`` runs uvicorn as a child process, which may outlive the
    ``mlflow`` process by a moment: this waits until no process of the group is left.
    The process must have been started with ``start_new_session=True``.
    """
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_alive(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass(frozen=True)
class RunningServer:
    """A started server: where it listens, its process, and how long it took to answer."""

    port: int
    command: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    start_seconds: float

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def running_server(
    model_uri: str | Path,
    *,
    port: int | None = None,
    workers: int = 1,
    tracking_uri: str | None = None,
    log_file: Path | None = None,
    timeout: float = 180.0,
    guarded: bool = False,
    max_body_bytes: int | None = None,
    max_error_chars: int | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Start ``mlflow models serve``, wait for ``/ping``, and always stop it by PID.

    Args:
        model_uri: A model folder or an MLflow model URI.
        port: The port (default: a free one).
        workers: uvicorn workers.
        tracking_uri: ``MLFLOW_TRACKING_URI`` of the server (for ``models:/`` URIs).
        log_file: Where the server's output goes (default: inherited).
        timeout: Seconds to wait for the first 200 on ``/ping``.
        guarded: Serve behind :mod:`mlflow_plugin.asgi`'s body cap and short errors.
        max_body_bytes: The body cap of a guarded server (default 64 MiB).
        max_error_chars: The error-reply cap of a guarded server.
        extra_env: More environment for the server (e.g. ``{"ODIN_COMPILE": "true"}``).

    Yields:
        The :class:`RunningServer`.
    """
    port = free_port() if port is None else int(port)
    if guarded:
        cmd = guarded_serve_command(port, workers=workers)
        env = guarded_serve_env(
            model_uri,
            max_body_bytes=max_body_bytes,
            max_error_chars=max_error_chars,
            tracking_uri=tracking_uri,
        )
    else:
        cmd, env = serve_command(model_uri, port, workers=workers), serve_env(tracking_uri)
    env.update(extra_env or {})
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log_file.open("wb")) if log_file is not None else None
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            env=env,
            start_new_session=True,
        )
    try:
        wait_ready(port, proc, log_file, timeout)
        yield RunningServer(port, tuple(cmd), proc, time.perf_counter() - t0)
    finally:
        stop_server(proc)
