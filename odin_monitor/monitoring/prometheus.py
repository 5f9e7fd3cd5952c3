"""The score log as Prometheus metrics: counters rebuilt from the log, served on /metrics.

:class:`MetricsState` reads the score log incrementally (batches after the last one
it saw, quarantine rows after the last id) and keeps plain counts; built from an
empty state it replays the whole log, so after a restart every counter is back
where it was and a ``rate()`` never sees a bogus reset. :class:`OdinCollector` reads
the new rows on each scrape (whoever wrote them: this monitor or another process)
and exposes:

* ``odin_images_scored_total``, ``odin_images_ood_total`` (``model``, ``version``,
  ``predicted_class``);
* ``odin_batches_total`` (``model``, ``version``, ``status`` = ``ok``, ``alert`` or
  ``quarantined``);
* gauges of the last batch: ``odin_batch_ood_rate``, ``odin_batch_p_value`` (one-sided
  binomial test against ``1 − tpr_target``), ``odin_cusum_statistic``,
  ``odin_last_batch_timestamp_seconds``; and ``odin_expected_ood_rate`` (``1 −
  tpr_target``, for alerting rules);
* the histogram ``odin_spread_score`` (buckets at quantiles of the model's
  in-distribution reference and at δ in spread units);
* ``odin_calibration_info`` (``temperature``, ``epsilon``, ``delta``, ``tpr_target``,
  ``calibration_sha256``, ``alias``; value 1) for the model being monitored.

The counters of a model the collector is told about (``models=``) exist at 0 from
the first scrape: one series per predicted class ``0..n_classes-1`` and per batch
status. Without them a series would appear with the first batch's count already in
it, and ``rate()``/``increase()`` (which need two samples) would miss that batch.

:func:`serve_metrics` serves them with ``prometheus_client`` on 127.0.0.1 by default.

Example:
    >>> import tempfile, os
    >>> from odin_monitor.monitoring.scorelog import ScoreLog
    >>> state = MetricsState()
    >>> state.update(ScoreLog(os.path.join(tempfile.mkdtemp(), "s.db")))
    0
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from odin_monitor.monitoring.alerts import CusumRule, Rule
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.errors import ScoreLogError
from odin_monitor.monitoring.schema import ModelRef
from odin_monitor.monitoring.scorelog import ScoreLog
from odin_monitor.monitoring.scorelog_db import BATCH_COLUMNS, batch_record
from odin_monitor.monitoring.stats import binomial_pvalue

#: Quantiles of the reference spread scores used as histogram buckets (with δ).
BUCKET_QUANTILES = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)

Key = tuple[str, str]
"""``(model, version)``."""

#: The ``status`` label values of ``odin_batches_total``.
BATCH_STATUSES = ("ok", "alert", "quarantined")


def spread_buckets(reference_spread: np.ndarray, threshold_spread: float) -> tuple[float, ...]:
    """Histogram bounds: quantiles of the reference spread scores and δ, sorted, distinct.

    Example:
        >>> spread_buckets(np.arange(101.0), 4.5)[:4]
        (1.0, 2.0, 4.5, 5.0)
    """
    values = [float(threshold_spread)]
    finite = reference_spread[np.isfinite(reference_spread)]
    if finite.size:
        values += [float(v) for v in np.quantile(finite, BUCKET_QUANTILES)]
    return tuple(sorted({float(f"{v:.6g}") for v in values}))


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: np.ndarray  # per bucket (not cumulative), the last one +Inf
    total: float = 0.0

    def observe(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        idx = np.searchsorted(np.asarray(self.bounds), values, side="left")
        self.counts += np.bincount(idx, minlength=len(self.bounds) + 1)
        self.total += float(values.sum())


@dataclass
class MetricsState:
    """Counts and last-batch values, brought up to date from a score log by :meth:`update`.

    Args:
        cusum: The CUSUM rule whose statistic is exported (None: not exported).
    """

    cusum: CusumRule | None = None
    last_seq: int = 0
    last_quarantine_id: int = 0
    scored: dict[tuple[str, str, str], int] = field(default_factory=dict)
    ood: dict[tuple[str, str, str], int] = field(default_factory=dict)
    batches: dict[tuple[str, str, str], int] = field(default_factory=dict)
    ood_rate: dict[Key, float] = field(default_factory=dict)
    p_value: dict[Key, float] = field(default_factory=dict)
    expected: dict[Key, float] = field(default_factory=dict)
    last_ts: dict[Key, float] = field(default_factory=dict)
    cusum_stat: dict[Key, float] = field(default_factory=dict)
    histograms: dict[Key, _Histogram] = field(default_factory=dict)
    _cusum_s: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def declare(self, model: ModelRef) -> None:
        """Start the counters of ``model`` at 0 (kept where they already count).

        Every batch status, and every predicted class ``0..K-1`` when
        ``model.n_classes`` (K) is known, so that the first batch is an increase.

        Example:
            >>> state = MetricsState()
            >>> state.declare(ModelRef("m", "1", "0" * 64, 0.1, 2.0, 0.95, n_classes=3))
            >>> sorted(state.scored.items())
            [(('m', '1', '0'), 0), (('m', '1', '1'), 0), (('m', '1', '2'), 0)]
            >>> state.batches[("m", "1", "quarantined")]
            0
        """
        for status in BATCH_STATUSES:
            self.batches.setdefault((model.name, model.version, status), 0)
        for cls in range(model.n_classes or 0):
            label = (model.name, model.version, str(cls))
            self.scored.setdefault(label, 0)
            self.ood.setdefault(label, 0)

    def update(self, log: ScoreLog) -> int:
        """Read what the log gained since the last call; returns the new batches' count."""
        with log._connect() as con:
            rows = con.execute(
                f"SELECT {BATCH_COLUMNS} FROM batches WHERE seq > ? ORDER BY seq",
                (self.last_seq,),
            ).fetchall()
            records = [batch_record(r) for r in rows]
            alerted = self._alerted(con, records)
            for rec in records:
                self._add_batch(con, log, rec, rec.batch_id in alerted)
                self.last_seq = rec.seq
            for qid, name, version in con.execute(
                "SELECT id, model_name, model_version FROM quarantine WHERE id > ? ORDER BY id",
                (self.last_quarantine_id,),
            ).fetchall():
                key = (name or "", version or "", "quarantined")
                self.batches[key] = self.batches.get(key, 0) + 1
                self.last_quarantine_id = int(qid)
        return len(records)

    @staticmethod
    def _alerted(con: Any, records: Sequence[BatchRecord]) -> set[str]:
        """Batch ids among ``records`` that a rule fired on."""
        if not records:
            return set()
        ids = {r.batch_id for r in records}
        out = set()
        for (payload,) in con.execute("SELECT payload FROM alerts"):
            alert = json.loads(payload)
            if alert.get("status", "firing") == "firing" and alert["batch_ids"][-1] in ids:
                out.add(alert["batch_ids"][-1])
        return out

    def _add_batch(self, con: Any, log: ScoreLog, rec: BatchRecord, alerted: bool) -> None:
        m = rec.model
        key = (m.name, m.version)
        for cls, n, n_ood in con.execute(
            "SELECT predicted_class, COUNT(*), SUM(is_ood) FROM scores WHERE batch_id = ?"
            " GROUP BY predicted_class",
            (rec.batch_id,),
        ):
            label = (m.name, m.version, str(cls))
            self.scored[label] = self.scored.get(label, 0) + int(n)
            self.ood[label] = self.ood.get(label, 0) + int(n_ood or 0)
        status = (m.name, m.version, "alert" if alerted else "ok")
        self.batches[status] = self.batches.get(status, 0) + 1
        self.ood_rate[key] = rec.ood_rate
        self.expected[key] = m.expected_ood_rate
        self.p_value[key] = binomial_pvalue(rec.n_ood, rec.n_images, m.expected_ood_rate)
        self.last_ts[key] = datetime.fromisoformat(rec.created_at).timestamp()
        if self.cusum is not None:
            ckey = (m.name, m.version, m.calibration_sha256)
            k = self.cusum.reference_value(m.expected_ood_rate)
            s = max(0.0, self._cusum_s.get(ckey, 0.0) + rec.n_ood - k * rec.n_images)
            self.cusum_stat[key] = s
            self._cusum_s[ckey] = 0.0 if s > self.cusum.h else s  # restart after an alarm
        spread = np.array(
            [
                np.nan if v is None else v
                for (v,) in con.execute(
                    "SELECT spread_score FROM scores WHERE batch_id = ?", (rec.batch_id,)
                )
            ],
            dtype=float,
        )
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = self._new_histogram(log, m)
        hist.observe(spread)

    @staticmethod
    def _new_histogram(log: ScoreLog, model: ModelRef) -> _Histogram:
        try:
            reference = log.read_reference(model)["spread_score"].to_numpy(dtype=float)
        except ScoreLogError:
            reference = np.array([], dtype=float)
        bounds = spread_buckets(reference, model.threshold_spread)
        return _Histogram(bounds, np.zeros(len(bounds) + 1, dtype=np.int64))


