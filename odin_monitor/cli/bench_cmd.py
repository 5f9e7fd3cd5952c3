"""``odin-monitor bench``: quality, speed, serving, Spark and decode benchmarks.

The options are the benchmark modules' own (``--help`` lists them): this group only
routes to the command lines of :mod:`odin_monitor.bench.quality`,
:mod:`odin_monitor.bench.speed`, :mod:`odin_monitor.bench.serve`,
:mod:`odin_monitor.bench.spark` and :mod:`odin_monitor.bench.decode`, so the CLI and
``python -m`` runs never drift apart.
"""

from __future__ import annotations

import importlib

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
      odin-monitor bench spark --n-images 5000
      odin-monitor bench decode --n-images 256
    """


def _route(name: str, help_text: str) -> None:
    """Add ``odin-monitor bench NAME``: every argument goes to ``odin_monitor.bench.NAME.cli``."""

    @bench_group.command(name, context_settings=PASSTHROUGH, help=help_text)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx: click.Context, args: tuple[str, ...]) -> None:
        # Imported on use: `odin-monitor --help` stays fast and needs no benchmark extra.
        entry = importlib.import_module(f"odin_monitor.bench.{name.replace('-', '_')}.cli")
        ctx.exit(entry.main(list(args), prog=f"odin-monitor bench {name}"))


_route(
    "quality",
    """MSP vs ODIN on ../shared/data: the paper's Tables 2 and 3, per ResNet depth.

    \b
    Example:
      odin-monitor bench quality --depths 20 --n-ood-val 200 --markdown quality.md
    """,
)
_route(
    "no-ood",
    """Calibration without OOD data (issue 12): noise, paper default, mean ID score and
    jigsaw against an OOD-tuned detector and MSP, per ResNet depth.

    \b
    Example:
      odin-monitor bench no-ood --cache ~/.cache/odin-no-ood --threads 1 --markdown no_ood.md
    """,
)
_route(
    "speed",
    """ODIN vs a plain forward, the paper's per-image loop, pytorch-ood; calibration.

    \b
    Example:
      odin-monitor bench speed --depths 20 --batch-sizes 256 --repeats 9
    """,
)
_route(
    "serve",
    """Latency and throughput of `mlflow models serve`: float JSON vs base64 images.

    \b
    Example:
      odin-monitor bench serve --batch-sizes 1 32 256 --concurrency 4
    """,
)
_route(
    "spark",
    """Score N real image files with Spark binaryFile + spark_udf and in-process.

    \b
    Example:
      odin-monitor bench spark --n-images 5000 --markdown spark.md
    """,
)
_route(
    "decode",
    """Decode ms/image: Pillow vs torchvision.io, beside the ODIN pass.

    \b
    Example:
      odin-monitor bench decode --n-images 256
    """,
)
