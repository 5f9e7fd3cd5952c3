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
(a failure is counted in :attr:`InferenceLogWriter.failures` and logged). Rows still
waiting when the process ends, normally or by SIGTERM/SIGINT (how ``mlflow models
serve`` is stopped), are written first: see :class:`InferenceLogWriter`.

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
import contextlib
import logging
import math
import os
import re
import secrets
import signal
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd

from odin_monitor.errors import InputValidationError

logger = logging.getLogger(__name__)

#: Environment variable read when the pyfunc loads: the folder of the inference log.
INFERENCE_LOG_ENV = "ODIN_INFERENCE_LOG"
#: Model name and version written with each row when the pyfunc cannot know them.
MODEL_NAME_ENV = "ODIN_MODEL_NAME"
MODEL_VERSION_ENV = "ODIN_MODEL_VERSION"
#: Longest wait of a row before the background thread writes it, in seconds (default 0.5).
FLUSH_SECONDS_ENV = "ODIN_INFERENCE_LOG_FLUSH_SECONDS"
#: The signals after which every accepted row is on disk before the process ends.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

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


def _import_part_writing() -> None:
    """Import now what writing a part needs: late, the import could fail or wait.

    pyarrow's pandas conversion imports ``concurrent.futures.thread`` on first use, which
    raises once the interpreter has begun to exit (the first part written by ``atexit``
    would be lost), and an import from a signal handler could wait on an import lock
    the interrupted main thread holds.
    """
    import concurrent.futures.thread  # noqa: F401

    import pyarrow.pandas_compat
    import pyarrow.parquet  # noqa: F401


_Handler = Callable[[int, FrameType | None], Any] | int | None


