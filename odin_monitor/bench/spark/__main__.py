"""``python -m odin_monitor.bench.spark``: the Spark benchmark's command line."""

import sys

from odin_monitor.bench.spark.cli import main

if __name__ == "__main__":
    sys.exit(main())
