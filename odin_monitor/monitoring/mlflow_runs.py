"""MLflow runs of the monitoring loop: one finished run per batch, grouped per day.

:class:`MlflowNotifier` writes to the experiment ``odin-monitoring``:

* a **day run** per model version and UTC day of the batches, named
  ``<model> v<version> <YYYY-MM-DD>``, holding the day's totals as metrics
  (``n_batches``, ``n_images``, ``n_ood``, ``ood_rate``, ``n_alerted``);
* under it, a **batch run** per batch, named ``<model> v<version> batch <id>``,
  holding the batch's figures as metrics (``n_images``, ``n_ood``, ``ood_rate``,
  ``expected_rate``, ``p_value`` of the one-sided binomial test, ``alert`` 0/1, and
  ``<rule>_statistic`` of each alert, e.g. the CUSUM ``S_t`` as ``cusum_statistic``),
  tags (``odin.model``, ``odin.version``, ``odin.calibration`` (sha256),
  ``odin.batch``, ``odin.day``, ``odin.source``, ``odin.alerts`` with the rules that
  fired and ``odin.alert.<rule>`` with each alert's id) and a summary of the figures
  and alerts as its description.

Every run is FINISHED as soon as it is written: MLflow accepts writes to a
finished run, so none is ever left RUNNING. Runs are found again by a tag
(``odin.key``, a hash of model, version and batch id or day) before
one is created, so a retried write, e.g. an alert the outbox sends again, never
adds a second run. ``mlflow`` is imported lazily, only here.

Example:
    >>> batch_run_name("resnet", "3", "sha256-0123456789abcdef01234567")
    'resnet v3 batch 0123456789ab'
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.batches import BatchRecord
from odin_monitor.monitoring.errors import ConfigError
from odin_monitor.monitoring.stats import binomial_pvalue

EXPERIMENT = "odin-monitoring"
"""Default experiment of the monitoring runs."""

TAG = "odin."
"""Prefix of every tag this module sets (short: the MLflow UI cuts long tag names)."""

_ALERTS_HEADING = "\n\nAlerts:\n"


# --------------------------------------------------------------------------- pure helpers


def short_batch_id(batch_id: str) -> str:
    """A batch id short enough for a run name: 12 hex digits of a content hash.

    Example:
        >>> short_batch_id("sha256-0123456789abcdef01234567"), short_batch_id("2026-12-02T10")
        ('0123456789ab', '2026-12-02T10')
    """
    if batch_id.startswith("sha256-"):
        return batch_id[len("sha256-") :][:12]
    return batch_id if len(batch_id) <= 24 else batch_id[:23] + "…"


def batch_run_name(model_name: str, model_version: str, batch_id: str) -> str:
    """Name of a batch run, e.g. ``resnet v3 batch 0123456789ab``."""
    return f"{model_name} v{model_version} batch {short_batch_id(batch_id)}"


def day_run_name(model_name: str, model_version: str, day: str) -> str:
    """Name of a day run, e.g. ``resnet v3 2026-12-02``.

    Example:
        >>> day_run_name("resnet", "3", "2026-12-02")
        'resnet v3 2026-12-02'
    """
    return f"{model_name} v{model_version} {day}"


def run_key(kind: str, model_name: str, model_version: str, name: str) -> str:
    """Search key of a run (a hash: batch ids and model names may hold any character).

    Example:
        >>> run_key("batch", "m", "1", "b0") == run_key("batch", "m", "1", "b0")
        True
    """
    text = "\x1f".join([kind, model_name, model_version, name])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_utc(timestamp: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime (a naive one is taken as UTC).

    Raises:
        ConfigError: The text is not an ISO-8601 timestamp.

    Example:
        >>> parse_utc("2026-12-02T23:30:00-02:00").isoformat()
        '2026-12-03T01:30:00+00:00'
    """
    try:
        when = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"Expected an ISO-8601 timestamp such as 2026-12-02T10:00:00+00:00 but got "
            f"{timestamp!r}."
        ) from err
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def batch_figures(n_images: int, n_ood: int, expected_rate: float) -> dict[str, float]:
    """Metrics of one batch: counts, OOD rate, expected rate and the binomial p-value.

    ``p_value`` is ``P(X >= n_ood)`` for ``X ~ Bin(n_images, expected_rate)``, the
    spike rule's test.

    Example:
        >>> figures = batch_figures(100, 5, 0.05)
        >>> figures["ood_rate"], round(figures["p_value"], 3)
        (0.05, 0.564)
    """
    return {
        "n_images": float(n_images),
        "n_ood": float(n_ood),
        "ood_rate": n_ood / n_images,
        "expected_rate": float(expected_rate),
        "p_value": binomial_pvalue(n_ood, n_images, expected_rate),
    }


