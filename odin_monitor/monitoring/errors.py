"""Exceptions raised by the monitoring subpackage.

All of them subclass :class:`MonitoringError`, itself both the core's
:class:`odin_monitor.errors.OdinError` and a :class:`ValueError`, so callers can
catch bad input with a plain ``except ValueError``.
"""

from __future__ import annotations

from odin_monitor.errors import OdinError


class MonitoringError(OdinError, ValueError):
    """Base class of every error raised by ``odin_monitor.monitoring``."""


class InvalidBatchError(MonitoringError):
    """A batch (images or scores) cannot be read; the pipeline quarantines it."""


class ScoreLogError(MonitoringError):
    """The score log was used inconsistently (e.g. unknown reference, wrong schema)."""


class ConfigError(MonitoringError):
    """A monitoring parameter (alpha, CUSUM k/h, rates...) is out of range."""


class DeliveryError(MonitoringError):
    """A notifier could not deliver an alert (kept in the outbox and retried)."""
