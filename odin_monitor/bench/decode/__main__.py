"""``python -m odin_monitor.bench.decode``: the decode benchmark's command line."""

import sys

from odin_monitor.bench.decode.cli import main

if __name__ == "__main__":
    sys.exit(main())
