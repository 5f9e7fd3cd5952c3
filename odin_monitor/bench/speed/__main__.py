"""``python -m odin_monitor.bench.speed``: the speed benchmark's command line."""

import sys

from odin_monitor.bench.speed.cli import main

if __name__ == "__main__":
    sys.exit(main())
