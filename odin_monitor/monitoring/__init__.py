"""Production monitoring for ODIN detectors: score log, Evidently reports, alerts.

Dependency direction: ``odin_monitor.monitoring`` may import the core, the core
never imports monitoring. Evidently and scipy are only imported here.
"""

from __future__ import annotations

from odin_monitor.monitoring.alerts import (
    Alert,
    BinomialSpikeRule,
    CusumRule,
    evaluate_rules,
)
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.errors import (
    BatchIdConflictError,
    BatchVanishedError,
    ConfigError,
    DeliveryError,
    InvalidBatchError,
    MonitoringError,
    ReportWriteError,
    ScoreLogError,
)
from odin_monitor.monitoring.notifiers import (
    JsonlNotifier,
    LogNotifier,
    MlflowNotifier,
    WebhookNotifier,
)
from odin_monitor.monitoring.pipeline import MonitorConfig, process_batch
from odin_monitor.monitoring.result import (
    EXIT_ALERT,
    EXIT_DEGRADED,
    EXIT_OK,
    EXIT_QUARANTINED,
    BatchResult,
    combined_exit_code,
    exit_code,
)
from odin_monitor.monitoring.schema import ModelRef, validate_scores
from odin_monitor.monitoring.scorelog import ScoreLog

__all__ = [
    "EXIT_ALERT",
    "EXIT_DEGRADED",
    "EXIT_OK",
    "EXIT_QUARANTINED",
    "Alert",
    "BatchIdConflictError",
    "BatchRecord",
    "BatchResult",
    "BatchVanishedError",
    "BinomialSpikeRule",
    "ConfigError",
    "CusumRule",
    "DeliveryError",
    "InvalidBatchError",
    "JsonlNotifier",
    "LogNotifier",
    "MlflowNotifier",
    "ModelRef",
    "MonitorConfig",
    "MonitoringError",
    "ReportWriteError",
    "ScoreLog",
    "ScoreLogError",
    "WebhookNotifier",
    "combined_exit_code",
    "evaluate_rules",
    "exit_code",
    "process_batch",
    "validate_scores",
]
