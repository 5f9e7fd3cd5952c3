"""Batches arriving as files in a folder: which to take, one scan at a time, each once.

:func:`scan_inbox` lists the inbox (:func:`batch_candidates`: hidden files, partial
files such as ``.tmp``/``.part`` and empty folders are not batches yet, so write a
batch elsewhere and move it in), names each batch by its content
(:func:`~.batches.batch_id_of`), and runs a new one through :func:`process_path`;
a known batch is revisited only while its alerts or report are missing. A batch
that leaves the inbox meanwhile is skipped (another monitor took it), a batch that
cannot be read is quarantined once, and one failing batch never stops the scan.
:func:`inbox_lock` lets one process scan an inbox at a time.

Example:
    >>> # with inbox_lock(inbox) as mine:
    >>> #     items = list(scan_inbox(inbox, model, config, scorer=score)) if mine else []
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from odin_monitor.monitoring.batches import (
    IMAGE_SUFFIXES,
    SCORE_SUFFIXES,
    batch_id_of,
    batch_kind,
)
from odin_monitor.monitoring.delivery import deliver_in_background
from odin_monitor.monitoring.errors import BatchVanishedError, ConfigError
from odin_monitor.monitoring.ingest import read_image_batch
from odin_monitor.monitoring.inputs import Scorer
from odin_monitor.monitoring.pipeline import (
    MonitorConfig,
    batch_is_complete,
    process_batch,
    quarantine_batch,
    revisit_batch,
)
from odin_monitor.monitoring.result import BatchResult
from odin_monitor.monitoring.schema import ModelRef
from odin_monitor.preprocess import Preprocessing

#: Files still being written: write elsewhere (or under such a name), then rename.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")

#: The inbox's scan lock, ``INBOX/.odin-monitor.lock``.
LOCK_NAME = ".odin-monitor.lock"

NOT_A_BATCH = "not a batch (.npz/.npy, .csv/.parquet or a folder)"


@contextlib.contextmanager
def inbox_lock(inbox: Path) -> Iterator[bool]:
    """Hold the inbox's exclusive scan lock if free; yields whether it was taken.

    An ``flock`` on ``INBOX/.odin-monitor.lock``: two monitors on one inbox take
    turns instead of racing for the same files (one quarantining a file the other is
    hashing). The kernel releases it when a process dies, even on ``kill -9``. Local
    file systems only (flock is advisory and per host).

    Example:
        >>> import tempfile
        >>> with inbox_lock(Path(tempfile.mkdtemp())) as mine:
        ...     mine
        True
    """
    with open(inbox / LOCK_NAME, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def batch_candidates(inbox: Path) -> list[Path]:
    """Inbox entries that may be complete batches, sorted (hidden, partial, empty skipped).

    Files of other kinds are listed too: :func:`scan_inbox` reports them as skipped.
    """
    out = []
    for path in sorted(inbox.iterdir()):
        name = path.name.lower()
        if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
            continue
        if path.is_dir():
            try:
                if not any(path.iterdir()):
                    continue
            except PermissionError:  # unreadable: hashing it quarantines it
                pass
        out.append(path)
    return out


def process_path(
    path: Path,
    model: ModelRef,
    config: MonitorConfig,
    *,
    scorer: Scorer,
    reference: pd.DataFrame | None = None,
    input_shape: tuple[int, int, int] | None = None,
    batch_id: str | None = None,
    created_at: str | None = None,
    preprocessing: Preprocessing | None = None,
    report: Callable[[str], None] | None = None,
) -> BatchResult:
    """Score (or ingest) one batch file or folder with :func:`~.pipeline.process_batch`.

    Arrays may be uint8 ``(N, H, W, C)`` or float ``(N, C, H, W)``; folders hold image
    files of any size, decoded and resized by the model's ``preprocessing`` (default:
    an exact resize to ``input_shape``; :func:`~.ingest.read_image_batch`; ``report``
    gets one line when images were resized);
    ``.csv``/``.parquet`` are serving logs. ``created_at`` (ISO-8601) stamps the
    batch (default now). What cannot be read is quarantined by ``process_batch``.

    Raises:
        ConfigError: ``path`` is no batch kind (see :func:`~.batches.batch_kind`).
        BatchVanishedError: The batch left before it could be read.
        BatchIdConflictError: ``batch_id`` is logged with different content.

    Example:
        >>> # process_path(Path("inbox/day1"), model, cfg, scorer=score, input_shape=(3, 32, 32))
    """
    kind = batch_kind(path)
    if kind is None:
        raise ConfigError(
            f"Expected a folder of images, a {'/'.join(IMAGE_SUFFIXES)} of images or a "
            f"{'/'.join(SCORE_SUFFIXES)} of scores, but got {path.name!r}."
        )
    if not path.exists():
        raise BatchVanishedError(
            f"Expected the batch {path} to be there, but it left (moved by another process)."
        )
    if kind == "scores":
        return process_batch(
            model,
            config,
            scores=path,
            batch_id=batch_id,
            reference=reference,
            created_at=created_at,
        )
    return process_batch(
        model,
        config,
        images=path,
        scorer=scorer,
        read_images=functools.partial(
            read_image_batch, input_shape=input_shape, preprocessing=preprocessing, report=report
        ),
        batch_id=batch_id,
        reference=reference,
        created_at=created_at,
    )


@dataclass(frozen=True)
class ScanItem:
    """What a scan did with one inbox entry: exactly one of the three is set.

    Attributes:
        path: The entry.
        result: Its batch result (processed, revisited or quarantined).
        skipped: Why it was left alone (not a batch, vanished, quarantined before).
        error: Why it failed; it stays in the inbox and is tried again next scan.
    """

    path: Path
    result: BatchResult | None = None
    skipped: str | None = None
    error: Exception | None = None


def unreadable_id(path: Path) -> str:
    """Batch id of a batch whose content cannot be read: a hash of its name.

    Example:
        >>> unreadable_id(Path("in/a.npz")) == unreadable_id(Path("elsewhere/a.npz"))
        True
    """
    return "unreadable-" + hashlib.sha256(path.name.encode()).hexdigest()[:24]


def scan_inbox(
    inbox: Path,
    model: ModelRef,
    config: MonitorConfig,
    *,
    scorer: Scorer,
    reference: pd.DataFrame | None = None,
    input_shape: tuple[int, int, int] | None = None,
    preprocessing: Preprocessing | None = None,
    report: Callable[[str], None] | None = None,
) -> Iterator[ScanItem]:
    """Process the inbox's new (or incompletely processed) batches, one item per entry.

    Alerts left pending by earlier runs are handed to the notifiers first, even if
    no batch comes. A known batch is skipped silently once its alerts are stored and
    its report is on disk, else revisited (a crash after its commit), never scored
    twice. A batch that cannot be read (``PermissionError`` while hashing) is
    quarantined once, by name (:func:`unreadable_id`).

    Example:
        >>> # for item in scan_inbox(inbox, model, cfg, scorer=score): print(item)
    """
    deliver_in_background(config.log, config.notifiers, budget=0.0)
    for path in batch_candidates(inbox):
        if path.is_file() and batch_kind(path) is None:
            yield ScanItem(path, skipped=NOT_A_BATCH)
            continue
        try:
            try:
                bid = batch_id_of(path)
            except PermissionError as err:
                yield _quarantine_unreadable(path, err, model, config)
                continue
            if config.log.get_batch(bid) is None:
                result = process_path(
                    path,
                    model,
                    config,
                    scorer=scorer,
                    reference=reference,
                    input_shape=input_shape,
                    batch_id=bid,
                    preprocessing=preprocessing,
                    report=report,
                )
            elif batch_is_complete(config, bid):
                continue
            else:
                result = revisit_batch(model, config, bid)
        except BatchVanishedError as err:  # taken by someone else: not ours to quarantine
            yield ScanItem(path, skipped=str(err))
            continue
        except Exception as err:  # one batch must not stop the scan; the file stays
            yield ScanItem(path, error=err)
            continue
        yield ScanItem(path, result=result)


def _quarantine_unreadable(
    path: Path, err: PermissionError, model: ModelRef, config: MonitorConfig
) -> ScanItem:
    bid = unreadable_id(path)
    if any(row["batch_id"] == bid for row in config.log.quarantined()):
        return ScanItem(path, skipped=f"quarantined before as unreadable ({bid})")
    reason = f"Expected a readable batch but {path} cannot be read: {err}"
    return ScanItem(path, result=quarantine_batch(model, config, bid, reason, path))
