"""Read batches from files: serving-log scores (CSV/Parquet) and image arrays (.npy/.npz).

Serving logs only need ``odin_score``; the other columns are derived or filled:

* ``is_ood``: always ``odin_score < model.threshold``; a supplied column that
  disagrees (away from δ) is refused, see :func:`~.schema.check_against_model`.
* ``spread_score``: ``T·log(K·S)`` when ``model.temperature`` and
  ``model.n_classes`` are set, else NaN (drift is then skipped).
* ``msp``: NaN when absent; ``predicted_class``: ``-1`` (unknown) when absent.

A log comes from elsewhere, so every column is checked against the model (ranges,
classes, spread, flags); a supplied column may not hold NaN (drop it instead).
Image files are read with :func:`odin_monitor.data.read_array`, which refuses empty,
truncated, forged or pickled files before allocating anything.

Example:
    >>> import pandas as pd
    >>> m = ModelRef("m", "1", "0" * 64, 0.5, 0.0, 0.95)
    >>> complete_scores(pd.DataFrame({"odin_score": [0.4, 0.6]}), m)["is_ood"].tolist()
    [True, False]
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from odin_monitor.columns import spread_transform
from odin_monitor.data import load_folder, load_images, read_array
from odin_monitor.errors import DataLoadError
from odin_monitor.monitoring.batches import IMAGE_SUFFIXES, SCORE_SUFFIXES
from odin_monitor.monitoring.errors import InvalidBatchError
from odin_monitor.monitoring.schema import (
    UNKNOWN_CLASS,
    ModelRef,
    check_against_model,
    validate_images,
    validate_scores,
)
from odin_monitor.preprocess import Preprocessing


def complete_scores(frame: pd.DataFrame, model: ModelRef) -> pd.DataFrame:
    """Derive/fill the optional columns of a serving log, then check it against ``model``.

    Raises:
        InvalidBatchError: No ``odin_score``; NaN/inf in a supplied column; a value
            impossible for ``model``; ``is_ood`` flagged with another threshold.
    """
    if not isinstance(frame, pd.DataFrame) or "odin_score" not in frame.columns:
        got = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise InvalidBatchError(
            f"Expected a serving log with at least an 'odin_score' column but got {got}."
        )
    out = frame.copy()
    supplied = [c for c in ("odin_score", "spread_score", "msp") if c in out.columns]
    odin = pd.to_numeric(out["odin_score"], errors="coerce").to_numpy(dtype=float)
    if "is_ood" not in out.columns:
        out["is_ood"] = odin < model.threshold
    if "spread_score" not in out.columns:
        if model.temperature is not None and model.n_classes is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["spread_score"] = spread_transform(odin, model.temperature, model.n_classes)
        else:
            out["spread_score"] = np.nan
    if "msp" not in out.columns:
        out["msp"] = np.nan
    if "predicted_class" not in out.columns:
        out["predicted_class"] = UNKNOWN_CLASS
    checked = validate_scores(out)
    for col in supplied:  # NaN only stands for a column the log does not have
        values = checked[col].to_numpy()
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise InvalidBatchError(
                f"Expected finite {col} values but got NaN/inf on {len(rows)} of "
                f"{len(values)} rows (0-based), first {rows[:5].tolist()}. Fix those rows, "
                f"or drop the {col} column to leave it unknown."
            )
    return check_against_model(checked, model)


def read_score_file(path: str | Path, model: ModelRef) -> pd.DataFrame:
    """Read a CSV or Parquet serving log and complete it (see module docs).

    Raises:
        InvalidBatchError: Unknown suffix, unreadable file or invalid content.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise InvalidBatchError(
                f"Expected a score log ending in {SCORE_SUFFIXES} but got {path.name!r}."
            )
    except InvalidBatchError:
        raise
    except Exception as exc:
        raise InvalidBatchError(
            f"Expected a readable {suffix} file but {path} failed: {exc}"
        ) from exc
    return complete_scores(frame, model)


def read_image_file(path: str | Path) -> np.ndarray:
    """Load an image batch from ``.npy`` or ``.npz`` and validate it.

    The array of an ``.npz`` is ``images``, or its only array. Empty, truncated,
    forged (a header declaring more data than the file holds) and pickled files are
    refused before anything is allocated (:func:`odin_monitor.data.read_array`).

    Raises:
        InvalidBatchError: Unknown suffix, unreadable file or invalid content.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InvalidBatchError(
            f"Expected an image file ending in {IMAGE_SUFFIXES} but got {path.name!r}."
        )
    try:
        array = read_array(path)
    except DataLoadError as exc:
        raise InvalidBatchError(
            f"Expected a readable {suffix} image batch but {path} failed: {exc}"
        ) from exc
    return validate_images(array)


def read_image_batch(
    path: str | Path,
    input_shape: tuple[int, int, int] | None = None,
    preprocessing: Preprocessing | None = None,
    report: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Read the images of a batch folder or array file, as the CLI accepts them.

    A folder holds image files of any size, decoded and resized by ``preprocessing``
    (the model's record; default an exact resize to ``input_shape``), exactly as the
    served model treats the same files; ``report`` gets one line when images were
    resized. An ``.npy``/``.npz`` holds uint8 ``(N, H, W, C)`` or
    float ``(N, C, H, W)`` (:func:`odin_monitor.data.load_images`).

    Raises:
        DataLoadError: Missing, unreadable or malformed (a ``ValueError``; the
            pipeline quarantines the batch).

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "b.npz"
        >>> np.savez(f, images=np.zeros((2, 8, 8, 3), dtype=np.uint8))
        >>> read_image_batch(f).shape
        (2, 3, 8, 8)
    """
    path = Path(path)
    if path.is_dir() and (preprocessing is not None or input_shape is not None):
        spec = preprocessing or Preprocessing.for_input_shape(input_shape)  # type: ignore[arg-type]
        return load_folder(path, preprocessing=spec, report=report)
    return load_images(path)


def move_to_quarantine(path: str | Path, quarantine_dir: str | Path, batch_id: str) -> Path:
    """Move a bad input file into ``quarantine_dir`` as ``<batch_id>__<name>``."""
    src = Path(path)
    dest_dir = Path(quarantine_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{batch_id}__{src.name}"
    shutil.move(str(src), dest)
    return dest
