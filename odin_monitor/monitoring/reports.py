"""Build per-batch Evidently reports and store them in a local workspace.

One report per batch: :class:`~.evidently_metrics.OdinOODRate` (with its binomial
test), :class:`~.evidently_metrics.OdinBinomialTest` (the test as plottable
values), :class:`~.evidently_metrics.OdinOODRateByClass`, Evidently's built-in
``RowCount`` (the batch size) and ``ValueDrift`` on ``spread_score`` with an
explicit method: ``"ks"`` for batches of at most 1000 images, ``"wasserstein"``
(normed) above.

Each snapshot is saved as JSON (``Snapshot.dumps()``, a few hundred kB, reloadable
with ``evidently.core.report.Snapshot.load``) and, when asked (the pipeline asks
for batches that raise an alert, ``odin-monitor report`` always), as a standalone
HTML page (several MB: Plotly is inlined), each written atomically (a temporary
file in the same folder, fsync, rename: a full disk never leaves a truncated
report behind). It is also added to a local workspace, one project per
registered model name, whose description names the model version, T, ε and δ
in both units, with the panels of :func:`dashboard_panels`. Browse with
``evidently ui --workspace <dir>``.

Example:
    >>> drift_method_for(200), drift_method_for(5000)
    ('ks', 'wasserstein')
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import RowCount, ValueDrift
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
from evidently.sdk.panels import bar_plot_panel, line_plot_panel, pie_plot_panel, text_panel
from evidently.ui.workspace import Project, Workspace

from odin_monitor.monitoring.errors import ReportWriteError
from odin_monitor.monitoring.evidently_metrics import (
    OdinBinomialTest,
    OdinOODRate,
    OdinOODRateByClass,
    describe_delta,
)
from odin_monitor.monitoring.schema import ModelRef, validate_scores

#: Batch size up to which KS is used for score drift (Wasserstein above).
KS_MAX_BATCH = 1000
#: Title of the dashboard panel plotting the OOD rate per batch.
PANEL_TITLE = "ODIN OOD rate per batch"
#: Titles of the other dashboard panels.
MODEL_PANEL_TITLE = "Monitored model"
TEST_PANEL_TITLE = "ODIN binomial test per batch"
TEST_SHARE_PANEL_TITLE = "ODIN binomial test: batches shown"
CLASS_PANEL_TITLE = "ODIN OOD rate per predicted class"
SIZE_PANEL_TITLE = "Batch size"
#: The dashboard tab holding the panels.
DASHBOARD_TAB = "ODIN"
_DEFINITION = DataDefinition(
    numerical_columns=["odin_score", "spread_score", "msp"],
    categorical_columns=["predicted_class", "is_ood"],
)


def drift_method_for(n_current: int) -> str:
    """Drift method for a batch of ``n_current`` images: ks (<= 1000) else wasserstein."""
    return "ks" if n_current <= KS_MAX_BATCH else "wasserstein"


def _dataset(scores: pd.DataFrame) -> Dataset:
    return Dataset.from_pandas(scores.reset_index(drop=True), data_definition=_DEFINITION)


def build_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    model: ModelRef,
    *,
    alpha: float = 0.01,
    batch_id: str = "",
    timestamp: datetime | None = None,
    drift_threshold: float | None = None,
) -> Snapshot:
    """Run the monitoring report of one batch against the reference.

    Args:
        current: Scored batch (:data:`odin_monitor.columns.SCORE_COLUMNS`).
        reference: In-distribution validation scores of the same model version.
        model: Detector metadata; ``1 - tpr_target`` is the expected OOD rate.
        alpha: Level of the binomial OOD-rate test.
        batch_id: Stored in the snapshot name and metadata.
        timestamp: Snapshot timestamp (defaults to now); the dashboard's x axis.
        drift_threshold: Optional ValueDrift threshold (method default otherwise).

    Returns:
        The Evidently snapshot (tests included).

    Example:
        >>> # snap = build_report(batch_scores, reference_scores, model, alpha=0.01)
        >>> # snap.save_html("batch.html")
    """
    current = validate_scores(current)
    reference = validate_scores(reference)
    use_spread = bool(
        np.isfinite(current["spread_score"]).all() and np.isfinite(reference["spread_score"]).all()
    )
    metrics: list = [
        OdinOODRate(
            expected_rate=model.expected_ood_rate,
            alpha=alpha,
            score_column="spread_score" if use_spread else "odin_score",
            threshold=model.threshold,
            # without spread scores the model's spread δ is a placeholder: not shown
            threshold_spread=model.threshold_spread if use_spread else None,
        ),
        OdinBinomialTest(expected_rate=model.expected_ood_rate, alpha=alpha),
        OdinOODRateByClass(expected_rate=model.expected_ood_rate),
        RowCount(
            tests=[]
        ),  # the batch size; its default test (= reference size) means nothing here
    ]
    if use_spread:
        metrics.append(
            ValueDrift(
                column="spread_score",
                method=drift_method_for(len(current)),
                threshold=drift_threshold,
            )
        )
    meta = {
        "model_name": model.name,
        "model_version": model.version,
        "calibration_sha256": model.calibration_sha256,
        "batch_id": batch_id,
        "delta": describe_delta(model.threshold, model.threshold_spread if use_spread else None),
    }
    report = Report(metrics, metadata=meta, tags=[f"version:{model.version}"], include_tests=True)
    return report.run(
        _dataset(current),
        _dataset(reference),
        timestamp=timestamp,
        name=f"{model.name} v{model.version} batch {batch_id}",
    )


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part)[:120] or "_"


def report_paths(out_dir: str | Path, model: ModelRef, batch_id: str) -> tuple[Path, Path]:
    """Where :func:`save_report` writes a batch's HTML and JSON (known before writing)."""
    folder = Path(out_dir) / _safe(model.name) / _safe(model.version)
    return folder / f"{_safe(batch_id)}.html", folder / f"{_safe(batch_id)}.json"


