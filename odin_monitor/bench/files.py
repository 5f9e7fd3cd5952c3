"""Real images as encoded files, for the benchmarks that send or read files.

The serving, Spark and decode benchmarks start from the uint8 arrays of the shared data
folder and encode them with Pillow (PNG: lossless, so the decoded pixels are the array's
own; JPEG at a stated quality), in memory or into a folder.

Example:
    >>> files = encode_images(np.zeros((2, 4, 4, 3), np.uint8), "PNG")
    >>> [f[:4] for f in files]
    [b'\\x89PNG', b'\\x89PNG']
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from odin_monitor.bench.common import data_file

__all__ = ["FILE_FORMATS", "encode_images", "load_uint8", "noise_uint8", "write_image_folder"]

#: Encodings the benchmarks write: Pillow format name -> file suffix.
FILE_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}


def load_uint8(data_dir: Path, name: str, limit: int | None = None) -> np.ndarray:
    """The ``images`` array of a data-folder ``.npz``: uint8 ``(N, H, W, C)``, first ``limit``.

    Raises:
        DataLoadError: The file is missing (the message names it and the data folder).
    """
    with np.load(data_file(data_dir, name)) as archive:
        images = archive["images"]
    return np.ascontiguousarray(images if limit is None else images[:limit])


def noise_uint8(n: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """``n`` seeded uniform-noise images, uint8 ``(n, H, W, C)`` for a ``(C, H, W)`` input."""
    c, h, w = shape
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def encode_images(images: np.ndarray, fmt: str = "PNG", *, quality: int = 90) -> list[bytes]:
    """Encode uint8 ``(N, H, W, C)`` images (C = 1 or 3) as files, one ``bytes`` each.

    Args:
        images: uint8 ``(N, H, W, C)``.
        fmt: ``"PNG"`` (lossless) or ``"JPEG"`` (``quality``, Pillow's default 4:2:0).
        quality: JPEG quality (1-95).

    Raises:
        ValueError: Another format, dtype or shape.
    """
    from PIL import Image

    if fmt not in FILE_FORMATS:
        raise ValueError(f"Expected a format in {sorted(FILE_FORMATS)}, but got {fmt!r}.")
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] not in (1, 3):
        raise ValueError(
            f"Expected uint8 images (N, H, W, 1 or 3), but got {arr.dtype} {arr.shape}."
        )
    options = {"quality": int(quality)} if fmt == "JPEG" else {}
    out = []
    for image in arr:
        buf = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(buf, fmt, **options)
        out.append(buf.getvalue())
    return out


def write_image_folder(files: Sequence[bytes], folder: Path, suffix: str) -> list[Path]:
    """Write ``files`` as ``folder/img-00000<suffix>``, ...; returns the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(files) - 1)))
    paths = []
    for i, data in enumerate(files):
        path = folder / f"img-{i:0{width}d}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths
