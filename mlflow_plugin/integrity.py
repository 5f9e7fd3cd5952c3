"""The calibration record is the one truth: MLmodel must agree with it, or nothing loads.

Serving reads T, ε and δ from MLmodel (δ as the signature's param default); monitoring
reads them from the record. :func:`read_record` refuses a model whose MLmodel lacks the
record's hash or repeats other values, and :func:`check_signature_matches` one whose
signature would move δ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME

from mlflow_plugin.model_folder import RECORD_FILE
from odin_monitor.errors import ModelLoadError
from odin_monitor.record import CalibrationRecord

__all__ = ["check_signature_matches", "read_record"]


def read_record(model_path: str, conf: Mapping[str, Any]) -> CalibrationRecord:
    """The calibration record, after checking that MLmodel agrees with it.

    The record is the one truth about T, ε and δ: MLmodel must carry its sha256 and
    repeat its values. An edited or stripped MLmodel is refused, so serving (which
    reads MLmodel) and monitoring (which reads the record) can never disagree.
    """
    file = Path(model_path, str(conf.get("record_file", RECORD_FILE)))
    if not file.is_file():
        raise ModelLoadError(f"Expected the calibration record at {file}, but there is none.")
    record = CalibrationRecord.from_json(file.read_text())
    expected = conf.get("calibration_sha256")
    if not isinstance(expected, str) or not expected:
        raise ModelLoadError(
            "Expected MLmodel's odin flavour to hold calibration_sha256 (the hash of "
            f"{file.name}), but it has none: the file was edited after saving. Re-log the "
            "detector instead of editing its files."
        )
    if record.sha256() != expected:
        raise ModelLoadError(
            f"The calibration record {file.name} does not match the MLmodel file (sha256 "
            f"{record.sha256()[:12]}… vs {str(expected)[:12]}…): it was changed after saving. "
            "Re-log the detector instead of editing its files."
        )
    _check_flavor_matches(conf, record)
    return record


def _flavor_values(record: CalibrationRecord) -> dict[str, Any]:
    """What MLmodel's odin flavour repeats from the record (as save_model writes it)."""
    return {
        "temperature": record.temperature,
        "epsilon": record.epsilon,
        "threshold": record.threshold,
        "threshold_spread": record.threshold_spread,
        "tpr_target": record.tpr_target,
        "normalization": None if record.normalization is None else record.normalization.to_dict(),
        "input_shape": list(record.input_shape),
        "n_classes": record.n_classes,
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return bool(a == b)


def _check_flavor_matches(conf: Mapping[str, Any], record: CalibrationRecord) -> None:
    differ = {
        key: (conf.get(key), want)
        for key, want in _flavor_values(record).items()
        if not _same(conf.get(key), want)
    }
    if differ:
        detail = "; ".join(
            f"{k}: MLmodel {got!r}, record {want!r}" for k, (got, want) in differ.items()
        )
        raise ModelLoadError(
            f"MLmodel's odin flavour disagrees with the calibration record ({detail}): "
            "MLmodel was edited after saving. Re-log the detector instead of editing its files."
        )


def check_signature_matches(model_path: str, threshold: float) -> None:
    """MLflow applies a param's signature default to every call: it must be the record's δ."""
    signature = Model.load(os.path.join(model_path, MLMODEL_FILE_NAME)).signature
    params = (
        {}
        if signature is None or signature.params is None
        else {p.name: p.default for p in signature.params.params}
    )
    if "threshold" in params and not _same(params["threshold"], threshold):
        raise ModelLoadError(
            f"MLmodel's signature gives the threshold param the default {params['threshold']!r}, "
            f"but the calibration record's δ is {threshold!r}: MLmodel was edited after "
            "saving, and serving would flag with the wrong δ. Re-log the detector (pass "
            "params={'threshold': ...} per request to try another δ)."
        )