def save_report(
    snapshot: Snapshot,
    out_dir: str | Path,
    model: ModelRef,
    batch_id: str,
    *,
    html: bool = True,
) -> tuple[Path | None, Path]:
    """Write ``<out>/<model>/<version>/<batch>.json`` (and ``.html``); return both paths.

    The JSON snapshot is small and always written; the standalone HTML page is
    several MB (Plotly inlined), so the pipeline asks for it only for batches that
    raise an alert. The texts are rendered first, then each file is written
    atomically (:func:`write_atomic`): a path holds either the complete new report
    or what it held before, never a truncated file.

    Args:
        snapshot: The batch's report.
        out_dir: Root of the report folders.
        model: Names the sub-folders.
        batch_id: Names the files.
        html: Also write the standalone HTML page.

    Returns:
        ``(html_path or None when not written, json_path)``.

    Raises:
        ReportWriteError: The folder cannot be created or a file cannot be written
            (read-only folder, full disk...), with the path and the reason.

    Example:
        >>> # html, js = save_report(snap, "mon/reports", model, "b1", html=False)
        >>> # html is None and js.name == "b1.json"
    """
    html_path, json_path = report_paths(out_dir, model, batch_id)
    page = snapshot.get_html_str(as_iframe=False) if html else None
    dump = snapshot.dumps()
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(json_path.parent, err, "create the report folder") from err
    if page is not None:
        write_atomic(html_path, page.encode("utf-8"))
    write_atomic(json_path, dump.encode("utf-8"))
    return (html_path if page is not None else None), json_path


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The temporary file is fsynced and renamed over ``path`` (``os.replace``, atomic
    on POSIX and Windows), then the folder is fsynced, so a crash or a full disk
    leaves ``path`` absent or unchanged, and no temporary file behind.

    Raises:
        ReportWriteError: With the path and the reason (errno kept).

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "r.json"
        >>> write_atomic(f, b"{}")
        >>> f.read_bytes()
        b'{}'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise _write_error(path, err) from err
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):  # the original error says more than this one
            tmp.unlink(missing_ok=True)
        raise _write_error(path, err) from err
    _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (it may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; best effort (not possible on every OS/filesystem)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, err: OSError, what: str = "write the report") -> ReportWriteError:
    reason = err.strerror or str(err)
    name = errno.errorcode.get(err.errno or 0, "")
    hint = {
        errno.ENOSPC: "free some disk space",
        errno.EROFS: "choose a writable --monitor-dir",
        errno.EACCES: "fix the folder's permissions or choose another --monitor-dir",
        errno.EPERM: "fix the folder's permissions or choose another --monitor-dir",
    }.get(err.errno or 0, "check the folder")
    return ReportWriteError(
        f"Expected to {what} at {path}, but the system refused: {reason}"
        f"{f' ({name})' if name else ''}. Nothing partial was left there; {hint}, then "
        "rebuild it with `odin-monitor report --batch-id ID`.",
        errno=err.errno,
        filename=str(path),
    )