def batch_summary(figures: Mapping[str, float]) -> str:
    """One sentence on a batch's figures (its run description).

    Example:
        >>> batch_summary(batch_figures(200, 20, 0.05))
        '20 of 200 images OOD (10.0%; expected 5.0%), one-sided binomial p = 0.00266.'
    """
    if "n_images" not in figures:
        return "Batch figures not written yet (only its alerts were)."
    return (
        f"{figures['n_ood']:.0f} of {figures['n_images']:.0f} images OOD "
        f"({figures['ood_rate']:.1%}; expected {figures['expected_rate']:.1%}), "
        f"one-sided binomial p = {figures['p_value']:.3g}."
    )


def with_alert_line(note: str | None, summary: str | None, line: str | None = None) -> str:
    """A batch run description: ``summary`` (or the old one) and its alert lines.

    Args:
        note: The current description (None for a new run).
        summary: A new first paragraph; None keeps the current one.
        line: An alert line to add unless already there.

    Example:
        >>> note = with_alert_line(None, None, "[cusum] up")
        >>> with_alert_line(note, "20 of 200 images OOD.", "[cusum] up")
        '20 of 200 images OOD.\\n\\nAlerts:\\n- [cusum] up'
    """
    head, _, tail = (note or "").partition(_ALERTS_HEADING)
    lines = [x for x in tail.split("\n") if x]
    if line is not None and f"- {line}" not in lines:
        lines.append(f"- {line}")
    head = summary if summary is not None else (head or batch_summary({}))
    return head + (_ALERTS_HEADING + "\n".join(lines) if lines else "")


