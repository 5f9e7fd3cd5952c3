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
from odin_monitor.monitoring.errors import (
    ConfigError,
    DeliveryError,
    InvalidBatchError,
    MonitoringError,
    ScoreLogError,
)
from odin_monitor.monitoring.notifiers import (
    EXIT_ALERT,
    EXIT_DEGRADED,
    EXIT_OK,
    EXIT_QUARANTINED,
    JsonlNotifier,
    LogNotifier,
    MlflowNotifier,
    WebhookNotifier,
    exit_code,
)
from odin_monitor.monitoring.pipeline import BatchResult, MonitorConfig, process_batch
from odin_monitor.monitoring.schema import SCORE_COLUMNS, ModelRef, validate_scores
from odin_monitor.monitoring.scorelog import BatchRecord, ScoreLog

__all__ = [
    "EXIT_ALERT",
    "EXIT_DEGRADED",
    "EXIT_OK",
    "EXIT_QUARANTINED",
    "SCORE_COLUMNS",
    "Alert",
    "BatchRecord",
    "BatchResult",
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
    "ScoreLog",
    "ScoreLogError",
    "WebhookNotifier",
    "evaluate_rules",
    "exit_code",
    "process_batch",
    "validate_scores",
]
