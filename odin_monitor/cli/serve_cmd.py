"""``odin-monitor serve``: MLflow's own scoring server, with a body cap and short errors."""

from __future__ import annotations

import subprocess

import click

from odin_monitor.cli._common import compile_option, info
from odin_monitor.cli._wiring import use_tracking_uri


@click.command("serve")
@click.option("--model-uri", required=True, help="models:/NAME@ALIAS, models:/NAME/N, a folder.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option(
    "--max-body-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Largest request body; larger ones get 413 before they are read.",
)
@click.option(
    "--max-error-chars",
    default=2000,
    show_default=True,
    type=click.IntRange(min=80),
    help="Longest error message (the reason first, the echoed input cut).",
)
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI).")
@compile_option("auto", "; each worker compiles at start, before /ping answers")
def serve_command(
    model_uri: str,
    host: str,
    port: int,
    workers: int,
    max_body_mb: float,
    max_error_chars: int,
    tracking_uri: str | None,
    compile_setting: str,
) -> None:
    """Serve a logged detector over REST, as `mlflow models serve` does, but guarded.

    The same MLflow scoring app, routes and request formats (`/invocations`, `/ping`),
    run by uvicorn behind two guards that stock `mlflow models serve` lacks: a
    request-body cap (413 before the body is read) and error replies that put the
    reason first and cut the echoed input. Stops on Ctrl-C.

    \b
    Example:
      odin-monitor serve --model-uri models:/odin-resnet20@champion --port 5001
    """
    from mlflow_plugin.serving import guarded_serve_command, guarded_serve_env

    uri = use_tracking_uri(tracking_uri)
    env = guarded_serve_env(
        model_uri,
        max_body_bytes=int(max_body_mb * 2**20),
        max_error_chars=max_error_chars,
        tracking_uri=uri,
    )
    env["ODIN_COMPILE"] = compile_setting.lower()  # read by each worker's model load
    cmd = guarded_serve_command(port, workers=workers, host=host)
    info(f"serving {model_uri} on http://{host}:{port} (body cap {max_body_mb:g} MiB)")
    proc = subprocess.Popen(cmd, env=env)
    try:
        raise SystemExit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        raise SystemExit(proc.wait()) from None
    finally:
        if proc.poll() is None:
            proc.kill()
