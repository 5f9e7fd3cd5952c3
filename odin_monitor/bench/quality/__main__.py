"""``python -m odin_monitor.bench.quality``: the quality benchmark's command line."""

import sys

from odin_monitor.bench.quality.cli import main

if __name__ == "__main__":
    sys.exit(main())
