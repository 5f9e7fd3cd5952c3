"""``python -m odin_monitor.bench.serve``: the serving benchmark's command line."""

import sys

from odin_monitor.bench.serve.cli import main

if __name__ == "__main__":
    sys.exit(main())