def dashboard_panels(description: str) -> list[DashboardPanelPlot]:
    """The panels of a model's project, in order (ids are fresh on every call).

    * a text panel with ``description`` (the project's: model version, T, ε, δ);
    * OOD rate per batch, with the expected rate ``1 - tpr_target`` and the rate from
      which the binomial test fails (:class:`OdinBinomialTest` values) as lines;
    * the binomial test per batch (SUCCESS/FAIL bars) and over the batches shown (pie);
    * the OOD rate per predicted class (one line per class);
    * the batch size (Evidently's ``RowCount``).

    Example:
        >>> [p.title for p in dashboard_panels("model m v1")][:2]
        ['Monitored model', 'ODIN OOD rate per batch']
    """
    test = "OdinBinomialTest"
    outcome = [
        PanelMetric(legend="SUCCESS", metric=test, metric_labels={"label": "SUCCESS"}),
        PanelMetric(legend="FAIL", metric=test, metric_labels={"label": "FAIL"}),
    ]
    return [
        text_panel(title=MODEL_PANEL_TITLE, description=description),
        line_plot_panel(
            title=PANEL_TITLE,
            values=[
                PanelMetric(legend="OOD rate", metric="OdinOODRate"),
                PanelMetric(
                    legend="expected rate 1 − tpr_target",
                    metric=test,
                    metric_labels={"label": "expected_rate"},
                ),
                PanelMetric(
                    legend="binomial test fails from",
                    metric=test,
                    metric_labels={"label": "critical_rate"},
                ),
            ],
            description="Share of images flagged OOD (ODIN score S < δ) per batch, the rate "
            "expected on in-distribution traffic, and the rate from which the batch fails "
            "the one-sided binomial test",
        ),
        bar_plot_panel(
            title=TEST_PANEL_TITLE,
            values=outcome,
            description="Outcome of the one-sided binomial test of each batch's OOD rate "
            "(one bar per batch)",
            size="half",
            stacked=True,
        ),
        pie_plot_panel(
            title=TEST_SHARE_PANEL_TITLE,
            values=outcome,
            description="Batches that passed / failed the binomial test in the time range",
            size="half",
            aggregation="sum",
        ),
        line_plot_panel(
            title=CLASS_PANEL_TITLE,
            values=[PanelMetric(legend="class {{label}}", metric="OdinOODRateByClass")],
            description="Share of each predicted class's images flagged OOD, per batch",
        ),
        bar_plot_panel(
            title=SIZE_PANEL_TITLE,
            values=[PanelMetric(legend="images", metric="RowCount")],
            description="Number of images in each batch",
        ),
    ]


def _content(panel: DashboardPanelPlot) -> dict:
    return panel.dict(exclude={"id"})


