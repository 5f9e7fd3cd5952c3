"""Running the Spark benchmark: files on disk, ``binaryFile`` + ``spark_udf``, in-process.

1. ``n_images`` real CIFAR-10 test images (``cifar10_test.npz``) are written as PNG (or
   JPEG) files into a temporary folder;
2. the benchmark detector (:mod:`odin_monitor.bench.resnet20`) is saved as an image model;
3. in-process: the files are read and scored by one ``PyFuncModel.predict`` on an
   ``image`` column (decode + ODIN), and, for the split, decoded alone and scored alone;
4. Spark (local mode): ``spark.read.format("binaryFile")``, ``coalesce(partitions)``,
   ``mlflow.pyfunc.spark_udf`` on ``content`` aliased to ``image``, collected with the
   path; timed over ``passes`` passes (the first starts the Python workers and loads
   the model in each);
5. the Spark scores are matched to the in-process scores by file name.

Workers run this interpreter (``PYSPARK_PYTHON``), as in ``examples/spark_batch_scoring.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odin_monitor.bench.common import Log, command_line, machine_info
from odin_monitor.bench.files import FILE_FORMATS, encode_images, load_uint8, write_image_folder
from odin_monitor.bench.resnet20 import find_data_dir, fit_resnet20
from odin_monitor.bench.spark.results import SparkResult, SparkUnavailable

__all__ = ["RESULT_TYPE", "compare_scores", "java_version", "run_spark", "spark_unavailable"]

RESULT_TYPE = (
    "odin_score double, spread_score double, msp double, predicted_class long, is_ood boolean"
)
_SOURCE = "cifar10_test.npz"
_COMPARED = ("odin_score", "spread_score", "msp")


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


def java_version() -> str:
    """The first line of ``java -version`` (``"?"`` if it cannot be read)."""
    java = _java()
    if java is None:
        return "?"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[0] if lines else "?"


def spark_unavailable() -> str | None:
    """Why Spark cannot run here (no pyspark, no Java), or ``None`` when it can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install -e '.[spark]')"
    if _java() is None:
        return "no Java runtime (Spark needs Java 17+; set JAVA_HOME or put java on PATH)"
    return None


def compare_scores(spark: pd.DataFrame, local: pd.DataFrame) -> tuple[float, bool]:
    """Largest |Spark - in-process| over the scores, files matched by ``name``; labels equal.

    ``(nan, False)`` when the two do not hold the same files.
    """
    a = spark.sort_values("name").reset_index(drop=True)
    b = local.sort_values("name").reset_index(drop=True)
    if len(a) != len(b) or not a["name"].equals(b["name"]):
        return float("nan"), False
    diff = max(
        float(np.max(np.abs(a[c].to_numpy(np.float64) - b[c].to_numpy(np.float64))))
        for c in _COMPARED
    )
    labels = bool(
        np.array_equal(a["predicted_class"].to_numpy(np.int64), b["predicted_class"].to_numpy())
        and np.array_equal(a["is_ood"].to_numpy(bool), b["is_ood"].to_numpy(bool))
    )
    return diff, labels


def _spark_passes(
    folder: Path, images: Path, suffix: str, master: str, partitions: int, passes: int, log: Log
) -> tuple[pd.DataFrame, float, float, list[float], dict[str, str]]:
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers need this environment
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master(master)
        .appName("odin-bench-spark")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session_s = time.perf_counter() - t0
    spark.sparkContext.setLogLevel("ERROR")
    versions = {"spark": str(spark.version)}
    try:
        t0 = time.perf_counter()
        odin = mlflow.pyfunc.spark_udf(
            spark, str(folder), result_type=RESULT_TYPE, env_manager="local"
        )
        udf_s = time.perf_counter() - t0
        times: list[float] = []
        out = pd.DataFrame()
        for k in range(passes):
            log(f"Spark pass {k + 1} of {passes}")
            t0 = time.perf_counter()
            df = (
                spark.read.format("binaryFile")
                .option("pathGlobFilter", f"*{suffix}")
                .load(str(images))
                .coalesce(partitions)
            )
            scored = df.select("path", odin(col("content").alias("image")).alias("odin"))
            out = scored.select("path", "odin.*").toPandas()
            times.append(time.perf_counter() - t0)
            log(f"Spark pass {k + 1}: {len(out)} rows in {times[-1]:.1f} s")
    finally:
        spark.stop()
    out["name"] = [p.rsplit("/", 1)[-1] for p in out.pop("path")]
    return out, session_s, udf_s, times, versions


