"""A batch given to :func:`~.pipeline.process_batch`, resolved and read lazily.

Images (an array, or a file or folder read by an :data:`ImageReader`) or scores
(a frame, or a serving log) become a :class:`BatchInput`: its id, whether the id is
a content hash, and a reader returning the content hash and the validated scores.
Whatever cannot be read, validated or scored raises
:class:`~.errors.InvalidBatchError`; the pipeline quarantines it.

Example:
    >>> import numpy as np
    >>> model = ModelRef("m", "1", "0" * 64, 0.5, 0.0, 0.95)
    >>> batch = resolve_input(model, np.zeros((1, 1, 2, 2), np.float32), None,
    ...                       lambda x: None, None, None)
    >>> batch.batch_id.startswith("sha256-"), batch.id_from_content
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from odin_monitor.monitoring.batches import (
    IMAGE_SUFFIXES,
    batch_id_of,
    content_id,
    images_sha256,
    scores_sha256,
)
from odin_monitor.monitoring.errors import BatchVanishedError, ConfigError, InvalidBatchError
from odin_monitor.monitoring.ingest import complete_scores, read_image_file, read_score_file
from odin_monitor.monitoring.schema import ModelRef, validate_images, validate_scores

Scorer = Callable[[np.ndarray], pd.DataFrame]
"""``images (N, C, H, W) -> scores`` (one row per image)."""

ImageReader = Callable[[Path], np.ndarray]
"""``path -> images (N, C, H, W)`` for a batch file or folder."""


@dataclass(frozen=True)
class BatchInput:
    """A batch resolved from the arguments, read lazily."""

    batch_id: str
    id_from_content: bool  # the id is a hash of the content: equal ids, equal content
    read: Callable[[], tuple[str, Callable[[], pd.DataFrame]]]  # -> (content hash, scores)
    source: Path | None


def _from_images(scorer: Scorer, images: np.ndarray) -> tuple[str, Callable[[], pd.DataFrame]]:
    return images_sha256(images), lambda: _score(scorer, images)


def _from_scores(frame: pd.DataFrame) -> tuple[str, Callable[[], pd.DataFrame]]:
    return scores_sha256(frame), lambda: frame


def resolve_input(
    model: ModelRef,
    images: np.ndarray | str | Path | None,
    scores: pd.DataFrame | str | Path | None,
    scorer: Scorer | None,
    batch_id: str | None,
    source: str | Path | None,
    read_images: ImageReader | None = None,
) -> BatchInput:
    """Resolve :func:`~.pipeline.process_batch`'s input arguments; nothing is read yet.

    A path is a batch file (or, with ``read_images``, a folder); its id is its
    content hash (:func:`~.batches.batch_id_of`) unless ``batch_id`` is given.

    Raises:
        ConfigError: Both or neither input, no scorer for images, a missing path.
    """
    if (images is None) == (scores is None):
        raise ConfigError(
            "Expected exactly one of images= or scores= but got "
            f"{'both' if images is not None else 'neither'}."
        )
    if images is not None and scorer is None:
        raise ConfigError("Expected a scorer callable when images= is given but got None.")
    data = images if images is not None else scores
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not (path.is_file() or (read_images is not None and path.is_dir())):
            raise ConfigError(
                f"Expected an existing batch file{' or folder' if read_images else ''} "
                f"but got {str(path)!r}."
            )
        bid = batch_id or batch_id_of(path)
        if images is not None or path.suffix.lower() in IMAGE_SUFFIXES:
            if scorer is None:
                raise ConfigError(f"Expected a scorer to score image file {path.name!r}.")
            file_scorer, reader = scorer, read_images or read_image_file
            return BatchInput(
                bid,
                batch_id is None,
                lambda: _from_images(file_scorer, _read_images(reader, path)),
                path,
            )
        return BatchInput(
            bid, batch_id is None, lambda: _from_scores(read_score_file(path, model)), path
        )
    origin = None if source is None else Path(source)
    if images is not None:
        arr = images
        bid = batch_id or (content_id(arr) if isinstance(arr, np.ndarray) else "invalid-input")
        score_fn: Scorer = scorer  # type: ignore[assignment]  # checked above
        return BatchInput(
            bid, batch_id is None, lambda: _from_images(score_fn, validate_images(arr)), origin
        )
    frame = scores
    bid = batch_id or (content_id(frame) if isinstance(frame, pd.DataFrame) else "invalid-input")
    return BatchInput(
        bid, batch_id is None, lambda: _from_scores(complete_scores(frame, model)), origin
    )


def _read_images(read: ImageReader, path: Path) -> np.ndarray:
    """``read(path)``, validated; a file that cannot be read is an invalid batch."""
    try:
        return validate_images(read(path))
    except InvalidBatchError:
        raise
    except (ValueError, FileNotFoundError) as exc:  # DataLoadError, InputValidationError, ...
        if not path.exists():
            raise BatchVanishedError(
                f"Expected the batch {path} to stay in place until it is read, but it left "
                "(moved by another process): skipped, nothing to quarantine."
            ) from exc
        raise InvalidBatchError(str(exc)) from exc


def _score(scorer: Scorer, images: np.ndarray) -> pd.DataFrame:
    try:
        out = scorer(images)
    except InvalidBatchError:
        raise
    except ValueError as exc:
        # Bad input (the library's validation errors are ValueErrors). Anything else
        # (out of memory, a bug) propagates: a good batch must not be quarantined.
        raise InvalidBatchError(
            f"Expected the scorer to accept the batch but it raised {exc!r}."
        ) from exc
    out = validate_scores(out)
    if len(out) != len(images):
        raise InvalidBatchError(
            f"Expected one score row per image ({len(images)}) but the scorer returned {len(out)}."
        )
    return out
