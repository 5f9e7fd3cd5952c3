"""The tunings' A/B benchmark: its /proc readings, its report, and one real run of the servers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from odin_monitor.bench.serve.tuning_ab import Burst, format_ab, group_cost, run_ab

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")


def test_group_cost_sees_the_pages_a_child_process_touches(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = textwrap.dedent(
        f"""
        import mmap, pathlib, time
        block = mmap.mmap(-1, 64 * 2**20)   # anonymous: mapped, not touched
        pathlib.Path({str(ready)!r}).write_text("0")
        while not pathlib.Path({str(ready)!r}).read_text() == "go":
            time.sleep(0.01)
        for i in range(0, len(block), 4096):
            block[i] = 1                 # one write per 4 KiB page: one fault each
        pathlib.Path({str(ready)!r}).write_text("done")
        time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    try:
        while not ready.exists() or ready.read_text() != "0":
            time.sleep(0.01)
        before = group_cost(proc.pid)
        ready.write_text("go")
        while ready.read_text() != "done":
            time.sleep(0.01)
        after = group_cost(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    pages = 64 * 2**20 // 4096
    assert pages * 0.9 <= after.minor_faults - before.minor_faults <= pages * 1.5
    assert after.user_s + after.sys_s >= before.user_s + before.sys_s


def test_the_report_shows_medians_and_the_ratio_per_concurrency() -> None:
    speeds = {
        "both (default)": (600.0, 660.0, 580.0),
        "malloc tuning only": (500.0,) * 3,
        "scorer thread only": (440.0, 460.0, 450.0),
        "neither": (400.0, 380.0, 420.0),
    }
    bursts = [Burst(n, 1, v, 600.0, 30.0, 0.0) for n, vs in speeds.items() for v in vs]
    bursts[-1] = Burst("neither", 1, 420.0, 610.0, 140.0, 40_000.0)
    peaks = dict.fromkeys(speeds, 1210.0) | {"both (default)": 1285.0}
    text = format_ab(bursts, peaks, "a model", "cmd")
    assert "| both (default) | 1 | 600.0 | 600 660 580 | 600 | 30 | 0 | 1,285 |" in text
    assert "| neither | 1 | 400.0 | 400 380 420 | 600 | 30 | 0 | 1,210 |" in text
    assert (
        "concurrency 1: both (default) 1.50×, malloc tuning only 1.25×, "
        "scorer thread only 1.12×" in text
    )


@pytest.mark.slow
def test_a_real_run_serves_both_variants_with_equal_scores() -> None:
    bursts, peaks, model = run_ab(
        batch_size=4, concurrency=(1,), rounds=1, requests=2, compile=False
    )
    names = ["both (default)", "malloc tuning only", "scorer thread only", "neither"]
    assert [b.variant for b in bursts] == names
    assert all(b.images_per_s > 0 and b.user_ms > 0 for b in bursts)
    assert list(peaks) == names and min(peaks.values()) > 50
    assert "4 base64 PNG files per request" in model
    with pytest.raises(ValueError, match="every concurrency >= 1"):
        run_ab(batch_size=4, concurrency=(0,))