def day_totals(batches: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """A day run's metrics from the metrics of its batch runs.

    Batch runs without figures (only an alert written so far) count as batches and
    alerts but add no images.

    Example:
        >>> day_totals([{"n_images": 100.0, "n_ood": 5.0, "alert": 0.0},
        ...             {"n_images": 100.0, "n_ood": 15.0, "alert": 1.0}])
        {'n_batches': 2.0, 'n_images': 200.0, 'n_ood': 20.0, 'ood_rate': 0.1, 'n_alerted': 1.0}
    """
    rows = list(batches)
    n = sum(r.get("n_images", 0.0) for r in rows)
    x = sum(r.get("n_ood", 0.0) for r in rows)
    totals = {
        "n_batches": float(len(rows)),
        "n_images": n,
        "n_ood": x,
        "ood_rate": x / n if n else math.nan,
        "n_alerted": float(sum(1 for r in rows if r.get("alert", 0.0) >= 1.0)),
    }
    return {k: v for k, v in totals.items() if not math.isnan(v)}


def day_summary(model_name: str, model_version: str, day: str, totals: Mapping[str, float]) -> str:
    """The description of a day run.

    Example:
        >>> day_summary("m", "1", "2026-12-02", day_totals([{"n_images": 10.0, "n_ood": 1.0}]))
        'm v1 on 2026-12-02: 1 batch, 10 images, 10.0% OOD, 0 batches alerted.'
    """
    b = int(totals.get("n_batches", 0))
    a = int(totals.get("n_alerted", 0))
    rate = f", {totals['ood_rate']:.1%} OOD" if "ood_rate" in totals else ""
    return (
        f"{model_name} v{model_version} on {day}: {b} batch{'es' if b != 1 else ''}, "
        f"{totals.get('n_images', 0):.0f} images{rate}, "
        f"{a} batch{'es' if a != 1 else ''} alerted."
    )


# --------------------------------------------------------------------------- the notifier


class MlflowNotifier:
    """Writes each batch and its alerts to finished MLflow runs (one per batch, per day).

    :meth:`record_batch` writes the batch run (figures, ``alert`` = 0 unless an
    alert came first); :meth:`send` adds an alert to its batch's run (``alert`` = 1,
    ``<rule>_statistic``, the rule in the tags and description), creating the run
    from the alert if the batch's own write failed. Both refresh the day run's
    totals and leave every run FINISHED. Writes are idempotent per batch id and
    alert id; within a process they are serialised (the outbox sends from a
    background thread).

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///mlflow.db``.
        experiment_name: Experiment of the monitoring runs (created if missing).
        name: Outbox key of this notifier.

    Example:
        >>> MlflowNotifier("sqlite:///mlflow.db").experiment_name
        'odin-monitoring'
    """

    def __init__(
        self, tracking_uri: str, experiment_name: str = EXPERIMENT, name: str = "mlflow"
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.name = name
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ MLflow access

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self, client: Any | None = None) -> str:
        """Id of the monitoring experiment (created on first use).

        Raises:
            ConfigError: The experiment exists but is deleted.
        """
        client = client or self._client()
        exp = client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            return str(client.create_experiment(self.experiment_name))
        if exp.lifecycle_stage != "active":
            raise ConfigError(
                f"Expected the MLflow experiment {self.experiment_name!r} to be active but "
                f"it is {exp.lifecycle_stage}; restore it (mlflow experiments restore "
                f"--experiment-id {exp.experiment_id}) or pick another experiment_name."
            )
        return str(exp.experiment_id)

    def _find(self, client: Any, exp_id: str, key: str) -> Any | None:
        runs = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{TAG}key` = '{key}'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0] if runs else None

    def find_batch_run(self, model_name: str, model_version: str, batch_id: str) -> Any | None:
        """The batch run of a batch (an ``mlflow.entities.Run``), or None.

        Example:
            >>> # run = notifier.find_batch_run("resnet", "3", result.batch_id)
        """
        client = self._client()
        key = run_key("batch", model_name, model_version, batch_id)
        return self._find(client, self.experiment_id(client), key)

    def _day_run(self, client: Any, exp_id: str, tags: dict[str, str], start: int) -> Any:
        name, version, day = (
            tags[f"{TAG}model"],
            tags[f"{TAG}version"],
            tags[f"{TAG}day"],
        )
        key = run_key("day", name, version, day)
        run = self._find(client, exp_id, key)
        if run is None:
            day_tags = {k: tags[k] for k in (f"{TAG}model", f"{TAG}version")}
            run = client.create_run(
                exp_id,
                start_time=start,
                run_name=day_run_name(name, version, day),
                tags={**day_tags, f"{TAG}day": day, f"{TAG}kind": "day", f"{TAG}key": key},
            )
            client.set_terminated(run.info.run_id, "FINISHED", end_time=start)
        return run

    def _batch_run(
        self, client: Any, exp_id: str, batch_id: str, tags: dict[str, str], start: int
    ) -> tuple[Any, Any]:
        """``(batch run, day run)``, created (FINISHED) when missing."""
        name, version = tags[f"{TAG}model"], tags[f"{TAG}version"]
        key = run_key("batch", name, version, batch_id)
        run = self._find(client, exp_id, key)
        if run is not None:
            parent_id = run.data.tags.get("mlflow.parentRunId")
            if parent_id is not None:
                return run, client.get_run(parent_id)
            # Someone removed the parent tag: file the run under its day again.
            tags = {**tags, **{k: v for k, v in run.data.tags.items() if k == f"{TAG}day"}}
            parent = self._day_run(client, exp_id, tags, int(run.info.start_time))
            client.set_tag(run.info.run_id, "mlflow.parentRunId", parent.info.run_id)
            return run, parent
        parent = self._day_run(client, exp_id, tags, start)
        run = client.create_run(
            exp_id,
            start_time=start,
            run_name=batch_run_name(name, version, batch_id),
            tags={
                **tags,
                f"{TAG}kind": "batch",
                f"{TAG}batch": batch_id,
                f"{TAG}key": key,
                "mlflow.parentRunId": parent.info.run_id,
            },
        )
        return run, parent

    def _write(
        self,
        client: Any,
        run: Any,
        parent: Any,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
    ) -> None:
        """Log metrics and tags, finish the batch run, refresh and finish its day run."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        # A batch is an instant: its run ends when it starts (at the batch's time), so
        # the day run spans its first to its last batch.
        start = int(run.info.start_time)
        client.set_terminated(run_id, "FINISHED", end_time=start)
        self._refresh_day(client, parent)

    def _refresh_day(self, client: Any, parent: Any) -> None:
        from mlflow.entities import Metric, RunTag

        parent_id = parent.info.run_id
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
            max_results=50000,
        )
        totals = day_totals(c.data.metrics for c in children)
        current = client.get_run(parent_id).data.metrics
        changed = {k: v for k, v in totals.items() if current.get(k) != v}
        now = int(time.time() * 1000)
        tags = parent.data.tags
        note = day_summary(tags[f"{TAG}model"], tags[f"{TAG}version"], tags[f"{TAG}day"], totals)
        step = int(totals["n_batches"])
        client.log_batch(
            parent_id,
            metrics=[Metric(k, v, now, step) for k, v in changed.items()],
            tags=[RunTag("mlflow.note.content", note)],
        )
        last = max([int(c.info.start_time) for c in children], default=0)
        client.set_terminated(parent_id, "FINISHED", end_time=max(last, parent.info.start_time))

    # ------------------------------------------------------------------ Notifier protocol

    def record_batch(self, record: BatchRecord) -> None:
        """Write the batch run of a committed batch (idempotent per batch id).

        Raises:
            mlflow.exceptions.MlflowException: The tracking server failed; the
                pipeline reports it in ``BatchResult.errors``.
        """
        model = record.model
        when = parse_utc(record.created_at)
        tags = {
            f"{TAG}model": model.name,
            f"{TAG}version": model.version,
            f"{TAG}calibration": model.calibration_sha256,
            f"{TAG}day": when.date().isoformat(),
            f"{TAG}source": record.source,
        }
        figures = batch_figures(record.n_images, record.n_ood, model.expected_ood_rate)
        with self._lock:
            client = self._client()
            exp_id = self.experiment_id(client)
            run, parent = self._batch_run(client, exp_id, record.batch_id, tags, _ms(when))
            have = run.data.metrics
            # An alert delivered first has set alert = 1 already: never overwrite it.
            metrics = {k: v for k, v in figures.items() if k not in have}
            if "alert" not in have:
                metrics["alert"] = 0.0
            note = with_alert_line(run.data.tags.get("mlflow.note.content"), batch_summary(figures))
            # The day stays the one the run was filed under (an alert may have come first).
            tags.pop(f"{TAG}day")
            self._write(client, run, parent, metrics, {**tags, "mlflow.note.content": note})

    def send(self, alert: Alert) -> None:
        """Add a firing alert to its newest batch's run (idempotent per alert id).

        A resolution (``status="resolved"``) is not written: the batch after it has
        ``alert`` = 0 anyway. If the batch's own write failed (no run yet), the run is
        created from the alert, at the alert's time and under its day (the alert does
        not carry the batch's timestamp); a spike alert also brings the batch's figures.
        """
        if alert.status != "firing":
            return
        batch_id = alert.batch_ids[-1]
        when = parse_utc(alert.created_at)
        tags = {
            f"{TAG}model": alert.model_name,
            f"{TAG}version": alert.model_version,
            f"{TAG}calibration": alert.calibration_sha256,
            f"{TAG}day": when.date().isoformat(),
        }
        with self._lock:
            client = self._client()
            exp_id = self.experiment_id(client)
            run, parent = self._batch_run(client, exp_id, batch_id, tags, _ms(when))
            have, run_tags = run.data.metrics, run.data.tags
            metrics: dict[str, float] = {}
            if run_tags.get(f"{TAG}alert.{alert.rule}") != alert.alert_id:
                metrics[f"{alert.rule}_statistic"] = alert.statistic
                if have.get("alert") != 1.0:
                    metrics["alert"] = 1.0
            if "n_images" not in have and len(alert.batch_ids) == 1:
                # The batch's own write failed: its figures are the alert's.
                metrics.update(batch_figures(alert.n_images, alert.n_ood, alert.expected_rate))
            rules = {k[len(f"{TAG}alert.") :] for k in run_tags if k.startswith(f"{TAG}alert.")}
            summary = batch_summary(metrics) if "n_images" in metrics else None
            self._write(
                client,
                run,
                parent,
                metrics,
                {
                    f"{TAG}alert.{alert.rule}": alert.alert_id,
                    f"{TAG}alerts": ",".join(sorted(rules | {alert.rule})),
                    "mlflow.note.content": with_alert_line(
                        run_tags.get("mlflow.note.content"), summary, alert.message
                    ),
                },
            )
