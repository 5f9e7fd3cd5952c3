"""Spark benchmark results: :class:`SparkResult`, and :class:`SparkUnavailable`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SCORE_TOLERANCE", "SparkResult", "SparkUnavailable"]

#: Largest accepted |Spark score - in-process score| (odin_score, spread_score, msp).
SCORE_TOLERANCE = 1e-6


class SparkUnavailable(RuntimeError):
    """The benchmark cannot run here (no pyspark, no Java, no data); the message says why."""


@dataclass(frozen=True)
class SparkResult:
    """A whole Spark benchmark run.

    Attributes:
        command: The command that ran the benchmark.
        machine: Date, CPU, cores, torch threads, versions (Spark, Java), load average.
        model: What was scored (architecture, weights, calibration).
        images_source: Where the images came from.
        n_images: Files scored.
        file_format: ``"PNG"`` or ``"JPEG"``.
        folder_mib: Size of the files on disk (MiB).
        master: Spark master (``local[2]``).
        partitions: Partitions scored (after ``coalesce``).
        session_start_s: Seconds to start the Spark session.
        udf_create_s: Seconds of ``mlflow.pyfunc.spark_udf`` (model copied for workers).
        spark_pass_s: Seconds of each pass: read ``binaryFile``, score with the UDF,
            collect ``path`` and the scores to the driver (``toPandas``).
        inprocess_pyfunc_s: Seconds of reading the same files and one
            ``PyFuncModel.predict`` on an ``image`` column (decode + ODIN), in-process
            (the fastest of as many passes as Spark's; so are the two below).
        decode_s: Seconds of ``preprocess_images`` of all files (part of the above).
        odin_s: Seconds of ``score_batch`` on the decoded tensors.
        score_max_abs_diff: Largest |Spark - in-process| over ``odin_score``,
            ``spread_score``, ``msp`` (files matched by name).
        labels_match: ``predicted_class`` and ``is_ood`` equal, and the same files.
        ood_rate: Fraction of files flagged OOD (Spark).
        notes: Extra remarks.
    """

    command: str
    machine: dict[str, str]
    model: str
    images_source: str
    n_images: int
    file_format: str
    folder_mib: float
    master: str
    partitions: int
    session_start_s: float
    udf_create_s: float
    spark_pass_s: tuple[float, ...]
    inprocess_pyfunc_s: float
    decode_s: float
    odin_s: float
    score_max_abs_diff: float
    labels_match: bool
    ood_rate: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spark_images_per_s(self) -> float:
        """Images/s of the fastest Spark pass."""
        return self.n_images / min(self.spark_pass_s)

    @property
    def inprocess_images_per_s(self) -> float:
        """Images/s of in-process scoring including reading and decoding the files."""
        return self.n_images / self.inprocess_pyfunc_s

    @property
    def scores_match(self) -> bool:
        """Spark scores equal in-process scores (within :data:`SCORE_TOLERANCE`)."""
        return (
            math.isfinite(self.score_max_abs_diff)
            and self.score_max_abs_diff <= SCORE_TOLERANCE
            and self.labels_match
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the derived figures included)."""
        out = asdict(self)
        out["spark_pass_s"] = list(self.spark_pass_s)
        out["notes"] = list(self.notes)
        out["spark_images_per_s"] = self.spark_images_per_s
        out["inprocess_images_per_s"] = self.inprocess_images_per_s
        out["scores_match"] = self.scores_match
        return out
