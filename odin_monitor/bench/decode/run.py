"""Measuring decode cost: Pillow (the product path) vs torchvision.io, beside the ODIN pass.

For each file format (PNG, JPEG) the same ``n`` real images are encoded once, then
decoded to float32 ``(N, C, H, W)`` in [0, 1] by:

* ``pillow``: :func:`odin_monitor.preprocess.preprocess_images` (what serving, Spark and
  the CLI run: decode, colour rules, geometry);
* ``torchvision.io.decode_image``: one call per file, then stack and ``/ 255`` (the
  arithmetic of :func:`odin_monitor.data.to_float_nchw`); no resize is needed because the
  files already have the model's size;
* ``torchvision.io.decode_jpeg(list)``: the batched JPEG call (JPEG only);
* ``torchvision.io.decode_jpeg(list, device="cuda")``: GPU (nvJPEG) decode, when CUDA is
  available.

Each is timed (median of ``repeats`` after one warm-up) and compared with the Pillow
tensors: the largest |difference| and whether they are bit-identical. The ODIN pass
(``score_batch`` on decoded tensors, same batch) is timed beside them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odin_monitor.bench.common import Log, command_line, machine_info
from odin_monitor.bench.files import encode_images, load_uint8, noise_uint8
from odin_monitor.bench.resnet20 import find_data_dir, fit_resnet20

__all__ = ["DecodeResult", "DecodeRow", "run_decode"]

_LOSSLESS = "cifar10_test_lossless.npz"


@dataclass(frozen=True)
class DecodeRow:
    """One decoder on one file format.

    Attributes:
        file_format: ``"PNG"`` or ``"JPEG"``.
        method: The decoder.
        ms_per_image: Median seconds of decoding the batch, per image, in ms.
        speedup: Pillow's time over this one's (> 1: faster than Pillow).
        max_abs_diff: Largest |this - Pillow| over every value of the batch.
        differing_fraction: Fraction of values that differ from Pillow's.
        identical: Bit-identical float32 tensors to Pillow's.
    """

    file_format: str
    method: str
    ms_per_image: float
    speedup: float
    max_abs_diff: float
    differing_fraction: float
    identical: bool


@dataclass(frozen=True)
class DecodeResult:
    """A whole decode benchmark run (see the module doc)."""

    command: str
    machine: dict[str, str]
    images_source: str
    n_images: int
    jpeg_quality: int
    repeats: int
    odin_ms_per_image: float
    model: str
    rows: tuple[DecodeRow, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def fastest(self, file_format: str) -> DecodeRow:
        """The fastest decoder of a format."""
        return min((r for r in self.rows if r.file_format == file_format),
                   key=lambda r: r.ms_per_image)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _median_s(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _to_float(batch: torch.Tensor) -> np.ndarray:
    # The arithmetic of odin_monitor.data.to_float_nchw: float32 / float32(255).
    return (batch.to(torch.float32) / torch.tensor(255, dtype=torch.float32)).numpy()


def _pillow(files: Sequence[bytes], spec: Any) -> np.ndarray:
    from odin_monitor.preprocess import preprocess_images

    return preprocess_images(files, spec)[0]


def _decoders(file_format: str) -> dict[str, Callable[[Sequence[bytes]], np.ndarray]]:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    def tensors(files: Sequence[bytes]) -> list[torch.Tensor]:
        return [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in files]

    def per_file(files: Sequence[bytes]) -> np.ndarray:
        decoded = [decode_image(t, mode=ImageReadMode.RGB) for t in tensors(files)]
        return _to_float(torch.stack(decoded))

    out: dict[str, Callable[[Sequence[bytes]], np.ndarray]] = {
        "torchvision.io.decode_image, per file": per_file
    }
    if file_format == "JPEG":

        def batched(files: Sequence[bytes]) -> np.ndarray:
            return _to_float(torch.stack(decode_jpeg(tensors(files), mode=ImageReadMode.RGB)))

        out["torchvision.io.decode_jpeg(list)"] = batched
        if torch.cuda.is_available():

            def gpu(files: Sequence[bytes]) -> np.ndarray:
                got = decode_jpeg(tensors(files), mode=ImageReadMode.RGB, device="cuda")
                batch = torch.stack(got).to(torch.float32) / 255
                torch.cuda.synchronize()
                return batch.cpu().numpy()

            out["torchvision.io.decode_jpeg(list, device='cuda')"] = gpu
    return out


def run_decode(
    *,
    data_dir: Path | None = None,
    n_images: int = 256,
    file_formats: Sequence[str] = ("PNG", "JPEG"),
    jpeg_quality: int = 90,
    repeats: int = 7,
    seed: int = 0,
    log: Log | None = None,
) -> DecodeResult:
    """Time decoders on ``n_images`` real images per format, beside the ODIN pass.

    Args:
        data_dir: The data folder (``cifar10_test_lossless.npz``, ResNet-20 weights);
            default ``$ODIN_SHARED_DATA``, else ``../shared/data``; without one, seeded
            noise and a random-weight ResNet-20 (said in the notes).
        n_images: Images per batch (the ODIN pass runs on the same batch).
        file_formats: ``"PNG"`` and/or ``"JPEG"``.
        jpeg_quality: Pillow quality of the JPEG files.
        repeats: Timed repeats per decoder, after one warm-up.
        seed: Seed of the noise fallback.
        log: Progress sink.

    Raises:
        ValueError: A bad argument.
    """
    from odin_monitor.preprocess import Preprocessing

    if n_images < 1 or repeats < 1:
        raise ValueError(f"Expected n_images, repeats >= 1, got {n_images}, {repeats}.")
    say: Log = log or (lambda _line: None)
    data = find_data_dir(data_dir)
    machine = machine_info("cuda" if torch.cuda.is_available() else "cpu")  # load at the start
    notes: list[str] = []
    if data is not None and (data / _LOSSLESS).is_file():
        pixels = load_uint8(data, _LOSSLESS, n_images)
        source = f"the first {len(pixels)} images of {_LOSSLESS}"
    else:
        pixels = noise_uint8(n_images, (3, 32, 32), seed)
        source = f"{n_images} seeded uniform-noise images (no data folder)"
        notes.append("No data folder: noise images and a random-weight ResNet-20.")
    det, model, _ = fit_resnet20(data, seed, say)
    spec = Preprocessing.for_input_shape(det.input_shape_)

    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    say(f"ODIN pass on {len(x)} images")
    odin_s, _ = _median_s(lambda: det.score_batch(x), repeats)
    rows: list[DecodeRow] = []
    for fmt in file_formats:
        files = encode_images(pixels, fmt, quality=jpeg_quality)
        say(f"{fmt}: Pillow (preprocess_images)")
        pil_s, reference = _median_s(partial(_pillow, files, spec), repeats)
        rows.append(DecodeRow(fmt, "Pillow (odin_monitor.preprocess)",
                              pil_s * 1e3 / len(files), 1.0, 0.0, 0.0, True))  # fmt: skip
        for name, fn in _decoders(fmt).items():
            say(f"{fmt}: {name}")
            secs, got = _median_s(partial(fn, files), repeats)
            diff = np.abs(got.astype(np.float64) - reference)
            rows.append(
                DecodeRow(
                    fmt,
                    name,
                    secs * 1e3 / len(files),
                    pil_s / secs,
                    float(diff.max()),
                    float(np.mean(diff > 0)),
                    bool(got.shape == reference.shape and np.array_equal(got, reference)),
                )
            )
    if hasattr(os, "getloadavg"):
        machine["load_average_1m_end"] = f"{os.getloadavg()[0]:.2f}"
    if not torch.cuda.is_available():
        notes.append("No CUDA here: GPU (nvJPEG) decode not measured.")
    return DecodeResult(
        command=command_line(),
        machine=machine,
        images_source=source,
        n_images=len(pixels),
        jpeg_quality=int(jpeg_quality),
        repeats=int(repeats),
        odin_ms_per_image=odin_s * 1e3 / len(x),
        model=model,
        rows=tuple(rows),
        notes=tuple(notes),
    )
