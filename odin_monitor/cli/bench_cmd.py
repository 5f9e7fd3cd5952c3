"""``odin-monitor bench``: quality, speed and serving benchmarks.

The options are the benchmark modules' own (``--help`` lists them): this group only
routes to :mod:`odin_monitor.bench.quality`, :mod:`odin_monitor.bench.speed` and
:mod:`mlflow_plugin.bench_serve`, so the CLI and ``python -m`` runs never drift apart.
"""

from __future__ import annotations

import click

PASSTHROUGH = {"ignore_unknown_options": True, "help_option_names": []}


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: reproduce the paper's claims and measure speed (see docs/RESULTS.md).

    Each subcommand takes its benchmark's options; `odin-monitor bench speed --help`
    lists them.

    \b
    Example:
      odin-monitor bench quality --quick
      odin-monitor bench speed --depths 20 --batch-sizes 256 --markdown speed.md
      odin-monitor bench serve --batch-sizes 1 32 256
    """


@bench_group.command("quality", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_quality(ctx: click.Context, args: tuple[str, ...]) -> None:
    """MSP vs ODIN on ../shared/data: the paper's Tables 2 and 3, per ResNet depth.

    \b
    Example:
      odin-monitor bench quality --depths 20 --n-ood-val 200 --markdown quality.md
    """
    from odin_monitor.bench import quality

    ctx.exit(quality.main(list(args), prog="odin-monitor bench quality"))


@bench_group.command("speed", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_speed(ctx: click.Context, args: tuple[str, ...]) -> None:
    """ODIN vs a plain forward, the paper's per-image loop, pytorch-ood; calibration.

    \b
    Example:
      odin-monitor bench speed --depths 20 --batch-sizes 256 --repeats 9
    """
    from odin_monitor.bench import speed

    ctx.exit(speed.main(list(args), prog="odin-monitor bench speed"))


@bench_group.command("serve", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_serve(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Latency and throughput of `mlflow models serve` under a bounded concurrent load.

    \b
    Example:
      odin-monitor bench serve --batch-sizes 1 32 256 --concurrency 4
    """
    from mlflow_plugin import bench_serve

    ctx.exit(bench_serve.main(list(args), prog="odin-monitor bench serve"))
