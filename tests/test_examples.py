"""Smoke test of the monitoring-loop example (the MLflow examples: tests/mlflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_monitoring_loop_example_fires_on_the_spike(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "monitoring_loop.py"), "--out", str(tmp_path / "loop")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    alerts = [
        json.loads(line) for line in (tmp_path / "loop" / "alerts.jsonl").read_text().splitlines()
    ]
    # Only the last two batches carry the spike of photo crops.
    assert {b for a in alerts for b in a["batch_ids"]} <= {"b006", "b007"}
    assert {a["rule"] for a in alerts} >= {"binomial_spike"}
    assert (tmp_path / "loop" / "workspace").is_dir()
