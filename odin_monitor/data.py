"""Load image sets into float32 ``(N, C, H, W)`` arrays of pixels in [0, 1].

Sources: ``.npz`` / ``.npy`` files (uint8 ``(N, H, W, C)`` or float ``(N, C, H, W)``),
folders of PNG/JPEG files of any size (resized, or randomly cropped, to the
model's input: the paper's "resize" and "crop" variants), and torchvision datasets
from a local root. Every failure names the file or index and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from odin_monitor.errors import DataLoadError, InputValidationError

__all__ = ["IMAGE_SUFFIXES", "load_folder", "load_images", "load_torchvision", "to_float_nchw"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
Fit = Literal["resize", "crop"]


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

    Returns:
        float32 ``(N, C, H, W)`` in [0, 1].

    Raises:
        DataLoadError: Missing or unreadable file, wrong layout, no images.

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
        return load_folder(p, size=size, fit=fit, seed=seed, limit=limit)
    if p.suffix not in (".npz", ".npy"):
        raise DataLoadError(
            f"Expected a .npz or .npy file or a folder of images, but got {p.name!r}."
        )
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            with np.load(p, allow_pickle=False) as loaded:
                arr = _pick_array(loaded, key, p)
    except (OSError, ValueError) as err:
        raise DataLoadError(f"Cannot read {p}: {err}. Expected a numpy .npz/.npy file.") from err
    if limit is not None:
        arr = arr[:limit]
    try:
        x = to_float_nchw(arr, name=str(p))
    except InputValidationError as err:
        raise DataLoadError(str(err)) from err
    return _check_range(x, str(p))


def _pick_array(loaded: np.lib.npyio.NpzFile, key: str | None, p: Path) -> np.ndarray:
    names = list(loaded.keys())
    if key is None:
        key = "images" if "images" in names else (names[0] if len(names) == 1 else None)
    if key is None or key not in names:
        raise DataLoadError(
            f"Expected an array named {key or 'images'!r} in {p}, but it holds {names}. "
            "Pass key=... to choose one."
        )
    return np.asarray(loaded[key])


def load_folder(
    folder: str | Path,
    *,
    size: tuple[int, int] | None = None,
    fit: Fit = "resize",
    seed: int = 0,
    limit: int | None = None,
    channels: int = 3,
) -> np.ndarray:
    """Load every image file in a folder (recursively, sorted by path).

    Args:
        folder: The folder.
        size: ``(H, W)`` of the output; default the size of the first image, in
            which case every image must have it.
        fit: ``"resize"`` or ``"crop"`` (random crop, padded by reflection when
            the image is smaller).
        seed: Seed of the random crops.
        limit: Keep only the first ``limit`` files.
        channels: 3 for RGB, 1 for grayscale.

    Returns:
        float32 ``(N, C, H, W)`` in [0, 1].
    """
    from PIL import Image, UnidentifiedImageError

    if fit not in ("resize", "crop"):
        raise InputValidationError(f"Expected fit='resize' or 'crop', but got {fit!r}.")
    root = Path(folder)
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise DataLoadError(
            f"Expected image files ({', '.join(IMAGE_SUFFIXES)}) in {root}, but found none."
        )
    rng = np.random.default_rng(seed)
    mode = "RGB" if channels == 3 else "L"
    out: list[np.ndarray] = []
    for f in files:
        try:
            with Image.open(f) as im:
                img = im.convert(mode)
                img.load()
        except (UnidentifiedImageError, OSError) as err:
            raise DataLoadError(f"Cannot read image {f}: {err}.") from err
        if size is None:
            size = (img.height, img.width)
        h, w = size
        if (img.height, img.width) != (h, w):
            if fit == "resize":
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            else:
                arr = np.asarray(img)
                pad_h, pad_w = max(0, h - arr.shape[0]), max(0, w - arr.shape[1])
                if pad_h or pad_w:
                    pads = ((0, pad_h), (0, pad_w)) + (((0, 0),) if arr.ndim == 3 else ())
                    arr = np.pad(arr, pads, mode="reflect")
                top = int(rng.integers(0, arr.shape[0] - h + 1))
                left = int(rng.integers(0, arr.shape[1] - w + 1))
                img = Image.fromarray(arr[top : top + h, left : left + w])
        arr = np.asarray(img, dtype=np.uint8)
        out.append(arr if arr.ndim == 3 else arr[..., None])
    return to_float_nchw(np.stack(out), name=str(root))


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