def calibration_labels(
    model: ModelRef, *, epsilon: float | None, alias: str | None
) -> dict[str, str]:
    """The labels of ``odin_calibration_info`` for a monitored model.

    Example:
        >>> ref = ModelRef("m", "3", "ab" * 32, 0.1, 2.0, 0.95, temperature=1000.0)
        >>> calibration_labels(ref, epsilon=0.0014, alias="champion")["epsilon"]
        '0.0014'
    """
    return {
        "model": model.name,
        "version": model.version,
        "temperature": "" if model.temperature is None else f"{model.temperature:g}",
        "epsilon": "" if epsilon is None else f"{epsilon:g}",
        "delta": f"{model.threshold:.10g}",
        "tpr_target": f"{model.tpr_target:g}",
        "calibration_sha256": model.calibration_sha256,
        "alias": alias or "",
    }


class OdinCollector:
    """A ``prometheus_client`` collector over a score log (brought up to date per scrape).

    Args:
        log: The score log.
        rules: The monitor's rules (the first :class:`~.alerts.CusumRule` gives the
            exported CUSUM statistic).
        calibration: Labels of ``odin_calibration_info`` (:func:`calibration_labels`).
        models: Models whose counters start at 0 before their first batch
            (:meth:`MetricsState.declare`): the monitored one.
    """

    def __init__(
        self,
        log: ScoreLog,
        *,
        rules: Sequence[Rule] = (),
        calibration: dict[str, str] | None = None,
        models: Sequence[ModelRef] = (),
    ) -> None:
        self.log = log
        cusum = next((r for r in rules if isinstance(r, CusumRule)), None)
        self.state = MetricsState(cusum=cusum)
        for model in models:
            self.state.declare(model)
        self.calibration = dict(calibration or {})
        self._lock = threading.Lock()
        self.state.update(log)  # rebuilt from the log before the first scrape

    def collect(self) -> Iterator[Any]:
        """Metric families for a scrape."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        with self._lock:
            self.state.update(self.log)
            s = self.state
            per_class = ["model", "version", "predicted_class"]
            mv = ["model", "version"]
            scored = CounterMetricFamily(
                "odin_images_scored", "Images scored by the ODIN detector.", labels=per_class
            )
            for k, v in sorted(s.scored.items()):
                scored.add_metric(list(k), v)
            ood = CounterMetricFamily(
                "odin_images_ood", "Images flagged out-of-distribution.", labels=per_class
            )
            for k, v in sorted(s.ood.items()):
                ood.add_metric(list(k), v)
            batches = CounterMetricFamily(
                "odin_batches",
                "Monitoring batches by outcome (ok, alert, quarantined).",
                labels=[*mv, "status"],
            )
            for k, v in sorted(s.batches.items()):
                batches.add_metric(list(k), v)
            yield from (scored, ood, batches)
            gauges: list[tuple[str, str, dict[Key, float]]] = [
                ("odin_batch_ood_rate", "OOD rate of the last batch.", s.ood_rate),
                (
                    "odin_batch_p_value",
                    "One-sided binomial p-value of the last batch's OOD count.",
                    s.p_value,
                ),
                ("odin_expected_ood_rate", "Expected OOD rate, 1 - tpr_target.", s.expected),
                (
                    "odin_last_batch_timestamp_seconds",
                    "Time of the last batch (seconds since the epoch).",
                    s.last_ts,
                ),
            ]
            if s.cusum is not None:
                gauges.append(
                    (
                        "odin_cusum_statistic",
                        "Binomial CUSUM statistic after the last batch.",
                        s.cusum_stat,
                    )
                )
            for name, doc, values in gauges:
                g = GaugeMetricFamily(name, doc, labels=mv)
                for key, value in sorted(values.items()):
                    g.add_metric(list(key), value)
                yield g
            hist = HistogramMetricFamily(
                "odin_spread_score", "Spread scores T*log(K*S) of scored images.", labels=mv
            )
            for hkey, h in sorted(s.histograms.items()):
                cumulative = np.cumsum(h.counts)
                buckets = [(f"{b:g}", float(c)) for b, c in zip(h.bounds, cumulative, strict=False)]
                buckets.append(("+Inf", float(cumulative[-1])))
                hist.add_metric(list(hkey), buckets, h.total)
            yield hist
            if self.calibration:
                info = GaugeMetricFamily(
                    "odin_calibration_info",
                    "Calibration of the monitored detector (T, epsilon, delta, TPR target).",
                    labels=list(self.calibration),
                )
                info.add_metric(list(self.calibration.values()), 1.0)
                yield info


def serve_metrics(collector: OdinCollector, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` of ``collector`` in a daemon thread; returns the HTTP server.

    Stop it with ``server.shutdown()``.

    Example:
        >>> # server = serve_metrics(OdinCollector(log, rules=cfg.rules, models=[ref]), 9108)
    """
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, _ = start_http_server(port, addr=addr, registry=registry)
    return server
