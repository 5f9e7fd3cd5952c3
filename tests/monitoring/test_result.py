from __future__ import annotations

from odin_monitor.monitoring.result import (
    EXIT_ALERT,
    EXIT_DEGRADED,
    EXIT_OK,
    EXIT_QUARANTINED,
    BatchResult,
    combined_exit_code,
    exit_code,
)
from tests.monitoring.helpers import make_alert


def test_exit_codes():
    assert exit_code(BatchResult("b")) == EXIT_OK == 0
    assert exit_code(BatchResult("b", alerts=(make_alert(),))) == EXIT_ALERT == 3
    assert exit_code(BatchResult("b", quarantine_reason="bad")) == EXIT_QUARANTINED == 4
    assert exit_code(BatchResult("b", errors=("report failed",))) == EXIT_DEGRADED == 5
    both = BatchResult("b", alerts=(make_alert(),), errors=("report failed",))
    assert both.exit_code == EXIT_ALERT  # an alert outranks a failed report


def test_several_batches_exit_with_the_most_urgent_code():
    ok, alert = BatchResult("a"), BatchResult("b", alerts=(make_alert(),))
    bad, degraded = BatchResult("c", quarantine_reason="NaN"), BatchResult("d", errors=("x",))
    assert combined_exit_code([]) == combined_exit_code([ok]) == EXIT_OK
    assert combined_exit_code([ok, degraded, bad]) == EXIT_QUARANTINED
    assert combined_exit_code([degraded, bad, alert, ok]) == EXIT_ALERT
    assert combined_exit_code([ok, degraded]) == EXIT_DEGRADED
