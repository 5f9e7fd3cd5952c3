"""``python -m odin_monitor.bench.no_ood``: the no-OOD benchmark's command line."""

import sys

from odin_monitor.bench.no_ood.cli import main

if __name__ == "__main__":
    sys.exit(main())
