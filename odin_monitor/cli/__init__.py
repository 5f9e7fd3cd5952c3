"""The ``odin-monitor`` command line: the one place that wires the layers together.

Core (:mod:`odin_monitor`), the MLflow flavour (:mod:`mlflow_plugin`) and monitoring
(:mod:`odin_monitor.monitoring`) never import each other upwards; commands here do.
Heavy imports happen inside commands, so ``odin-monitor --help`` is fast.
"""

from __future__ import annotations

import logging

import click

from odin_monitor import __version__
from odin_monitor.cli._common import CliState, OdinGroup
from odin_monitor.cli.bench_cmd import bench_group
from odin_monitor.cli.calibrate_cmd import calibrate_command
from odin_monitor.cli.demo_cmd import demo_command
from odin_monitor.cli.mlflow_cmds import log_command, register_command
from odin_monitor.cli.monitor_cmds import monitor_command, report_command, score_command
from odin_monitor.cli.serve_cmd import serve_command

__all__ = ["main"]


@click.group(cls=OdinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="odin-monitor")
@click.option("--quiet", "-q", is_flag=True, help="Print only results and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, as_json: bool, debug: bool) -> None:
    """ODIN out-of-distribution detection for PyTorch classifiers, with MLflow and Evidently.

    \b
    Exit codes: 0 ok; 1 error (one line on stderr, --debug for the traceback);
    2 usage error; 3 an OOD alert fired; 4 a batch was quarantined;
    5 scored and logged, but a report or notifier failed.

    \b
    Example:
      odin-monitor demo
    """
    ctx.obj = CliState(quiet=quiet, as_json=as_json, debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING if not quiet else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )


for command in (
    calibrate_command,
    log_command,
    register_command,
    score_command,
    report_command,
    monitor_command,
    serve_command,
    demo_command,
    bench_group,
):
    main.add_command(command)
