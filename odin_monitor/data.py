"""Load image sets into float32 ``(N, C, H, W)`` arrays of pixels in [0, 1].

Sources: ``.npz`` / ``.npy`` files (uint8 ``(N, H, W, C)`` or float ``(N, C, H, W)``),
folders of PNG/JPEG files of any size (resized, or randomly cropped, to the
model's input: the paper's "resize" and "crop" variants), and torchvision datasets
from a local root. Every failure names the file or index and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import numpy as np

from odin_monitor.errors import DataLoadError, InputValidationError
from odin_monitor.preprocess import ImageDecodeError, Preprocessing, decode_image, fit_geometry

if TYPE_CHECKING:
    pass

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_ARRAY_BYTES",
    "load_folder",
    "load_images",
    "load_labels",
    "load_torchvision",
    "read_array",
    "to_float_nchw",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
Fit = Literal["resize", "crop"]
#: Largest array :func:`read_array` accepts, in bytes once converted to float32 (16 GiB:
#: e.g. 1.4 million 3x32x32 or 28,000 3x224x224 images). A header declaring more is
#: refused before anything is allocated; split bigger sets into several files.
MAX_ARRAY_BYTES = 16 * 2**30
# What a corrupt, truncated or hostile file raises while numpy or Pillow read it.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error)


def to_float_nchw(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Convert an image array to float32 ``(N, C, H, W)`` in [0, 1].

    uint8 arrays are taken as ``(N, H, W, C)`` (or ``(N, H, W)`` grayscale) and
    divided by 255; float arrays must already be ``(N, C, H, W)`` in [0, 1].

    Example:
        >>> to_float_nchw(np.full((2, 4, 4, 3), 255, dtype=np.uint8)).shape
        (2, 3, 4, 4)
    """
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4:
            raise InputValidationError(
                f"Expected uint8 `{name}` of shape (N, H, W, C), but got {arr.shape}."
            )
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.ndim != 4:
            raise InputValidationError(
                f"Expected float `{name}` of shape (N, C, H, W), but got {arr.shape}."
            )
        return arr.astype(np.float32, copy=False)
    raise InputValidationError(
        f"Expected `{name}` as uint8 (N, H, W, C) or float (N, C, H, W), but got dtype {arr.dtype}."
    )


