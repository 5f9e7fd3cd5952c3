"""Build per-batch Evidently reports and store them in a local workspace.

One report per batch: :class:`~.evidently_metrics.OdinOODRate` (with its binomial
test), :class:`~.evidently_metrics.OdinOODRateByClass` and Evidently's built-in
``ValueDrift`` on ``spread_score`` with an explicit method: ``"ks"`` for batches
of at most 1000 images, ``"wasserstein"`` (normed) above.

Each snapshot is saved as HTML and JSON (``Snapshot.dumps()``, reloadable with
``evidently.core.report.Snapshot.load``), each written atomically (a temporary
file in the same folder, fsync, rename: a full disk never leaves a truncated
report behind), and added to a local workspace, one
project per registered model name, with an "OOD rate" line panel. Browse with
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
from evidently.metrics import ValueDrift
from evidently.sdk.models import PanelMetric
from evidently.sdk.panels import line_plot_panel
from evidently.ui.workspace import Project, Workspace

from odin_monitor.monitoring.errors import ReportWriteError
from odin_monitor.monitoring.evidently_metrics import OdinOODRate, OdinOODRateByClass
from odin_monitor.monitoring.schema import ModelRef, validate_scores

#: Batch size up to which KS is used for score drift (Wasserstein above).
KS_MAX_BATCH = 1000
#: Title of the dashboard panel plotting the OOD rate per batch.
PANEL_TITLE = "ODIN OOD rate per batch"
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
    score_col = "spread_score" if use_spread else "odin_score"
    threshold = model.threshold_spread if use_spread else model.threshold
    metrics: list = [
        OdinOODRate(
            expected_rate=model.expected_ood_rate,
            alpha=alpha,
            score_column=score_col,
            threshold=float(threshold),
        ),
        OdinOODRateByClass(expected_rate=model.expected_ood_rate),
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
    snapshot: Snapshot, out_dir: str | Path, model: ModelRef, batch_id: str
) -> tuple[Path, Path]:
    """Write ``<out>/<model>/<version>/<batch>.html`` and ``.json``; return both paths.

    Both texts are rendered first, then each file is written atomically
    (:func:`write_atomic`): a path holds either the complete new report or what it
    held before, never a truncated file.

    Raises:
        ReportWriteError: The folder cannot be created or a file cannot be written
            (read-only folder, full disk...), with the path and the reason.
    """
    html_path, json_path = report_paths(out_dir, model, batch_id)
    html = snapshot.get_html_str(as_iframe=False)
    dump = snapshot.dumps()
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(html_path.parent, err, "create the report folder") from err
    write_atomic(html_path, html.encode("utf-8"))
    write_atomic(json_path, dump.encode("utf-8"))
    return html_path, json_path


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


def ensure_project(workspace: Workspace, model_name: str) -> Project:
    """Return the project named ``model_name``, creating it with the OOD-rate panel."""
    found = workspace.search_project(model_name)
    project = (
        found[0]
        if found
        else workspace.create_project(
            model_name, description=f"ODIN OOD monitoring of {model_name}"
        )
    )
    if not any(p.title == PANEL_TITLE for p in project.dashboard.model().panels):
        project.dashboard.add_panel(
            line_plot_panel(
                title=PANEL_TITLE,
                values=[PanelMetric(legend="OOD rate", metric="OdinOODRate")],
                description="Share of images flagged OOD (odin_score < δ) per batch",
            ),
            tab="ODIN",
        )
    return project


def add_to_workspace(
    snapshot: Snapshot, workspace_dir: str | Path, model: ModelRef
) -> tuple[str, str]:
    """Add a snapshot to the model's project; returns ``(project_id, snapshot_id)``."""
    workspace = Workspace(str(workspace_dir))
    project = ensure_project(workspace, model.name)
    ref = workspace.add_run(project.id, snapshot)
    return str(project.id), str(ref.id)
