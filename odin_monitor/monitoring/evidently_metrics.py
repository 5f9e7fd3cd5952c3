"""Custom Evidently 0.7 metrics: ``OdinOODRate``, ``OdinOODRateByClass``, ``OdinBinomialTest``.

Evidently stores metrics by bare class name (``evidently:metric_v2:<ClassName>``),
hence the distinctive ``Odin`` prefix.

Loading snapshots in a fresh process (``evidently ui``): Evidently parses a saved
snapshot into a ``SnapshotModel`` whose *polymorphic* fields (metric results,
bound tests, widgets) must resolve through its type-alias registry
(``evidently.pydantic_utils.TYPE_ALIASES``/``LOADED_TYPE_ALIASES``), while metric
parameters are kept as plain dicts. Both metrics therefore return Evidently's
built-in result types (``SingleValue``, ``ByLabelValue``) and attach their test
results with a built-in bound test (``lte`` on the rate, the exact decision-rule
equivalent of the binomial test), so snapshots load and the UI plots them even in
a process that never imports this module. The classes themselves register
their aliases on import (they are PolymorphicModel subclasses).

Evidently's dashboards plot metric values only, never test results, so
``OdinBinomialTest`` logs the test of each batch as values: the expected rate
``1 - tpr_target`` and the rate from which the test fails (the dashboard's
reference lines), the p-value, and ``SUCCESS``/``FAIL`` as 1/0.

δ has two units, named wherever it is shown: the ODIN score ``S`` (a softmax
probability, ``is_ood`` when ``S < δ``) and the spread score ``T·log(K·S)``,
the same threshold on a readable scale (:func:`describe_delta`).

Example:
    >>> from evidently import Report
    >>> report = Report([OdinOODRate(expected_rate=0.05, alpha=0.01)], include_tests=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from evidently.core.datasets import Dataset
from evidently.core.metric_types import (
    ByLabelCalculation,
    ByLabelMetric,
    ByLabelValue,
    MetricTestResult,
    SingleValue,
    SingleValueBoundTest,
    SingleValueCalculation,
    SingleValueMetric,
)
from evidently.core.report import Context
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.renderers.html_widgets import (
    CounterData,
    WidgetSize,
    counter,
    plotly_figure,
)
from evidently.legacy.tests.base_test import TestStatus
from evidently.tests import lte

from odin_monitor.monitoring.stats import binomial_pvalue, critical_count

#: Distinctive marker placed in widget titles (searchable in the HTML report).
WIDGET_MARKER = "ODIN OOD monitor"
#: The two units of δ, as they are named in reports, metric names and the dashboard.
ODIN_SCORE_UNIT = "ODIN score S"
SPREAD_SCORE_UNIT = "spread score T·log(K·S)"
#: Labels of :class:`OdinBinomialTest` values.
TEST_LABELS = ("expected_rate", "critical_rate", "p_value", "SUCCESS", "FAIL")


def describe_delta(threshold: float, threshold_spread: float | None) -> str:
    """δ in both units, named: ``δ = 0.1009 (ODIN score S) = 9.08 (spread score T·log(K·S))``.

    Args:
        threshold: δ in ODIN score units (``is_ood`` when ``odin_score < threshold``).
        threshold_spread: The same δ in spread-score units (None or NaN: unknown).

    Example:
        >>> describe_delta(0.100902, 9.0802)
        'δ = 0.100902 (ODIN score S) = 9.0802 (spread score T·log(K·S))'
        >>> describe_delta(0.5, None)
        'δ = 0.5 (ODIN score S)'
    """
    text = f"δ = {threshold:.6g} ({ODIN_SCORE_UNIT})"
    if threshold_spread is not None and np.isfinite(threshold_spread):
        text += f" = {threshold_spread:.6g} ({SPREAD_SCORE_UNIT})"
    return text


def binomial_decision(
    x: int, n: int, expected_rate: float, alpha: float
) -> tuple[float, int, bool]:
    """``(p-value, critical count, failed)`` of the one-sided binomial test of a batch.

    ``failed`` is ``p <= alpha``, which holds exactly when ``x >= critical count``.

    Example:
        >>> p, c, failed = binomial_decision(12, 100, 0.05, 0.01)
        >>> round(p, 4), c, failed
        (0.0043, 12, True)
    """
    p = binomial_pvalue(x, n, expected_rate)
    return p, critical_count(n, expected_rate, alpha), p <= alpha


def score_histogram(
    title: str,
    current: np.ndarray,
    reference: np.ndarray | None,
    threshold: float | None,
    score_name: str,
    delta_label: str | None = None,
) -> BaseWidgetInfo:
    """Plotly widget: reference vs current score histograms with δ marked.

    Args:
        title: Widget title (after :data:`WIDGET_MARKER`).
        current: Scores of the batch.
        reference: In-distribution scores (None: not drawn).
        threshold: δ in the units of ``score_name`` (where the line is drawn; None:
            unknown in these units, no line).
        score_name: The plotted score column.
        delta_label: How δ is named on the line (default ``δ = <threshold>``).

    Example:
        >>> w = score_histogram("t", np.array([1.0, 2.0]), None, 1.5, "spread_score")
        >>> w.type
        'big_graph'
    """
    fig = go.Figure()
    finite_cur = current[np.isfinite(current)]
    finite_ref = None if reference is None else reference[np.isfinite(reference)]
    # One set of bins for both, so the two shapes compare bar by bar.
    pooled = np.concatenate([finite_cur, finite_ref if finite_ref is not None else []])
    lo, hi = (float(pooled.min()), float(pooled.max())) if pooled.size else (0.0, 1.0)
    bins = go.histogram.XBins(
        start=lo, end=hi + 1e-9 * max(1.0, abs(hi)), size=(hi - lo) / 40 or 1.0
    )
    traces = [
        (finite_ref, "reference (in-distribution)", "#1f77b4"),
        (finite_cur, "current batch", "#ff7f0e"),
    ]
    for values, name, color in traces:
        if values is not None:
            fig.add_trace(
                go.Histogram(
                    x=values,
                    name=name,
                    histnorm="probability",
                    opacity=0.55,
                    xbins=bins,
                    marker_color=color,
                )
            )
    if threshold is not None:
        fig.add_vline(
            x=float(threshold),
            line_dash="dash",
            line_color="red",
            annotation_text=f"{delta_label or f'δ = {threshold:.6g}'} (OOD below)",
        )
    fig.update_layout(barmode="overlay", xaxis_title=score_name, yaxis_title="share of images")
    return plotly_figure(title=f"{WIDGET_MARKER}: {title}", figure=fig, size=WidgetSize.FULL)


def _scores(data: Dataset, column: str) -> np.ndarray:
    return data.column(column).data.to_numpy(dtype=float)


class OdinOODRate(SingleValueMetric):
    """Share of the batch flagged OOD, tested against the expected rate.

    Default test (with ``Report(..., include_tests=True)`` and no explicit
    ``tests``): one-sided binomial test ``H0: rate <= expected_rate`` at level
    ``alpha``; FAIL when ``p <= alpha``. The widget plots ``score_column`` with δ
    drawn in its units and named in both (:func:`describe_delta`).

    Example:
        >>> OdinOODRate(expected_rate=0.05, alpha=0.01).alpha
        0.01
    """

    column: str = "is_ood"
    """Boolean OOD flag column."""
    expected_rate: float = 0.05
    """OOD rate on in-distribution traffic, ``1 - tpr_target``."""
    alpha: float = 0.01
    """Significance level of the binomial test."""
    score_column: str = "spread_score"
    """Score plotted in the widget: ``spread_score`` or ``odin_score``."""
    threshold: float = 0.0
    """δ in ODIN score units (``is_ood`` when ``odin_score < threshold``)."""
    threshold_spread: float | None = None
    """The same δ in spread-score units ``T·log(K·S)`` (needed to plot ``spread_score``)."""


class OdinOODRateCalculation(SingleValueCalculation[OdinOODRate]):
    """Computes :class:`OdinOODRate`."""

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> tuple[SingleValue, SingleValue | None]:
        """Rate on current (and reference) data, widget and binomial test."""
        m = self.metric
        flags = current_data.column(m.column).data.to_numpy().astype(bool)
        n, x = int(flags.size), int(flags.sum())
        result = self.result(x / n)
        ref_result = None
        ref_scores = None
        if reference_data is not None:
            ref_flags = reference_data.column(m.column).data.to_numpy().astype(bool)
            ref_result = self.result(float(ref_flags.mean()))
            ref_scores = _scores(reference_data, m.score_column)
        result.widget = [
            score_histogram(
                f"OOD rate {x}/{n} = {x / n:.3f} (expected {m.expected_rate:.3f}), "
                + describe_delta(m.threshold, m.threshold_spread),
                _scores(current_data, m.score_column),
                ref_scores,
                _threshold_in(m.score_column, m.threshold, m.threshold_spread),
                m.score_column,
                delta_label=describe_delta(m.threshold, m.threshold_spread),
            )
        ]
        if m.tests is None and context.configuration.include_tests:
            result.set_tests([self._binomial_test(x, n)])
        return result, ref_result

    def _binomial_test(self, x: int, n: int) -> MetricTestResult:
        m = self.metric
        p, c, failed = binomial_decision(x, n, m.expected_rate, m.alpha)
        return MetricTestResult(
            id="odin_ood_rate_binomial",
            name="ODIN OOD rate: one-sided binomial test",
            description=(
                f"OOD rate {x / n:.4f} ({x}/{n}) vs expected {m.expected_rate:.4f}: "
                f"p = {p:.3g} {'<=' if failed else '>'} alpha = {m.alpha:g} "
                f"(fails from {c} flagged images)."
            ),
            metric_config=self.to_metric_config(),
            test_config={
                "alpha": m.alpha,
                "expected_rate": m.expected_rate,
                "p_value": p,
                "critical_count": c,
            },
            status=TestStatus.FAIL if failed else TestStatus.SUCCESS,
            # built-in, decision-equivalent bound test: rate <= (c - 1) / n <=> p > alpha
            bound_test=SingleValueBoundTest(
                test=lte((c - 1) / n).for_metric(), metric_fingerprint=m.metric_id
            ),
        )

    def display_name(self) -> str:
        """Title shown in reports: the flag and δ in both units."""
        m = self.metric
        return f"ODIN OOD rate ({m.column}: {describe_delta(m.threshold, m.threshold_spread)})"


def _threshold_in(
    score_column: str, threshold: float, threshold_spread: float | None
) -> float | None:
    """δ in the units of ``score_column``, where the histogram draws it (None: unknown)."""
    if score_column == "odin_score":
        return float(threshold)
    if score_column == "spread_score":
        if threshold_spread is None or not np.isfinite(threshold_spread):
            return None
        return float(threshold_spread)
    raise ValueError(
        f"Expected score_column 'spread_score' or 'odin_score', but got {score_column!r}."
    )


class OdinOODRateByClass(ByLabelMetric):
    """OOD rate per predicted class (labels are the class indices).

    Example:
        >>> OdinOODRateByClass().class_column
        'predicted_class'
    """

    column: str = "is_ood"
    """Boolean OOD flag column."""
    class_column: str = "predicted_class"
    """Predicted class column."""
    expected_rate: float = 0.05
    """OOD rate on in-distribution traffic (drawn as a line)."""


def _rates_by_class(data: Dataset, flag: str, cls: str) -> dict[Any, float]:
    frame = pd.DataFrame(
        {"f": data.column(flag).data.to_numpy().astype(bool), "c": data.column(cls).data.to_numpy()}
    )
    rates = frame.groupby("c")["f"].mean()
    return {int(k): float(v) for k, v in rates.items()}


class OdinOODRateByClassCalculation(ByLabelCalculation[OdinOODRateByClass]):
    """Computes :class:`OdinOODRateByClass`."""

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> tuple[ByLabelValue, ByLabelValue | None]:
        """Per-class rates on current (and reference) data with a bar widget."""
        m = self.metric
        cur = _rates_by_class(current_data, m.column, m.class_column)
        ref = (
            None
            if reference_data is None
            else _rates_by_class(reference_data, m.column, m.class_column)
        )
        result = self.result(cur)
        ref_result = None if ref is None else self.result(ref)
        fig = go.Figure()
        if ref is not None:
            fig.add_trace(
                go.Bar(
                    x=[str(k) for k in ref],
                    y=list(ref.values()),
                    name="reference (in-distribution)",
                )
            )
        fig.add_trace(go.Bar(x=[str(k) for k in cur], y=list(cur.values()), name="current batch"))
        fig.add_hline(
            y=m.expected_rate,
            line_dash="dash",
            line_color="red",
            annotation_text=f"expected {m.expected_rate:.3f}",
        )
        fig.update_layout(
            barmode="group",
            xaxis_title="predicted class",
            yaxis_title="OOD rate",
            xaxis_type="category",
        )
        result.widget = [
            plotly_figure(
                title=f"{WIDGET_MARKER}: OOD rate by predicted class",
                figure=fig,
                size=WidgetSize.FULL,
            )
        ]
        return result, ref_result

    def display_name(self) -> str:
        """Title shown in reports."""
        return "ODIN OOD rate by predicted class"


class OdinBinomialTest(ByLabelMetric):
    """The binomial test of :class:`OdinOODRate` as values the dashboard can plot.

    Labels (:data:`TEST_LABELS`): ``expected_rate`` (``1 - tpr_target``),
    ``critical_rate`` (``c / n``: the test fails from this OOD rate on),
    ``p_value``, and ``SUCCESS``/``FAIL`` (1 for the outcome, 0 for the other).
    The decision is :func:`binomial_decision`, the one the report's test takes.

    Example:
        >>> OdinBinomialTest(expected_rate=0.05, alpha=0.01).column
        'is_ood'
    """

    column: str = "is_ood"
    """Boolean OOD flag column."""
    expected_rate: float = 0.05
    """OOD rate on in-distribution traffic, ``1 - tpr_target``."""
    alpha: float = 0.01
    """Significance level of the binomial test."""


class OdinBinomialTestCalculation(ByLabelCalculation[OdinBinomialTest]):
    """Computes :class:`OdinBinomialTest`."""

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> tuple[ByLabelValue, None]:
        """Test values of the current batch (none for the reference) with a counter widget."""
        m = self.metric
        flags = current_data.column(m.column).data.to_numpy().astype(bool)
        n, x = int(flags.size), int(flags.sum())
        p, c, failed = binomial_decision(x, n, m.expected_rate, m.alpha)
        values: dict[Any, float] = {
            "expected_rate": float(m.expected_rate),
            "critical_rate": c / n,
            "p_value": float(p),
            "SUCCESS": 0.0 if failed else 1.0,
            "FAIL": 1.0 if failed else 0.0,
        }
        result = self.result(values)
        result.widget = [
            counter(
                title=f"{WIDGET_MARKER}: binomial test of the OOD rate",
                counters=[
                    CounterData("outcome", "FAIL" if failed else "SUCCESS"),
                    CounterData("OOD images", f"{x}/{n} = {x / n:.4f}"),
                    CounterData("expected rate 1 - tpr_target", f"{m.expected_rate:.4f}"),
                    CounterData("fails from", f"{c} images = {c / n:.4f}"),
                    CounterData("p-value", f"{p:.3g} (alpha {m.alpha:g})"),
                ],
            )
        ]
        return result, None

    def display_name(self) -> str:
        """Title shown in reports."""
        return "ODIN OOD rate: binomial test values"
