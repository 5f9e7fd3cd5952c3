"""Running the serving benchmark: build or fetch the models, start the servers, measure.

The same detector is saved twice, as a tensor model (``input_kind="tensor"``: float
JSON) and as an image model (``input_kind="image"``: base64 files decoded by the
record's preprocessing spec), and each is served by the real MLflow scoring server
(uvicorn) on a free local port. For each batch size the float-JSON requests and then
the image requests are measured (:func:`~odin_monitor.bench.serve.measure.measure_size`):
a served answer checked against in-process scoring, the in-process figures, the timed
load. Every non-200 answer or client exception counts as an error. The servers are
always stopped by their process groups, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow_plugin.serving import ServerError, running_server
from odin_monitor.bench.common import Log, command_line, machine_info
from odin_monitor.bench.files import FILE_FORMATS, encode_images, load_uint8, noise_uint8
from odin_monitor.bench.resnet20 import find_data_dir, fit_resnet20
from odin_monitor.bench.serve.bodies import FORMATS
from odin_monitor.bench.serve.measure import RequestImages, measure_size
from odin_monitor.bench.serve.results import ServeResult, SizeResult

__all__ = ["run_serve"]

_PING_TIMEOUT_S = 180.0
_LOSSLESS = "cifar10_test_lossless.npz"


def _machine_info() -> dict[str, str]:
    import mlflow

    return machine_info() | {"mlflow": str(mlflow.__version__)}


def _input_kind(folder: Path) -> str:
    from mlflow.models import Model

    conf = Model.load(str(folder)).flavors.get("odin", {})
    return str(conf.get("input_kind", "tensor"))


def _local_model(model_uri: str, tmp: Path, tracking_uri: str | None, log: Log) -> Path:
    p = Path(model_uri).expanduser()
    if p.is_dir():
        if not (p / "MLmodel").is_file():
            raise ServerError(
                f"Expected an MLflow model folder (with an MLmodel file) at {p}, but it has "
                "no MLmodel file."
            )
        return p.resolve()
    import mlflow.artifacts

    log(f"downloading {model_uri}")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model_uri,
        dst_path=str(tmp / "downloaded"),
        tracking_uri=tracking_uri,
        registry_uri=tracking_uri,
    )
    return Path(local).resolve()


def _request_images(
    data: Path | None, shape: tuple[int, ...], file_format: str, n_noise: int, seed: int
) -> RequestImages:
    from odin_monitor.data import to_float_nchw

    pixels = None
    if data is not None and (data / _LOSSLESS).is_file() and tuple(shape) == (3, 32, 32):
        pixels = load_uint8(data, _LOSSLESS)
        source = f"{_LOSSLESS} ({len(pixels)} images, cycled)"
    if pixels is None:
        c, h, w = (int(s) for s in shape)
        pixels = noise_uint8(n_noise, (c, h, w), seed)
        source = f"seeded uniform noise ({len(pixels)} uint8 images, seed {seed})"
    files = tuple(encode_images(pixels, file_format))
    return RequestImages(to_float_nchw(pixels), files, file_format, source)


def _check_args(
    batch_sizes: Sequence[int],
    concurrency: int,
    requests_per_size: int,
    duration_limit_s: float,
    workers: int,
    formats: Sequence[str],
    file_format: str,
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    sizes = tuple(int(b) for b in batch_sizes)
    if not sizes or any(b < 1 for b in sizes):
        raise ValueError(f"Expected batch sizes >= 1, but got {tuple(batch_sizes)}.")
    for name, value in (
        ("concurrency", concurrency),
        ("requests_per_size", requests_per_size),
        ("workers", workers),
    ):
        if int(value) < 1:
            raise ValueError(f"Expected {name} >= 1, but got {value}.")
    if not duration_limit_s > 0:
        raise ValueError(f"Expected duration_limit_s > 0, but got {duration_limit_s}.")
    kinds = tuple(dict.fromkeys(formats))
    if not kinds or any(f not in FORMATS for f in kinds):
        raise ValueError(f"Expected formats among {FORMATS}, but got {tuple(formats)}.")
    if file_format not in FILE_FORMATS:
        raise ValueError(f"Expected file_format in {sorted(FILE_FORMATS)}, got {file_format!r}.")
    return sizes, tuple(f for f in FORMATS if f in kinds)


def _models(
    model_uri: str | None,
    tmp: Path,
    data: Path | None,
    formats: tuple[str, ...],
    tracking_uri: str | None,
    seed: int,
    log: Log,
    notes: list[str],
) -> tuple[dict[str, Path], str, bool]:
    """The model folder of each request kind, the description, pretrained."""
    import mlflow_plugin

    if model_uri is None:
        det, desc, pretrained = fit_resnet20(data, seed, log)
        if not pretrained:
            notes.append(
                "No data folder with the pretrained weights: a random-weight ResNet-20 "
                "fitted on uniform noise was served; the numbers time the pipeline, "
                "not a useful detector."
            )
        folders = {}
        for fmt in formats:
            folders[fmt] = tmp / f"model-{fmt}"
            log(f"saving the {fmt} model to {folders[fmt]}")
            mlflow_plugin.save_model(
                det, folders[fmt], input_kind="tensor" if fmt == "float" else "image"
            )
        return folders, desc, pretrained
    folder = _local_model(model_uri, tmp, tracking_uri, log)
    takes = "float" if _input_kind(folder) == "tensor" else "image"
    for fmt in formats:
        if fmt != takes:
            notes.append(
                f"{model_uri} takes {takes} requests only; {fmt} requests were not measured "
                "(without --model-uri both models are built from one detector)."
            )
    return {takes: folder} if takes in formats else {}, f"model {model_uri}", False


def run_serve(
    *,
    model_uri: str | None = None,
    data_dir: Path | None = None,
    batch_sizes: Sequence[int] = (1, 32, 256),
    concurrency: int = 4,
    requests_per_size: int = 40,
    duration_limit_s: float = 120.0,
    port: int | None = None,
    tracking_uri: str | None = None,
    workers: int = 1,
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
    file_format: str = "PNG",
    compile: bool = False,
    serving_tunings: bool = True,
    log: Log | None = None,
) -> ServeResult:
    """Benchmark ``mlflow models serve`` of an ``odin`` model on 127.0.0.1.

    Args:
        model_uri: A local model folder, or any MLflow model URI (downloaded to a
            temporary folder first); only the request kind it takes is measured.
            ``None``: build the pretrained CIFAR-10 ResNet-20 detector (T=1000,
            ε=0.0014, δ from 200 lossless CIFAR-10 test images) from the data folder,
            or a random-weight ResNet-20 fitted on noise without one, and save it as a
            tensor model and as an image model.
        data_dir: The data folder; default ``$ODIN_SHARED_DATA``, else ``../shared/data``.
            Also the source of the request images when the model takes 3×32×32 images
            (else seeded uniform noise).
        batch_sizes: Images per request, one measurement each (per request kind).
        concurrency: Client threads sending requests at once.
        requests_per_size: Timed requests per batch size (after 2 warm-up requests).
        duration_limit_s: No new timed request starts after this many seconds (per size).
        port: Port of the first server; default a free one.
        tracking_uri: Tracking server for a ``runs:/``/``models:/`` URI (also given to
            the server).
        workers: uvicorn workers (``--workers``) of each server.
        seed: Seed of the noise images and the random-weight fallback.
        formats: Request kinds: ``"float"`` (float JSON), ``"image"`` (base64 files).
        file_format: Encoding of the image requests' files: ``"PNG"`` or ``"JPEG"``.
        compile: Score on the compiled step (:mod:`odin_monitor.compiled`) in the servers
            (``ODIN_COMPILE=true``, compiled at load) and in process (warmed up before
            timing); default the eager path.
        serving_tunings: Leave the servers' ``ODIN_MALLOC_TUNING`` and
            ``ODIN_SCORER_THREAD`` at ``auto`` (on, as in every scoring server); ``False``
            sets both to ``false`` (how a served model ran before them).
        log: Called with one progress line per step; default silent.

    Returns:
        A :class:`ServeResult`; ``result.errors`` must be 0 and ``result.ok`` true.

    Raises:
        ValueError: A bad argument.
        ServerError: A server exited or did not answer ``/ping`` in 180 s.

    Example:
        >>> result = run_serve(model_uri="odin_model", batch_sizes=(1, 4))  # doctest: +SKIP
        >>> result.errors, result.sizes[0].p50_ms <= result.sizes[0].p95_ms  # doctest: +SKIP
        (0, True)
    """
    import mlflow_plugin
    from mlflow_plugin.allocator import MALLOC_TUNING_ENV
    from mlflow_plugin.scorer_thread import SCORER_THREAD_ENV

    setting = "auto" if serving_tunings else "false"
    tunings = {MALLOC_TUNING_ENV: setting, SCORER_THREAD_ENV: setting}
    server_env = tunings | ({"ODIN_COMPILE": "true"} if compile else {})
    sizes, kinds = _check_args(batch_sizes, concurrency, requests_per_size, duration_limit_s,
                               workers, formats, file_format)  # fmt: skip
    say: Log = log or (lambda _line: None)
    command = command_line()
    notes: list[str] = []
    data = find_data_dir(data_dir)

    with tempfile.TemporaryDirectory(prefix="odin-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        folders, desc, pretrained = _models(
            model_uri, tmp, data, kinds, tracking_uri, seed, say, notes
        )
        if not folders:
            raise ValueError(f"Nothing to measure: {' '.join(notes)}")
        first = next(iter(folders.values()))
        det = mlflow_plugin.load_model(str(first), device="cpu", compile=compile)
        if compile:
            det.warm_up()
        spec = mlflow_plugin.load_record(str(first)).preprocessing
        shape = tuple(int(s) for s in det.input_shape_)
        desc += f"; input {shape}, {det.n_classes_} classes, served batch_size {det.batch_size}"
        desc += "; compiled scorer (ODIN_COMPILE=true)" if compile else "; eager scorer"
        desc += "; servers: " + ", ".join(f"{k}={v}" for k, v in tunings.items())
        if "image" in folders and spec is None:
            raise ValueError(f"The image model {folders['image']} has no preprocessing spec.")
        images = _request_images(data, shape, file_format, max(sizes) * 2, seed)

        machine = _machine_info()
        results: list[SizeResult] = []
        servers: list[dict[str, str]] = []
        live: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            for i, (fmt, folder) in enumerate(folders.items()):
                say(f"starting mlflow models serve of the {fmt} model on 127.0.0.1")
                server = stack.enter_context(
                    running_server(
                        folder,
                        port=port if i == 0 else None,
                        workers=workers,
                        tracking_uri=tracking_uri,
                        log_file=tmp / f"server-{fmt}.log",
                        timeout=_PING_TIMEOUT_S,
                        extra_env=server_env,
                    )
                )
                say(f"{fmt} server pid {server.proc.pid} ready after {server.start_seconds:.1f} s")
                live[fmt] = server
                shown = list(server.command)
                shown[shown.index("-m") + 1] = (
                    f"<{fmt} model folder>" if model_uri is None else str(folder)
                )
                servers.append(
                    {
                        "format": fmt,
                        "command": " ".join(shlex.quote(a) for a in shown),
                        "start_s": f"{server.start_seconds:.1f}",
                    }
                )
            for b in sizes:
                for fmt, server in live.items():
                    r = measure_size(
                        server.port,
                        fmt,
                        det,
                        images,
                        b,
                        spec=spec,
                        requests=requests_per_size,
                        concurrency=concurrency,
                        duration_limit_s=duration_limit_s,
                        log=say,
                    )
                    if r.stopped_by_time:
                        notes.append(
                            f"{fmt} batch {b}: stopped at the {duration_limit_s:g} s limit "
                            f"after {r.requests} of {r.planned} requests."
                        )
                    results.append(r)
        say("servers stopped")
        if hasattr(os, "getloadavg"):
            machine["load_average_1m_end"] = f"{os.getloadavg()[0]:.2f}"

    return ServeResult(
        command=command,
        server_command=servers[0]["command"],
        machine=machine,
        model=desc,
        model_uri="(built in a temporary folder)" if model_uri is None else model_uri,
        pretrained=pretrained,
        images_source=images.source,
        concurrency=int(concurrency),
        workers=int(workers),
        requests_per_size=int(requests_per_size),
        duration_limit_s=float(duration_limit_s),
        server_start_s=float(servers[0]["start_s"]),
        sizes=tuple(results),
        notes=tuple(notes),
        formats=tuple(live),
        file_format=file_format,
        servers=tuple(servers),
    )
