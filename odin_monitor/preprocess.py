"""How an encoded image becomes the model's input: one implementation, versioned as data.

A :class:`Preprocessing` spec travels in the calibration record (JSON, hashed with it),
so calibrating from image folders, scoring folders from the CLI, the served pyfunc
(base64 images over REST) and Spark (``binaryFile`` bytes) all turn the same file into
the same tensor, bit for bit:

1. **decode** (:func:`decode_image`): JPEG, PNG, WebP, BMP or GIF (first frame) with
   Pillow, from bytes, no network and no shell. Refused before any pixel is decoded:
   more than ``max_bytes`` bytes, more than ``max_pixels`` pixels (decompression bombs),
   another format. EXIF orientation is applied when ``exif_orientation``.
2. **colour** to ``mode`` (``"RGB"`` or ``"L"``): palette images are expanded; alpha is
   composited onto white or black, or refused (``alpha``); 16-bit grey (``I;16``, ``I``)
   is divided by 65535, or refused (``high_bit_depth``); 8-bit values are divided by 255
   (float32), as :func:`odin_monitor.data.to_float_nchw` does for arrays.
3. **geometry** (:func:`fit_geometry`) to ``size`` = ``(H, W)``: ``"exact"`` resize,
   ``"shorter_side_crop"`` (scale so the image covers ``size``, then centre crop), or
   ``"none"`` (refuse another size). The resize is ``torch.nn.functional.interpolate``
   with the named ``interpolation`` and ``antialias``; values are clipped to [0, 1]
   (bicubic overshoots). An image already of ``size`` is not touched.

The normalisation ``(x − μ)/σ`` stays with the detector, as before.

Example:
    >>> spec = Preprocessing(size=(32, 32))
    >>> spec.describe()
    'RGB, exact resize to 32x32 (bilinear, antialias), alpha on white, 16-bit scaled'
    >>> Preprocessing.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from odin_monitor.errors import InputValidationError

__all__ = [
    "FORMATS",
    "ImageDecodeError",
    "Preprocessing",
    "decode_image",
    "fit_geometry",
    "preprocess_images",
]

#: Pillow format names accepted (camera multi-picture JPEGs open through JPEG).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
Mode = Literal["RGB", "L"]
Resize = Literal["exact", "shorter_side_crop", "none"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "area"]
Alpha = Literal["white", "black", "refuse"]
HighBitDepth = Literal["scale", "refuse"]

_CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": ("RGB", "L"),
    "resize": ("exact", "shorter_side_crop", "none"),
    "interpolation": ("nearest", "bilinear", "bicubic", "area"),
    "alpha": ("white", "black", "refuse"),
    "high_bit_depth": ("scale", "refuse"),
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_MAX_SIDE = 16384


class ImageDecodeError(InputValidationError):
    """An encoded image cannot become a model input under the spec (the message names it)."""


@dataclass(frozen=True)
class Preprocessing:
    """How a raw image file becomes a float ``(C, H, W)`` in [0, 1] (see the module doc).

    Attributes:
        size: ``(H, W)`` of the model's input.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (1 channel).
        resize: ``"exact"``, ``"shorter_side_crop"`` or ``"none"``.
        interpolation: ``"nearest"``, ``"bilinear"``, ``"bicubic"`` or ``"area"``.
        antialias: Low-pass before downscaling (bilinear and bicubic).
        alpha: Composite transparency onto ``"white"`` or ``"black"``, or ``"refuse"``.
        high_bit_depth: ``"scale"`` 16-bit grey by 1/65535, or ``"refuse"`` it.
        exif_orientation: Rotate as the EXIF orientation tag says.
        max_bytes: Largest encoded file accepted.
        max_pixels: Largest ``width × height`` decoded (decompression-bomb guard).
    """

    size: tuple[int, int]
    mode: Mode = "RGB"
    resize: Resize = "exact"
    interpolation: Interpolation = "bilinear"
    antialias: bool = True
    alpha: Alpha = "white"
    high_bit_depth: HighBitDepth = "scale"
    exif_orientation: bool = True
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        size = tuple(self.size)
        if len(size) != 2 or not all(type(s) is int and 1 <= s <= _MAX_SIDE for s in size):
            raise InputValidationError(
                f"Expected `size` = (H, W) of two integers in [1, {_MAX_SIDE}], but got "
                f"{self.size!r}."
            )
        object.__setattr__(self, "size", size)
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputValidationError(
                    f"Expected `{name}` in {allowed}, but got {getattr(self, name)!r}."
                )
        for name in ("antialias", "exif_orientation"):
            if not isinstance(getattr(self, name), bool):
                raise InputValidationError(
                    f"Expected `{name}` True or False, but got {getattr(self, name)!r}."
                )
        for name in ("max_bytes", "max_pixels"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= 2**31:
                raise InputValidationError(
                    f"Expected `{name}` an integer in [1, 2**31], but got {value!r}."
                )

    @property
    def channels(self) -> int:
        """``C``: 3 for RGB, 1 for L."""
        return 3 if self.mode == "RGB" else 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the produced tensor."""
        return (self.channels, *self.size)

    @classmethod
    def for_input_shape(cls, input_shape: Sequence[int], **kwargs: Any) -> Preprocessing:
        """The default spec for a model input ``(C, H, W)`` (C = 3: RGB, 1: L).

        Example:
            >>> Preprocessing.for_input_shape((1, 8, 8)).mode
            'L'
        """
        c, h, w = (int(v) for v in input_shape)
        if c not in (1, 3):
            raise InputValidationError(
                f"Expected an input of 1 or 3 channels to decode images into, but got {c}."
            )
        return cls(size=(h, w), mode="RGB" if c == 3 else "L", **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["size"] = list(self.size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; refuses unknown keys (the record may be hostile).

        Raises:
            InputValidationError: A key or value outside the spec.
        """
        if not isinstance(data, Mapping):
            raise InputValidationError(f"Expected a preprocessing dict, but got {type(data)}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputValidationError(
                f"Expected preprocessing keys {sorted(known)}, got {unknown}."
            )
        values = dict(data)
        if "size" in values:
            size = values["size"]
            values["size"] = tuple(size) if isinstance(size, (list, tuple)) else size
        return cls(**values)

    def describe(self) -> str:
        """One line a person reads (registry tag, CLI output)."""
        h, w = self.size
        geometry = {
            "exact": f"exact resize to {h}x{w}",
            "shorter_side_crop": f"shorter side to cover {h}x{w}, centre crop",
            "none": f"no resize (must be {h}x{w})",
        }[self.resize]
        how = (
            ""
            if self.resize == "none"
            else (f" ({self.interpolation}{', antialias' if self.antialias else ''})")
        )
        alpha = "alpha refused" if self.alpha == "refuse" else f"alpha on {self.alpha}"
        depth = "16-bit scaled" if self.high_bit_depth == "scale" else "16-bit refused"
        return f"{self.mode}, {geometry}{how}, {alpha}, {depth}"


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def _looks_like(data: bytes) -> str | None:
    """The format a file's first bytes announce, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


def _open(data: bytes, spec: Preprocessing, where: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise ImageDecodeError(f"{where}: expected an encoded image, but got 0 bytes.")
    if len(data) > spec.max_bytes:
        raise ImageDecodeError(
            f"{where}: expected at most {spec.max_bytes:,} bytes per image, but got "
            f"{len(data):,}. Resize it before sending, or raise max_bytes in the spec."
        )
    Image.init()  # register every plugin, so that the format list below resolves
    try:
        im = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except UnidentifiedImageError:
        looks = _looks_like(data)
        if looks is not None:
            raise ImageDecodeError(
                f"{where}: the {looks} file is truncated or corrupt (its header cannot be read)."
            ) from None
        head = data[:8].hex(" ")
        raise ImageDecodeError(
            f"{where}: expected an image file ({', '.join(FORMATS)}), but the bytes are "
            f"none of these (starting {head})."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"{where}: a decompression bomb ({err}).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageDecodeError(f"{where}: cannot decode the image ({err}).") from None
    pixels = im.width * im.height
    if pixels > spec.max_pixels:
        raise ImageDecodeError(
            f"{where}: expected at most {spec.max_pixels:,} pixels, but the image is "
            f"{im.width}x{im.height} = {pixels:,} (a decompression bomb, or far larger than "
            "the model's input). Resize it before sending."
        )
    return im


def _to_float(im: Any, spec: Preprocessing, where: str) -> np.ndarray:
    """The decoded image as float32 ``(H, W, C)`` in [0, 1]."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT:
        if spec.high_bit_depth == "refuse":
            raise ImageDecodeError(
                f"{where}: a 16-bit image (mode {im.mode}), which this model's preprocessing "
                "refuses; send 8-bit images."
            )
        values = np.asarray(im)
        if values.min() < 0 or values.max() > 65535:
            raise ImageDecodeError(
                f"{where}: expected 16-bit values in [0, 65535], but got "
                f"[{values.min()}, {values.max()}]."
            )
        plane = (values.astype(np.float64) / 65535).astype(np.float32)
        return np.repeat(plane[..., None], spec.channels, axis=2)
    if im.mode not in ("1", "L", "P", "PA", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "RGBX", "La"):
        raise ImageDecodeError(f"{where}: unsupported image mode {im.mode!r}.")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La"):
        if spec.alpha == "refuse":
            raise ImageDecodeError(
                f"{where}: the image has transparency (mode {im.mode}), which this model's "
                "preprocessing refuses; flatten it first."
            )
        background = Image.new("RGBA", im.size, (255, 255, 255, 255) if spec.alpha == "white"
                               else (0, 0, 0, 255))  # fmt: skip
        im = Image.alpha_composite(background, im.convert("RGBA"))
    arr = np.asarray(im.convert(spec.mode))
    arr = arr[..., None] if arr.ndim == 2 else arr
    # The arithmetic of odin_monitor.data.to_float_nchw: float32 / float32(255).
    return arr.astype(np.float32) / np.float32(255)


def decode_image(data: bytes, spec: Preprocessing, where: str = "image") -> np.ndarray:
    """Decode an encoded image to float32 ``(H, W, C)`` in [0, 1] at its own size.

    Args:
        data: The file's bytes.
        spec: The :class:`Preprocessing` (format, limits, colour rules).
        where: How the image is named in errors (``"row 3"``, a file name).

    Raises:
        ImageDecodeError: Not an accepted image, over a limit, truncated, corrupt, or
            refused by the spec's colour rules.

    Example:
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("L", (3, 2), 255).save(buf, "PNG")
        >>> decode_image(buf.getvalue(), Preprocessing(size=(2, 3))).shape
        (2, 3, 3)
    """
    from PIL import Image, ImageOps

    im = _open(bytes(data), spec, where)
    try:
        with im:
            im.seek(0)  # the first frame of an animation
            if spec.exif_orientation:
                im = ImageOps.exif_transpose(im)
            im.load()
            return _to_float(im, spec, where)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"{where}: a decompression bomb ({err}).") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as err:
        raise ImageDecodeError(
            f"{where}: the image is truncated or corrupt ({type(err).__name__}: {err})."
        ) from None


def fit_geometry(image: np.ndarray, spec: Preprocessing, where: str = "image") -> np.ndarray:
    """Bring a decoded ``(H0, W0, C)`` image to the spec's ``(C, H, W)``.

    Raises:
        ImageDecodeError: ``resize="none"`` and the size differs.

    Example:
        >>> fit_geometry(np.zeros((4, 6, 3), np.float32), Preprocessing(size=(2, 2))).shape
        (3, 2, 2)
    """
    import torch
    import torch.nn.functional as F

    h0, w0 = image.shape[:2]
    h, w = spec.size
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    if (h0, w0) == (h, w):
        return chw
    if spec.resize == "none":
        raise ImageDecodeError(
            f"{where}: expected a {h}x{w} image (this model does not resize), but got {h0}x{w0}."
        )
    x = torch.from_numpy(chw)[None]
    if spec.resize == "exact":
        target, crop = (h, w), None
    else:
        scale = max(h / h0, w / w0)
        target = (max(h, round(h0 * scale)), max(w, round(w0 * scale)))
        crop = ((target[0] - h) // 2, (target[1] - w) // 2)
    if spec.interpolation == "area":
        y = (
            F.adaptive_avg_pool2d(x, target)
            if target[0] <= h0 and target[1] <= w0
            else (
                F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=False)
            )
        )
    elif spec.interpolation == "nearest":
        y = F.interpolate(x, size=target, mode="nearest-exact")
    else:
        y = F.interpolate(
            x, size=target, mode=spec.interpolation, align_corners=False, antialias=spec.antialias
        )
    if crop is not None:
        y = y[:, :, crop[0] : crop[0] + h, crop[1] : crop[1] + w]
    return np.ascontiguousarray(y[0].clamp_(0.0, 1.0).numpy(), dtype=np.float32)


def _as_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ImageDecodeError(
                f"{where}: expected the image file's bytes or their base64 text, but got a "
                f"string that is not base64 ({value[:24]!r}...)."
            ) from None
    raise ImageDecodeError(
        f"{where}: expected the image file's bytes, but got {type(value).__name__}."
    )


def preprocess_images(
    images: Sequence[Any], spec: Preprocessing, *, names: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Decode and fit a batch of encoded images (bytes, or base64 text).

    Every row is tried; one error lists every bad row, so no partial result is ever
    returned for a batch with a bad image.

    Args:
        images: One encoded image per row.
        spec: The :class:`Preprocessing`.
        names: How rows are named in errors (default ``"row <i>"``).

    Returns:
        ``(batch, resized)``: float32 ``(N, C, H, W)`` in [0, 1], and how many images
        of each original ``(H0, W0)`` were resized.

    Raises:
        ImageDecodeError: No image, or any bad row (all of them named).
    """
    if len(images) == 0:
        raise ImageDecodeError("Expected at least one image, but the image column is empty.")
    out: list[np.ndarray] = []
    errors: list[str] = []
    resized: dict[tuple[int, int], int] = {}
    for i, value in enumerate(images):
        where = names[i] if names is not None else f"row {i}"
        try:
            decoded = decode_image(_as_bytes(value, where), spec, where)
            if decoded.shape[:2] != spec.size:
                key = (int(decoded.shape[0]), int(decoded.shape[1]))
                resized[key] = resized.get(key, 0) + 1
            out.append(fit_geometry(decoded, spec, where))
        except ImageDecodeError as err:
            errors.append(str(err))
    if errors:
        shown = "; ".join(errors[:10]) + (
            f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
        )
        raise ImageDecodeError(
            f"{len(errors)} of {len(images)} images cannot be used, nothing was scored: {shown}"
        )
    return np.stack(out), resized