def upgraded_dashboard(
    current: DashboardModel, wanted: list[DashboardPanelPlot], tab: str = DASHBOARD_TAB
) -> DashboardModel | None:
    """``current`` with ``wanted`` as the panels of ``tab``; None when it has them already.

    Panels are matched by title: ours (any of ``wanted``'s titles) are replaced in
    ``wanted``'s order when any differs, is missing or is extra; every other panel
    and tab is kept as it was. So reopening a project changes nothing, and a
    workspace written by an older version gains the new panels.

    Example:
        >>> empty = DashboardModel(tabs=[], panels=[])
        >>> full = upgraded_dashboard(empty, dashboard_panels("m v1"))
        >>> [p.title for p in full.panels][:2]
        ['Monitored model', 'ODIN OOD rate per batch']
        >>> upgraded_dashboard(full, dashboard_panels("m v1")) is None
        True
    """
    titles = {p.title for p in wanted}
    ours = [p for p in current.panels if p.title in titles]
    if [_content(p) for p in ours] == [_content(p) for p in wanted]:
        return None
    dropped = {p.id for p in ours}
    tabs = [
        DashboardTabModel(
            id=t.id, title=t.title, panels=[i for i in dict.fromkeys(t.panels) if i not in dropped]
        )
        for t in current.tabs
    ]
    home = next((t for t in tabs if t.title == tab), None)
    if home is None:
        home = DashboardTabModel(title=tab, panels=[])
        tabs.append(home)
    home.panels = [p.id for p in wanted] + home.panels
    panels = [p for p in current.panels if p.id not in dropped] + list(wanted)
    return DashboardModel(tabs=tabs, panels=panels)


def describe_project(model: ModelRef) -> str:
    """The project description: the model version and its operating point, named.

    Example:
        >>> m = ModelRef("resnet", "3", "ab" * 32, 0.100902, 9.0802, 0.95,
        ...              temperature=1000.0, n_classes=10, epsilon=0.0014)
        >>> print(describe_project(m))  # doctest: +NORMALIZE_WHITESPACE
        ODIN OOD monitoring of resnet, latest batch by version 3: T = 1000, ε = 0.0014,
        δ = 0.100902 (ODIN score S) = 9.0802 (spread score T·log(K·S)), expected OOD rate
        1 − tpr_target = 0.05 (tpr_target 0.95), K = 10 classes, calibration sha256 abababababab.
    """

    def num(value: float | int | None) -> str:
        return "unknown" if value is None else f"{value:.6g}"

    return (
        f"ODIN OOD monitoring of {model.name}, latest batch by version {model.version}: "
        f"T = {num(model.temperature)}, ε = {num(model.epsilon)}, "
        f"{describe_delta(model.threshold, model.threshold_spread)}, "
        f"expected OOD rate 1 − tpr_target = {model.expected_ood_rate:.6g} "
        f"(tpr_target {model.tpr_target:.6g}), K = {num(model.n_classes)} classes, "
        f"calibration sha256 {model.calibration_sha256[:12]}."
    )


def ensure_project(workspace: Workspace, model: ModelRef, *, describe: bool = True) -> Project:
    """Return the project named ``model.name``, with its panels and a current description.

    Creates the project if needed, sets the description (:func:`describe_project`)
    when ``describe`` (the detector that scores the batch) or when there is none
    yet. A model read back from the score log for an old batch (no T, ε) passes ``describe=False``.
    Then adds or upgrades the panels of :func:`dashboard_panels` (the first shows
    the description; :func:`upgraded_dashboard`: a no-op when they are there).

    Example:
        >>> # project = ensure_project(Workspace("mon/workspace"), model)
    """
    found = workspace.search_project(model.name)
    project = found[0] if found else workspace.create_project(model.name)
    if describe or not project.description:
        text = describe_project(model)
        if project.description != text:
            project.description = text
            project.save()
    panels = dashboard_panels(project.description or describe_project(model))
    upgraded = upgraded_dashboard(workspace.get_dashboard(project.id), panels)
    if upgraded is not None:
        workspace.save_dashboard(project.id, upgraded)
    return project


def add_to_workspace(
    snapshot: Snapshot, workspace_dir: str | Path, model: ModelRef, *, describe: bool = True
) -> tuple[str, str]:
    """Add a snapshot to the model's project; returns ``(project_id, snapshot_id)``.

    ``describe``: update the project description from ``model`` (:func:`ensure_project`).
    """
    workspace = Workspace(str(workspace_dir))
    project = ensure_project(workspace, model, describe=describe)
    ref = workspace.add_run(project.id, snapshot)
    return str(project.id), str(ref.id)
