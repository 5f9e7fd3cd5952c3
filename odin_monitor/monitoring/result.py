"""What one monitoring step returns, and the cron exit codes it maps to.

Exit codes for cron (:func:`exit_code`; with several batches, :func:`combined_exit_code`):

* ``0`` (:data:`EXIT_OK`): batch committed, reported, no alert.
* ``3`` (:data:`EXIT_ALERT`): at least one alert fired on this batch.
* ``4`` (:data:`EXIT_QUARANTINED`): the batch could not be read and was quarantined.
* ``5`` (:data:`EXIT_DEGRADED`): batch committed but the report or a notifier
  failed (deliveries stay in the outbox).

Example:
    >>> BatchResult("b1", quarantine_reason="Expected 4 dimensions").exit_code
    4
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.batches import BatchRecord

EXIT_OK = 0
EXIT_ALERT = 3
EXIT_QUARANTINED = 4
EXIT_DEGRADED = 5


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`~odin_monitor.monitoring.pipeline.process_batch`.

    Attributes:
        batch_id: The batch id (given or content-derived).
        record: Committed record (None if quarantined).
        duplicate: True when the id was already committed (nothing recomputed).
        quarantine_reason: Why the batch was quarantined (None otherwise).
        alerts: Alerts fired by this batch.
        html_path: Report HTML, if written.
        json_path: Report snapshot JSON, if written.
        project_id: Evidently project, if the snapshot was added.
        snapshot_id: Evidently snapshot id, if added.
        errors: Non-fatal failures after the commit (report, notifiers).
        delivered: Outbox rows delivered while this call waited.
        undelivered: Outbox rows of the configured notifiers still pending when it
            returned (failed, waiting for their retry time, or still in flight).
        report_rebuilt: True when a known batch's missing report was rebuilt.
    """

    batch_id: str
    record: BatchRecord | None = None
    duplicate: bool = False
    quarantine_reason: str | None = None
    alerts: tuple[Alert, ...] = ()
    html_path: str | None = None
    json_path: str | None = None
    project_id: str | None = None
    snapshot_id: str | None = None
    errors: tuple[str, ...] = ()
    delivered: int = 0
    undelivered: int = 0
    report_rebuilt: bool = False

    @property
    def quarantined(self) -> bool:
        """Whether the batch was quarantined."""
        return self.quarantine_reason is not None

    @property
    def exit_code(self) -> int:
        """Cron exit code, see :func:`exit_code`."""
        return exit_code(self)


def exit_code(result: BatchResult) -> int:
    """Cron exit code of a batch result (alert > quarantine > degraded > ok).

    Example:
        >>> exit_code(BatchResult("b1", errors=("report: disk full",)))
        5
    """
    if result.alerts:
        return EXIT_ALERT
    if result.quarantined:
        return EXIT_QUARANTINED
    if result.errors:
        return EXIT_DEGRADED
    return EXIT_OK


def combined_exit_code(results: Iterable[BatchResult]) -> int:
    """Exit code of several batches: the most urgent of theirs, in :func:`exit_code`'s order.

    Example:
        >>> combined_exit_code([BatchResult("a"), BatchResult("b", quarantine_reason="NaN")])
        4
    """
    codes = {r.exit_code for r in results}
    for code in (EXIT_ALERT, EXIT_QUARANTINED, EXIT_DEGRADED):
        if code in codes:
            return code
    return EXIT_OK
