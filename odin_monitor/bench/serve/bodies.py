"""Request bodies of the serving benchmark: float JSON and base64 image files.

* ``"float"``: ``{"inputs": images.tolist()}``, float32 ``(N, C, H, W)`` in [0, 1]
  (what a model saved with ``input_kind="tensor"`` takes);
* ``"image"``: ``{"dataframe_split": {"columns": ["image"], "data": [["<base64>"], ...]}}``,
  one encoded file per row (what an image model takes; MLflow decodes the base64 of a
  binary column).

Example:
    >>> body = image_body([b"\\x89PNG..."])
    >>> files_from_image_body(body)
    [b'\\x89PNG...']
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import numpy as np

__all__ = ["FORMATS", "files_from_image_body", "float_body", "image_body"]

#: Request kinds the benchmark sends, in report order.
FORMATS = ("float", "image")


def float_body(batch: np.ndarray) -> bytes:
    """``{"inputs": [...]}`` of float32 ``(N, C, H, W)`` images, UTF-8."""
    return json.dumps({"inputs": np.asarray(batch, dtype=np.float32).tolist()}).encode()


def image_body(files: Sequence[bytes]) -> bytes:
    """``dataframe_split`` with one ``image`` column of base64 files, UTF-8."""
    rows = [[base64.b64encode(f).decode("ascii")] for f in files]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def files_from_image_body(body: bytes) -> list[bytes]:
    """The files an :func:`image_body` carries (what the server decodes)."""
    split = json.loads(body)["dataframe_split"]
    column = split["columns"].index("image")
    return [base64.b64decode(row[column], validate=True) for row in split["data"]]
