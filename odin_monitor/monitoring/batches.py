"""What a batch is and how it is named: kinds, ids, content hashes, committed records.

A batch is an image array, a score frame, or a file or folder holding one. Its id
is the caller's idempotency key or, by default, a hash of its content
(:func:`batch_id_of` for files and folders, :func:`content_id` in memory), so a
batch seen before is recognised without being read again. A content hash
(:func:`images_sha256`, :func:`scores_sha256`) is stored with every committed
batch, so a known id sent again with other content is refused
(:func:`check_same_content`) rather than silently dropped.

Example:
    >>> batch_kind(Path("serving-2026-11-03.parquet")), batch_kind(Path("notes.txt"))
    ('scores', None)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from odin_monitor.columns import SCORE_COLUMNS
from odin_monitor.monitoring.errors import BatchIdConflictError, BatchVanishedError
from odin_monitor.monitoring.schema import ModelRef, validate_scores

#: Serving logs of scores computed elsewhere.
SCORE_SUFFIXES = (".csv", ".parquet", ".pq")
#: Image arrays (uint8 NHWC or float NCHW).
IMAGE_SUFFIXES = (".npy", ".npz")

BatchKind = Literal["scores", "images"]


def utcnow() -> str:
    """Current UTC time as an ISO-8601 string (the score log's timestamp format)."""
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class BatchRecord:
    """A committed batch, as stored in the score log's ``batches`` table.

    Attributes:
        seq: Monotone sequence number (insertion order; the MLflow step).
        batch_id: Caller- or content-derived id, unique in the log.
        created_at: ISO-8601 UTC timestamp of the commit.
        model: The detector that scored it.
        n_images: Batch size.
        n_ood: Number of images flagged OOD.
        source: ``"scorer"`` or ``"ingest:<path>"``.
        content_sha256: Hash of the batch's content (None for batches logged by
            versions before 0.2, which stored none).
        rules_checked: Whether the alert rules were evaluated on this batch and their
            alerts stored (always true for batches committed with their alerts).
    """

    seq: int
    batch_id: str
    created_at: str
    model: ModelRef
    n_images: int
    n_ood: int
    source: str
    content_sha256: str | None = None
    rules_checked: bool = False

    @property
    def ood_rate(self) -> float:
        """Share of the batch flagged OOD."""
        return self.n_ood / self.n_images


def batch_kind(path: Path) -> BatchKind | None:
    """``"scores"`` (a serving log), ``"images"`` (an array or a folder), else None.

    Example:
        >>> batch_kind(Path("batch-0001.npz"))
        'images'
    """
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    if suffix in SCORE_SUFFIXES:
        return "scores"
    return "images" if suffix in IMAGE_SUFFIXES else None


def _file_digest(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def batch_id_of(path: str | Path) -> str:
    """Content id of a batch file (its bytes) or folder (its sorted file names and bytes).

    Raises:
        BatchVanishedError: The file or folder is gone, or left while being hashed
            (never the hash of nothing).
        PermissionError: A file cannot be read.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> batch_id_of(d).startswith("sha256-")
        True
    """
    path = Path(path)
    try:
        if path.is_file():
            digest = _file_digest(path)
        elif path.is_dir():
            digest = hashlib.sha256()
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(f.relative_to(path).as_posix().encode() + b"\0")
                digest.update(f.read_bytes())
            if not path.is_dir():
                raise FileNotFoundError(path)
        else:
            raise FileNotFoundError(path)
    except FileNotFoundError as err:
        raise BatchVanishedError(
            f"Expected the batch {path} to stay in place until it is read, but it left "
            "(moved by another process): skipped, nothing to quarantine."
        ) from err
    return "sha256-" + digest.hexdigest()[:24]


def content_id(data: np.ndarray | pd.DataFrame) -> str:
    """Deterministic batch id from in-memory content (sha256 prefix), for idempotent re-runs.

    Example:
        >>> content_id(np.zeros(3)) == content_id(np.zeros(3))
        True
    """
    h = hashlib.sha256()
    if isinstance(data, pd.DataFrame):
        h.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    else:
        arr = np.ascontiguousarray(data)
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    return "sha256-" + h.hexdigest()[:24]


def images_sha256(images: np.ndarray) -> str:
    """Content hash of a validated image batch (dtype, shape and pixel bytes).

    Example:
        >>> images_sha256(np.zeros((1, 1, 2, 2), np.float32)) == images_sha256(
        ...     np.zeros((1, 1, 2, 2), np.float32))
        True
    """
    arr = np.ascontiguousarray(images)
    h = hashlib.sha256(b"odin-images-v1")
    h.update(f"{arr.dtype}:{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def scores_sha256(scores: pd.DataFrame) -> str:
    """Hash of a validated score frame (canonical columns, dtypes and values).

    Example:
        >>> frame = pd.DataFrame({"odin_score": [0.2], "spread_score": [1.0], "msp": [0.9],
        ...                       "predicted_class": [3], "is_ood": [False]})
        >>> scores_sha256(frame) == scores_sha256(frame.copy())
        True
    """
    h = hashlib.sha256(b"odin-scores-v1")
    frame = validate_scores(scores)
    for col in SCORE_COLUMNS:
        values = np.ascontiguousarray(frame[col].to_numpy())
        h.update(f"{col}:{values.dtype}:{values.shape}".encode())
        h.update(values.tobytes())
    return h.hexdigest()


def check_same_content(existing: BatchRecord, content_sha256: str) -> None:
    """Raise :class:`BatchIdConflictError` if a known batch id comes with other content.

    A record without a stored hash (logged by an older version) cannot be compared
    and is accepted as the same batch.
    """
    if existing.content_sha256 is None or existing.content_sha256 == content_sha256:
        return
    raise BatchIdConflictError(
        f"Expected batch id {existing.batch_id!r} to name the batch already logged "
        f"({existing.n_images} images at {existing.created_at}, content "
        f"sha256 {existing.content_sha256[:12]}) but got different content "
        f"(sha256 {content_sha256[:12]}); give this batch a new --batch-id/batch_id "
        "(batch ids are idempotency keys: only an identical re-send is a no-op)."
    )