class _StopHook:
    """One per process: the live writers, the handlers chained to, signals put off.

    The handler is installed once per signal (a fork inherits it with this object),
    from the main thread only, and only over a handler that ends or interrupts the
    process (not over ``SIG_IGN`` or one set outside Python).
    """

    def __init__(self) -> None:
        self.writers: weakref.WeakSet[InferenceLogWriter] = weakref.WeakSet()
        self.previous: dict[int, _Handler] = {}
        self.stopping = False
        self.deferred: list[int] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._atexit = False

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Marks this thread as holding a writer's lock (a signal then waits for the way out)."""
        local = self._local
        local.depth = getattr(local, "depth", 0) + 1
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0 and self.deferred:
                self._replay()

    def _replay(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread defers (handlers run there)
        signums, self.deferred = self.deferred, []
        for signum in signums:
            signal.raise_signal(signum)  # the handler runs now, outside any writer

    def add(self, writer: InferenceLogWriter) -> None:
        """Registers ``writer`` for the stop signals and the interpreter's exit."""
        with self.busy(), self._lock:
            self.writers.add(writer)
            if not self._atexit:
                atexit.register(self.flush_all)
                self._atexit = True
        self.install()

    def install(self) -> None:
        """Installs :func:`_on_stop_signal` for :data:`STOP_SIGNALS` (main thread, once)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works in the main thread only
        for signum in STOP_SIGNALS:
            if signum in self.previous:
                continue
            previous = signal.getsignal(signum)
            if previous is None or previous == signal.SIG_IGN:
                continue  # set outside Python (cannot chain to it), or the signal ends nothing
            self.previous[signum] = previous  # before the handler can run
            try:
                signal.signal(signum, _on_stop_signal)
            except (ValueError, OSError) as err:  # e.g. an embedding interpreter
                del self.previous[signum]
                logger.debug("inference log: no handler for signal %d (%s)", signum, err)

    def flush_all(self) -> None:
        """Writes every live writer's waiting rows of this process; never raises."""
        with self.busy(), self._lock:
            writers = list(self.writers)
        for writer in writers:
            writer.flush()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Writes what waits, then hands the signal to the handler that was there before."""
        self.stopping = True  # from now on each append writes its own rows
        if getattr(self._local, "depth", 0):
            # The main thread was interrupted holding a writer's lock: writing here would
            # wait for itself. The signal is raised again when that writer is left.
            self.deferred.append(signum)
            return
        self.flush_all()
        previous = self.previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: end the process by the signal, as it would have ended without us
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


_HOOK = _StopHook()


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """The handler of :data:`STOP_SIGNALS`: every accepted row to disk, then the old handler."""
    _HOOK.on_signal(signum, frame)


class InferenceLogWriter:
    """Appends scored rows to an inference log folder; never raises, never blocks.

    Every row :meth:`append` accepted reaches the disk when the process ends normally
    (``atexit``) or by SIGTERM or SIGINT, also under ``mlflow models serve``. uvicorn
    (0.55) takes both signals while it serves, shuts down gracefully (in-flight requests
    complete), restores the handlers it found and raises the signal again, so the process
    dies by the signal and ``atexit`` never runs; MLflow's FastAPI app has no shutdown hook
    a model could join. So the first writer created in the main thread of a process
    installs one handler for :data:`STOP_SIGNALS` (once; never over ``SIG_IGN`` or a
    handler set outside Python) that writes every writer's waiting rows, switches the
    writers to writing each append's rows before it returns, and then calls the handler
    that was there before, or, for ``SIG_DFL``, restores it and raises the signal again:
    the process ends exactly as it would have, with the same exit status. Both ways
    uvicorn loads a model are covered: with one worker the model loads before uvicorn
    takes the signals, which it then hands back to this handler before dying; a worker
    of ``--workers N`` loads it while uvicorn holds them, so this handler runs first and
    the requests finishing during the graceful shutdown write their own rows. A signal
    that interrupts the main thread while it holds a writer's lock is raised again as
    soon as the lock is released (writing from inside would wait for itself).

    Args:
        folder: The log folder (created on the first write).
        model_name: Written with every row.
        model_version: Written with every row.
        calibration_sha256: The calibration hash (also in part names).
        flush_rows: A part is written as soon as this many rows wait.
        flush_seconds: Rows never wait longer than this before being written (while the
            process runs; see above for its end).
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
        _import_part_writing()
        _HOOK.add(self)

    def _ensure_thread(self) -> None:
        """Start the flush thread in this process (again after a fork: threads do not follow)."""
        with _HOOK.busy(), _START_LOCK:
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
            with _HOOK.busy(), self._lock:
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
            if _HOOK.stopping:
                self.flush()  # the process is ending: these rows go to disk before we return
            elif ready:
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
        with _HOOK.busy(), self._write_lock:  # parts of one process are written in order
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


def parse_flush_seconds(text: str | None, default: float = 0.5) -> float:
    """The flush interval written in ``$ODIN_INFERENCE_LOG_FLUSH_SECONDS`` (``default`` if unset).

    Raises:
        InputValidationError: The text is not a positive, finite number of seconds.

    Example:
        >>> parse_flush_seconds("2.5"), parse_flush_seconds(None), parse_flush_seconds("")
        (2.5, 0.5, 0.5)
    """
    if text is None or not text.strip():
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputValidationError(
            f"Expected ${FLUSH_SECONDS_ENV} to be a positive number of seconds, but got "
            f"{text!r}. Set it to e.g. 0.5, or unset it for the default."
        )
    return seconds


def writer_from_config(
    model_config: dict[str, Any] | None,
    *,
    calibration_sha256: str,
    default_name: str = "odin",
) -> InferenceLogWriter | None:
    """The writer a pyfunc gets at load, or None when no inference log is configured.

    ``model_config["inference_log"]`` wins over ``$ODIN_INFERENCE_LOG``; the model name
    and version come from ``model_config["model_name"/"model_version"]``, else
    ``$ODIN_MODEL_NAME``/``$ODIN_MODEL_VERSION``, else ``default_name`` and ``"local"``;
    the flush interval from ``$ODIN_INFERENCE_LOG_FLUSH_SECONDS`` (default 0.5 s).

    Raises:
        InputValidationError: ``$ODIN_INFERENCE_LOG_FLUSH_SECONDS`` is not a positive number.

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
        flush_seconds=parse_flush_seconds(os.environ.get(FLUSH_SECONDS_ENV)),
    )