def run_spark(
    *,
    data_dir: Path | None = None,
    n_images: int = 5000,
    file_format: str = "PNG",
    master: str = "local[2]",
    partitions: int = 2,
    passes: int = 2,
    seed: int = 0,
    log: Log | None = None,
) -> SparkResult:
    """Score ``n_images`` real image files with Spark and in-process; compare; time both.

    Args:
        data_dir: The data folder (``cifar10_test.npz``, ``cifar10_test_lossless.npz``,
            ``cifar10_resnet20.pt``); default ``$ODIN_SHARED_DATA``, else ``../shared/data``.
        n_images: Files to write and score (1 to 10,000).
        file_format: ``"PNG"`` (lossless) or ``"JPEG"`` (quality 90).
        master: Spark master.
        partitions: Partitions scored (``coalesce``; one Python task each).
        passes: Timed Spark passes (the fastest is reported as Spark's images/s).
        seed: Seed of the random-weight fallback (not used with the data folder).
        log: Progress sink.

    Raises:
        SparkUnavailable: No pyspark, no Java, or no data folder (the message says which).
        ValueError: A bad argument.
    """
    import mlflow.pyfunc

    import mlflow_plugin
    from odin_monitor.preprocess import preprocess_images

    if not 1 <= n_images <= 10_000 or partitions < 1 or passes < 1:
        raise ValueError(
            "Expected 1 <= n_images <= 10000, partitions >= 1, passes >= 1, but got "
            f"{n_images}, {partitions}, {passes}."
        )
    if file_format not in FILE_FORMATS:
        raise ValueError(f"Expected file_format in {sorted(FILE_FORMATS)}, got {file_format!r}.")
    reason = spark_unavailable()
    if reason is not None:
        raise SparkUnavailable(reason)
    data = find_data_dir(data_dir)
    if data is None or not (data / _SOURCE).is_file():
        raise SparkUnavailable(f"no data folder with {_SOURCE} (pass --data-dir)")
    say: Log = log or (lambda _line: None)
    machine: dict[str, Any] = machine_info()  # the load average at the start
    det, model, pretrained = fit_resnet20(data, seed, say)
    notes = [] if pretrained else ["Random-weight ResNet-20 (weights or lossless set missing)."]

    with tempfile.TemporaryDirectory(prefix="odin-bench-spark-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "model"
        say(f"saving the image model to {folder}")
        mlflow_plugin.save_model(det, folder, input_kind="image")
        spec = mlflow_plugin.load_record(str(folder)).preprocessing
        pixels = load_uint8(data, _SOURCE, n_images)
        suffix = FILE_FORMATS[file_format]
        say(f"writing {len(pixels)} {file_format} files")
        paths = write_image_folder(encode_images(pixels, file_format), tmp / "images", suffix)
        folder_mib = sum(p.stat().st_size for p in paths) / 2**20

        say(f"in-process: read + PyFuncModel.predict (decode + ODIN), {passes} passes")
        pyfunc = mlflow.pyfunc.load_model(str(folder), model_config={"device": "cpu"})
        pyfunc_s = decode_s = odin_s = float("inf")
        for _ in range(passes):  # the fastest pass of each, as for Spark
            t0 = time.perf_counter()
            frame = pd.DataFrame({"image": [p.read_bytes() for p in paths]})
            local = pyfunc.predict(frame)
            pyfunc_s = min(pyfunc_s, time.perf_counter() - t0)
            t0 = time.perf_counter()
            x, _ = preprocess_images(frame["image"].tolist(), spec)  # type: ignore[arg-type]
            decode_s = min(decode_s, time.perf_counter() - t0)
            t0 = time.perf_counter()
            det.score_batch(x)
            odin_s = min(odin_s, time.perf_counter() - t0)
        local["name"] = [p.name for p in paths]
        say(f"in-process: {pyfunc_s:.1f} s (decode {decode_s:.1f} s, ODIN {odin_s:.1f} s)")

        out, session_s, udf_s, times, versions = _spark_passes(
            folder, tmp / "images", suffix, master, partitions, passes, say
        )
    diff, labels = compare_scores(out, local)
    say(f"max |Spark - in-process| = {diff:.2e}; labels equal: {labels}")
    machine |= versions | {"java": java_version()}
    if hasattr(os, "getloadavg"):
        machine["load_average_1m_end"] = f"{os.getloadavg()[0]:.2f}"
    return SparkResult(
        command=command_line(),
        machine=machine,
        model=model,
        images_source=f"the first {len(pixels)} images of {_SOURCE} (JPEG-degraded CIFAR-10 "
        f"test set, fine for volume), written as {file_format}",
        n_images=len(pixels),
        file_format=file_format,
        folder_mib=folder_mib,
        master=master,
        partitions=partitions,
        session_start_s=session_s,
        udf_create_s=udf_s,
        spark_pass_s=tuple(times),
        inprocess_pyfunc_s=pyfunc_s,
        decode_s=decode_s,
        odin_s=odin_s,
        score_max_abs_diff=diff,
        labels_match=labels,
        ood_rate=float(out["is_ood"].mean()) if len(out) else float("nan"),
        notes=tuple(notes),
    )
