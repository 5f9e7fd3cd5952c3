"""Fast feedback: --help, --version and a rejected bad path import none of the heavy stacks.

Counted in imported modules (a fresh interpreter per case), not timed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "mlflow", "evidently", "sklearn", "pandas", "scipy", "matplotlib", "pyspark")

SCRIPT = """
import json, sys
from odin_monitor.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exit:
    code = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
print("RESULT", json.dumps({"code": code, "heavy": heavy}))
"""


def run(*args: str, prelude: str = "") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", prelude + SCRIPT.replace("HEAVY", repr(json.dumps(HEAVY))), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--help",), 0),
        (("--version",), 0),
        (("score", "--help"), 0),
        (("calibrate", "--help"), 0),
        (("score", "/no/such/batch.npz", "--model-uri", "models:/m@champion"), 2),
        (("monitor", "--inbox", "/no/such/inbox", "--model-uri", "x"), 2),
    ],
)
def test_quick_paths_import_no_heavy_stack(args, code):
    out = run(*args)
    assert out["code"] == code
    assert out["heavy"] == [], f"{' '.join(args)} imported {out['heavy']}"


def test_the_probe_sees_a_heavy_import():
    out = run("--help", prelude="import torch\n")
    assert out["code"] == 0 and out["heavy"] == ["torch"]