def _check_range(x: np.ndarray, source: str) -> np.ndarray:
    if x.shape[0] == 0:
        raise DataLoadError(f"Expected at least one image in {source}, but it holds none.")
    flat = x.reshape(x.shape[0], -1)
    bad = ~(np.isfinite(flat).all(axis=1) & (flat >= 0).all(axis=1) & (flat <= 1).all(axis=1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        finite = flat[i][np.isfinite(flat[i])]
        span = f"[{finite.min():.4g}, {finite.max():.4g}]" if finite.size else "no finite pixel"
        raise DataLoadError(
            f"Expected finite pixels in [0, 1] in {source}, but image {i} is outside: finite "
            f"values span {span}, NaN/inf present: {finite.size < flat[i].size}."
        )
    return x


def load_images(
    path: str | Path,
    *,
    key: str | None = None,
    size: tuple[int, int] | None = None,
    fit: Fit = "resize",
    seed: int = 0,
    limit: int | None = None,
    preprocessing: Preprocessing | None = None,
    report: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Load images from an ``.npz``/``.npy`` file or a folder of image files.

    Args:
        path: File or folder.
        key: Array name inside an ``.npz``; default ``"images"``, or its only array.
        size: ``(H, W)`` the model takes; folders need it when their images differ
            in size. Arrays are returned as stored.
        fit: ``"resize"`` (bilinear, antialiased) or ``"crop"`` (one random crop per
            image, seeded) for folder images of another size.
        seed: Seed of the random crops.
        limit: Keep only the first ``limit`` images.
        preprocessing: For a folder: the full decoding and resizing spec (see
            :func:`load_folder`).
        report: For a folder: called with one line when images were resized.

    Returns:
        float32 ``(N, C, H, W)`` in [0, 1].

    Raises:
        DataLoadError: Missing, unreadable, empty, truncated or oversized file, an
            array of Python objects, wrong layout, no images.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "x.npz")
        >>> np.savez(f, images=np.zeros((3, 8, 8, 3), dtype=np.uint8))
        >>> load_images(f).shape
        (3, 3, 8, 8)
    """
    p = Path(path)
    if not p.exists():
        raise DataLoadError(f"Expected an image file or folder at {p}, but nothing is there.")
    if p.is_dir():
        return load_folder(
            p,
            size=size,
            fit=fit,
            seed=seed,
            limit=limit,
            preprocessing=preprocessing,
            report=report,
        )
    arr = read_array(p, key=key)
    if limit is not None:
        arr = arr[:limit]
    try:
        x = to_float_nchw(arr, name=str(p))
    except InputValidationError as err:
        raise DataLoadError(str(err)) from err
    return _check_range(x, str(p))


def load_labels(path: str | Path, *, limit: int | None = None) -> np.ndarray | None:
    """The ``labels`` array of an ``.npz`` of images, if it has one (else ``None``).

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "x.npz")
        >>> np.savez(f, images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([3, 1]))
        >>> load_labels(f).tolist()
        [3, 1]
    """
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return None
    try:
        with zipfile.ZipFile(p) as archive:
            if "labels.npy" not in archive.namelist():
                return None
    except zipfile.BadZipFile:
        return None
    labels = read_array(p, key="labels").reshape(-1)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataLoadError(f"Expected integer class labels in {p}, but got dtype {labels.dtype}.")
    return labels[:limit] if limit is not None else labels


def read_array(
    path: str | Path, *, key: str | None = None, max_bytes: int = MAX_ARRAY_BYTES
) -> np.ndarray:
    """Read one array from a ``.npy`` or ``.npz`` file, refusing what should not be loaded.

    Before anything is allocated, the ``.npy`` header is read and checked: the data it
    declares must be present in the file (or the zip member) and, as float32, fit in
    ``max_bytes``. Arrays of Python objects are refused (loading them runs pickle).
    Truncated, empty or corrupt files raise :class:`DataLoadError`, never numpy's or
    zipfile's own errors.

    Args:
        path: A ``.npy`` file, or an ``.npz`` archive.
        key: Array name inside an ``.npz``; default ``"images"``, or its only array.
        max_bytes: Largest accepted array, in bytes once converted to float32.

    Returns:
        The stored array, as stored (any layout, dtype not object).

    Raises:
        DataLoadError: With the file, what was expected and what came.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(f, np.zeros((2, 4, 4, 3), dtype=np.uint8))
        >>> read_array(f).shape
        (2, 4, 4, 3)
    """
    p = Path(path)
    if p.suffix.lower() not in (".npz", ".npy"):
        raise DataLoadError(
            f"Expected a .npz or .npy file or a folder of images, but got {p.name!r}."
        )
    try:
        n_bytes = p.stat().st_size
    except OSError as err:
        raise DataLoadError(f"Cannot read {p}: {err}. Expected a readable numpy file.") from err
    if n_bytes == 0:
        raise DataLoadError(
            f"Expected a numpy {p.suffix} file, but {p} is empty (0 bytes): it was probably "
            "cut short while written. Write it again elsewhere, then move it in."
        )
    try:
        if p.suffix.lower() == ".npy":
            with open(p, "rb") as f:
                _check_npy_header(f, n_bytes, max_bytes, str(p))
            return np.load(p, allow_pickle=False)
        with zipfile.ZipFile(p) as archive:
            name = _pick_member(archive, key, p)
            member = archive.getinfo(name)
            with archive.open(member) as f:
                _check_npy_header(f, member.file_size, max_bytes, f"{p}[{name[:-4]!r}]")
            with np.load(p, allow_pickle=False) as loaded:
                return np.asarray(loaded[name[:-4]])
    except DataLoadError:
        raise
    except zipfile.BadZipFile as err:
        raise DataLoadError(
            f"Cannot read {p}: expected a complete .npz (zip) archive, but it is truncated or "
            f"corrupt ({err}). Write it again (numpy.savez) elsewhere, then move it in."
        ) from err
    except _READ_ERRORS as err:
        raise DataLoadError(f"Cannot read {p}: {err}. Expected a numpy .npz/.npy file.") from err


def _check_npy_header(f: IO[bytes], size: int, max_bytes: int, source: str) -> None:
    """Read a ``.npy`` header from ``f`` and check the data it declares against ``size``."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:  # 3.0 only serves structured dtypes with non-Latin-1 field names
        raise DataLoadError(
            f"Expected a .npy of format version 1.0 or 2.0 in {source}, but got {version}; "
            "save a plain uint8 or float array with numpy.save."
        )
    if dtype.hasobject:
        raise DataLoadError(
            f"Expected a uint8 or float array in {source}, but it holds Python objects "
            f"(dtype {dtype}), which only load by unpickling. Save a plain numeric array."
        )
    if any(d < 0 for d in shape):
        raise DataLoadError(f"Expected a shape of sizes >= 0 in {source}, but got {shape}.")
    n_values = math.prod(shape)
    declared = n_values * dtype.itemsize
    present = size - f.tell()
    if declared > present:
        raise DataLoadError(
            f"Expected the {declared:,} bytes of data that the header of {source} declares "
            f"(shape {shape}, dtype {dtype}), but only {present:,} follow: the file is "
            "truncated or its header is forged. Write it again, then move it in."
        )
    if n_values * 4 > max_bytes:
        raise DataLoadError(
            f"Expected at most {max_bytes:,} bytes as float32 in {source}, but its shape "
            f"{shape} needs {n_values * 4:,}. Split it into smaller batches."
        )


def _pick_member(archive: zipfile.ZipFile, key: str | None, p: Path) -> str:
    """The zip member name (``<key>.npy``) of the array to read from an ``.npz``."""
    names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    if key is None:
        key = "images" if "images" in names else (names[0] if len(names) == 1 else None)
    if key is None or key not in names:
        raise DataLoadError(
            f"Expected an array named {key or 'images'!r} in {p}, but it holds {names}. "
            "Pass key=... to choose one."
        )
    return f"{key}.npy"


def load_folder(
    folder: str | Path,
    *,
    size: tuple[int, int] | None = None,
    fit: Fit = "resize",
    seed: int = 0,
    limit: int | None = None,
    channels: int = 3,
    preprocessing: Preprocessing | None = None,
    report: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Load every image file in a folder (recursively, sorted by path).

    Each file goes through :mod:`odin_monitor.preprocess`, the same decoding and
    resizing a served model applies to the same file's bytes.

    Args:
        folder: The folder.
        size: ``(H, W)`` of the output; default the size of the first image.
        fit: ``"resize"`` (an exact resize) or ``"crop"`` (a random crop, padded by
            reflection when the image is smaller: for building OOD sets).
        seed: Seed of the random crops.
        limit: Keep only the first ``limit`` files.
        channels: 3 for RGB, 1 for grayscale.
        preprocessing: The full spec (then ``size``, ``fit`` and ``channels`` are not
            used): what a model's record says.
        report: Called with one line when images were resized (from which sizes, to
            which, how).

    Returns:
        float32 ``(N, C, H, W)`` in [0, 1].

    Raises:
        DataLoadError: No image file, or one that cannot be decoded, is over the pixel
            limit (a decompression bomb), or holds values outside its range.

    8-bit images are divided by 255; 16-bit grayscale (``I;16``, ``I``) by 65535, then
    repeated over the channels: never clipped to 8 bits. Pillow opens 16-bit colour
    PNGs as 8-bit ``RGB`` (the high byte), within 1/255 of the value.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> d = tempfile.mkdtemp()
        >>> Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(f"{d}/white.png")
        >>> load_folder(d).max()
        np.float32(1.0)
    """
    if fit not in ("resize", "crop"):
        raise InputValidationError(f"Expected fit='resize' or 'crop', but got {fit!r}.")
    if channels not in (1, 3):
        raise InputValidationError(f"Expected channels=1 or 3, but got {channels!r}.")
    root = Path(folder)
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise DataLoadError(
            f"Expected image files ({', '.join(IMAGE_SUFFIXES)}) in {root}, but found none."
        )
    rng = np.random.default_rng(seed)
    spec = preprocessing
    out: list[np.ndarray] = []
    resized: dict[tuple[int, int], int] = {}
    for f in files:
        decoded = _decode_file(f, spec or _loose_spec(channels))
        if spec is None:
            spec = Preprocessing(
                size=size or (int(decoded.shape[0]), int(decoded.shape[1])),
                mode="RGB" if channels == 3 else "L",
            )
        if decoded.shape[:2] != spec.size:
            key = (int(decoded.shape[0]), int(decoded.shape[1]))
            resized[key] = resized.get(key, 0) + 1
        if fit == "crop" and preprocessing is None:
            out.append(_random_crop(decoded, spec.size, rng).transpose(2, 0, 1))
        else:
            try:
                out.append(fit_geometry(decoded, spec, str(f)))
            except ImageDecodeError as err:
                raise DataLoadError(str(err)) from None
    if report is not None and resized and spec is not None:
        how = "random crop" if fit == "crop" and preprocessing is None else spec.describe()
        sizes = ", ".join(f"{h}x{w}: {n}" for (h, w), n in sorted(resized.items()))
        report(
            f"resized {sum(resized.values())} of {len(files)} images in {root} to "
            f"{spec.size[0]}x{spec.size[1]} (from {sizes}); {how}"
        )
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _loose_spec(channels: int) -> Preprocessing:
    """Decoding rules only (the size is taken from the first image)."""
    return Preprocessing(size=(1, 1), mode="RGB" if channels == 3 else "L")


def _decode_file(f: Path, spec: Preprocessing) -> np.ndarray:
    from PIL import Image

    try:
        data = f.read_bytes()
    except OSError as err:
        raise DataLoadError(f"Cannot read image {f}: {err}.") from err
    # Pillow's own limit, where a user lowered it, applies too.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and limit < spec.max_pixels:
        spec = dataclasses.replace(spec, max_pixels=int(limit))
    try:
        return decode_image(data, spec, str(f))
    except ImageDecodeError as err:
        raise DataLoadError(str(err)) from None


def _random_crop(x: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = size
    pad_h, pad_w = max(0, h - x.shape[0]), max(0, w - x.shape[1])
    if pad_h or pad_w:
        x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    top = int(rng.integers(0, x.shape[0] - h + 1))
    left = int(rng.integers(0, x.shape[1] - w + 1))
    return np.ascontiguousarray(x[top : top + h, left : left + w])


def load_torchvision(
    name: str,
    root: str | Path,
    *,
    train: bool = False,
    download: bool = False,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a torchvision dataset (e.g. ``"CIFAR10"``, ``"SVHN"``) from a local root.

    Nothing is downloaded unless ``download=True``.

    Returns:
        ``(images, labels)``: float32 ``(N, C, H, W)`` in [0, 1] and int64 ``(N,)``.
    """
    import torchvision.datasets as tvd

    cls = getattr(tvd, name, None)
    if cls is None:
        raise DataLoadError(f"Expected a torchvision dataset name such as 'CIFAR10', got {name!r}.")
    try:
        if name == "SVHN":
            ds = cls(str(root), split="train" if train else "test", download=download)
        else:
            ds = cls(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        raise DataLoadError(
            f"Cannot load torchvision {name} from {root}: {err}. Put the dataset there, or pass "
            "download=True (needs internet)."
        ) from err
    n = len(ds) if limit is None else min(limit, len(ds))
    images, labels = [], []
    for i in range(n):
        img, label = ds[i]
        images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        labels.append(int(label))
    return to_float_nchw(np.stack(images)), np.asarray(labels, dtype=np.int64)
