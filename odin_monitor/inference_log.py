"""The served model's inference log: every scored row appended to small Parquet parts.

A model served by ``mlflow models serve`` (or loaded with ``mlflow.pyfunc``) writes,
when configured (``ODIN_INFERENCE_LOG=<folder>`` at load, or
``model_config={"inference_log": <folder>}``), one row per scored image: timestamp,
request id, model name/version/calibration sha256, ``predicted_class``, ``msp``,
``odin_score``, ``spread_score`` and ``is_ood``; never the images.

Rows are buffered in memory (bounded: rows beyond ``max_pending_rows`` are dropped
and counted) and written by a background thread as small Parquet part files, each
written to a hidden temporary name, flushed to disk and renamed into place, so a
reader never sees half a part. Part names carry the first row's time, the
calibration hash, the process id and a sequence number, so several server workers
share one folder without coordination. :meth:`InferenceLogWriter.append` never raises
and never waits on the disk: a request is answered whatever happens to its log rows
(a failure is counted in :attr:`InferenceLogWriter.failures` and logged).

This module only needs pandas and pyarrow: it ships inside the model. Reading the
log into monitoring batches is :mod:`odin_monitor.monitoring.inference_windows`'s job.

Example:
    >>> import tempfile
    >>> import pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> writer = InferenceLogWriter(folder, model_name="m", model_version="1",
    ...                             calibration_sha256="ab" * 32)
    >>> writer.append(pd.DataFrame({"odin_score": [0.2], "spread_score": [1.0], "msp": [0.9],
    ...                             "predicted_class": [3], "is_ood": [False]}))
    >>> writer.flush()
    >>> len(list_parts(folder)), writer.written_rows
    (1, 1)
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Environment variable read when the pyfunc loads: the folder of the inference log.
INFERENCE_LOG_ENV = "ODIN_INFERENCE_LOG"
#: Model name and version written with each row when the pyfunc cannot know them.
MODEL_NAME_ENV = "ODIN_MODEL_NAME"
MODEL_VERSION_ENV = "ODIN_MODEL_VERSION"

#: The columns of a part file, in order.
LOG_COLUMNS = (
    "timestamp",
    "request_id",
    "model_name",
    "model_version",
    "calibration_sha256",
    "predicted_class",
    "msp",
    "odin_score",
    "spread_score",
    "is_ood",
)

_START_LOCK = threading.Lock()

_PART = re.compile(r"^part-(\d{13})-([0-9a-f]{12})-(\d+)-(\d{6})-([0-9a-f]{8})\.parquet$")


@dataclass(frozen=True)
class PartName:
    """What a part file's name says: first row time (ms), calibration prefix, writer."""

    name: str
    first_ms: int
    sha12: str
    pid: int
    seq: int

    @property
    def first_ts(self) -> float:
        """Time of the part's first row, seconds since the epoch."""
        return self.first_ms / 1000.0


def part_name(first_ts: float, calibration_sha256: str, pid: int, seq: int) -> str:
    """The file name of a part; sorting names sorts parts by their first row's time.

    Example:
        >>> part_name(1.5, "ab" * 32, 7, 2)[:36]
        'part-0000000001500-abababababab-7-00'
    """
    stamp, token = int(first_ts * 1000), secrets.token_hex(4)
    return f"part-{stamp:013d}-{calibration_sha256[:12]}-{pid}-{seq:06d}-{token}.parquet"


def parse_part_name(name: str) -> PartName | None:
    """The fields of a part file name, or None for anything else (temporary files, ...).

    Example:
        >>> parse_part_name(part_name(1.5, "ab" * 32, 7, 2)).first_ms
        1500
        >>> parse_part_name(".part-0.tmp") is None
        True
    """
    m = _PART.match(name)
    if m is None:
        return None
    return PartName(name, int(m[1]), m[2], int(m[3]), int(m[4]))


def list_parts(folder: str | Path, calibration_sha256: str | None = None) -> list[PartName]:
    """Complete part files of ``folder`` (optionally of one calibration), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = None if calibration_sha256 is None else calibration_sha256[:12]
    parts = [p for p in map(parse_part_name, os.listdir(folder)) if p is not None]
    return sorted(
        (p for p in parts if prefix is None or p.sha12 == prefix),
        key=lambda p: (p.first_ms, p.name),
    )


def write_part(folder: str | Path, frame: pd.DataFrame, name: str) -> Path:
    """Write ``frame`` as ``folder/name`` atomically: hidden temp file, fsync, rename, fsync dir."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename stands
        pass
    return folder / name


def read_part(path: str | Path) -> pd.DataFrame:
    """One part file as a DataFrame with :data:`LOG_COLUMNS`."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def part_rows(path: str | Path) -> int:
    """Rows of one part file (from its footer, nothing else read)."""
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


_SCORE_DTYPES = {
    "predicted_class": np.int64,
    "msp": np.float64,
    "odin_score": np.float64,
    "spread_score": np.float64,
    "is_ood": np.bool_,
}


@dataclass(frozen=True)
class _Chunk:
    timestamp: float
    request_id: str
    n: int
    columns: dict[str, np.ndarray]


class InferenceLogWriter:
    """Appends scored rows to an inference log folder; never raises, never blocks.

    Args:
        folder: The log folder (created on the first write).
        model_name: Written with every row.
        model_version: Written with every row.
        calibration_sha256: The calibration hash (also in part names).
        flush_rows: A part is written as soon as this many rows wait.
        flush_seconds: Rows never wait longer than this before being written.
        max_pending_rows: Memory bound: rows arriving while this many wait are dropped
            (counted in :attr:`dropped_rows`).

    Attributes:
        written_rows: Rows written to part files by this process.
        dropped_rows: Rows dropped because the buffer was full or a write failed.
        failures: Part writes that failed (each logged).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        model_name: str,
        model_version: str,
        calibration_sha256: str,
        flush_rows: int = 512,
        flush_seconds: float = 0.5,
        max_pending_rows: int = 100_000,
    ) -> None:
        self.folder = Path(folder)
        self.model_name = str(model_name)
        self.model_version = str(model_version)
        self.calibration_sha256 = str(calibration_sha256)
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = float(flush_seconds)
        self.max_pending_rows = max(1, int(max_pending_rows))
        self.written_rows = 0
        self.dropped_rows = 0
        self.failures = 0
        self._pending: deque[_Chunk] = deque()
        self._pending_rows = 0
        self._seq = 0
        self._pid = -1
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(self.flush)

    def _ensure_thread(self) -> None:
        """Start the flush thread in this process (again after a fork: threads do not follow)."""
        with _START_LOCK:
            pid = os.getpid()
            if self._pid == pid and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != pid:
                self._lock = threading.Lock()
                self._write_lock = threading.Lock()
                self._wake = threading.Event()
                self._pending.clear()
                self._pending_rows = 0
                self._pid = pid
            self._thread = threading.Thread(
                target=self._run, daemon=True, name="odin-inference-log"
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def append(self, scores: pd.DataFrame, request_id: str | None = None) -> None:
        """Queue the rows of one scored request (the score columns); never raises.

        Args:
            scores: One row per image with ``odin_score``, ``spread_score``, ``msp``,
                ``predicted_class`` and ``is_ood``.
            request_id: Written with each row (default: a new UUID per call).
        """
        try:
            n = len(scores)
            if n == 0 or self._closed:
                return
            if self._pid != os.getpid() or self._thread is None:
                self._ensure_thread()
            # Copied now, as plain arrays: the caller may reuse its frame after we return.
            columns: dict[str, np.ndarray] = {
                c: np.array(scores[c], dtype=t) for c, t in _SCORE_DTYPES.items()
            }
            chunk = _Chunk(time.time(), request_id or uuid.uuid4().hex, n, columns)
            with self._lock:
                if self._pending_rows + n > self.max_pending_rows:
                    self.dropped_rows += n
                    full = True
                else:
                    self._pending.append(chunk)
                    self._pending_rows += n
                    full = False
                ready = self._pending_rows >= self.flush_rows
            if full:
                logger.warning(
                    "inference log %s: buffer full (%d rows waiting); %d rows dropped",
                    self.folder,
                    self.max_pending_rows,
                    n,
                )
            if ready:
                self._wake.set()
        except Exception:  # the response goes out whatever happens to its log rows
            self.failures += 1
            logger.exception("inference log %s: rows not queued", self.folder)

    def _frame(self, chunks: list[_Chunk]) -> pd.DataFrame:
        sizes = [c.n for c in chunks]
        n = sum(sizes)
        stamps = np.repeat([c.timestamp for c in chunks], sizes)
        frame = {
            "timestamp": pd.to_datetime(stamps, unit="s", utc=True),
            "request_id": np.repeat([c.request_id for c in chunks], sizes).astype(object),
            "model_name": [self.model_name] * n,
            "model_version": [self.model_version] * n,
            "calibration_sha256": [self.calibration_sha256] * n,
        }
        for col in _SCORE_DTYPES:
            frame[col] = np.concatenate([c.columns[col] for c in chunks])
        return pd.DataFrame(frame, columns=list(LOG_COLUMNS))

    def flush(self) -> None:
        """Write what waits as one part now; never raises (failures counted and logged)."""
        if self._pid != os.getpid():
            return  # nothing of this process's own is waiting
        with self._write_lock:  # parts of one process are written in order
            with self._lock:
                chunks = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
            if not chunks:
                return
            n = sum(c.n for c in chunks)
            try:
                self._seq += 1
                name = part_name(chunks[0].timestamp, self.calibration_sha256, self._pid, self._seq)
                write_part(self.folder, self._frame(chunks), name)
                self.written_rows += n
            except Exception:
                self.failures += 1
                self.dropped_rows += n
                logger.exception(
                    "inference log %s: a part of %d rows was not written", self.folder, n
                )

    def close(self) -> None:
        """Write what waits and stop the flush thread."""
        self.flush()
        self._closed = True
        self._wake.set()


def writer_from_config(
    model_config: dict[str, Any] | None,
    *,
    calibration_sha256: str,
    default_name: str = "odin",
) -> InferenceLogWriter | None:
    """The writer a pyfunc gets at load, or None when no inference log is configured.

    ``model_config["inference_log"]`` wins over ``$ODIN_INFERENCE_LOG``; the model name
    and version come from ``model_config["model_name"/"model_version"]``, else
    ``$ODIN_MODEL_NAME``/``$ODIN_MODEL_VERSION``, else ``default_name`` and ``"local"``.

    Example:
        >>> writer_from_config({}, calibration_sha256="ab" * 32) is None or True
        True
    """
    conf = dict(model_config or {})
    folder = conf.get("inference_log") or os.environ.get(INFERENCE_LOG_ENV)
    if not folder:
        return None
    return InferenceLogWriter(
        folder,
        model_name=str(conf.get("model_name") or os.environ.get(MODEL_NAME_ENV) or default_name),
        model_version=str(
            conf.get("model_version") or os.environ.get(MODEL_VERSION_ENV) or "local"
        ),
        calibration_sha256=calibration_sha256,
    )
