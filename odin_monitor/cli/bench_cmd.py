"""``odin-monitor bench``: quality, speed and serving benchmarks."""

from __future__ import annotations

import click


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: reproduce the paper's claims and measure speed (see docs/RESULTS.md).

    \b
    Example:
      odin-monitor bench speed --quick
    """
