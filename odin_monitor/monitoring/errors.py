"""Exceptions raised by the monitoring subpackage.

Bad input and misuse raise a :class:`MonitoringError`, itself both the core's
:class:`odin_monitor.errors.OdinError` and a :class:`ValueError`, so callers can
catch bad input with a plain ``except ValueError``. A file that cannot be written
raises :class:`ReportWriteError`, an ``OdinError`` and an :class:`OSError`: the
input was fine, the disk was not. A batch that left the inbox before it was read
raises :class:`BatchVanishedError`, a :class:`FileNotFoundError`.
"""

from __future__ import annotations

from odin_monitor.errors import OdinError


class MonitoringError(OdinError, ValueError):
    """Base class of every error raised by ``odin_monitor.monitoring``."""


class InvalidBatchError(MonitoringError):
    """A batch (images or scores) cannot be read; the pipeline quarantines it."""


class ScoreLogError(MonitoringError):
    """The score log was used inconsistently (e.g. unknown reference, wrong schema)."""


class BatchIdConflictError(ScoreLogError):
    """A batch id already in the log was sent again with different content.

    Batch ids are idempotency keys: re-sending the same batch is a no-op, but a
    different batch under a known id would otherwise be silently dropped.
    """


class ConfigError(MonitoringError):
    """A monitoring parameter (alpha, CUSUM k/h, rates...) is out of range."""


class DeliveryError(MonitoringError):
    """A notifier could not deliver an alert (kept in the outbox and retried)."""


class BatchVanishedError(OdinError, FileNotFoundError):
    """A batch left the inbox between listing and reading (moved by someone else).

    Not a bad batch: there is nothing left to quarantine, so the monitor skips it.
    """


class ReportWriteError(OdinError, OSError):
    """A report file could not be written (read-only folder, full disk...).

    Nothing is left at the report's path: it holds the previous complete file, if
    any. ``errno`` and ``filename`` are those of the underlying :class:`OSError`.
    """

    def __init__(
        self, message: str, *, errno: int | None = None, filename: str | None = None
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0])
