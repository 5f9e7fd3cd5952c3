"""The registry tags of a calibration: what a person reads in the model-version table.

Kept apart from :mod:`mlflow_plugin.registry` (which loads models through the flavour)
so that :mod:`mlflow_plugin.flavor` can tag a version it logs without an import circle.
"""

from __future__ import annotations

import math

from mlflow.tracking import MlflowClient

from odin_monitor.record import CalibrationRecord

__all__ = [
    "calibration_tags",
    "describe_registered_model",
    "model_description",
    "selection_summary",
    "tag_model_version",
    "version_description",
]


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{100 * value:.1f}%"


def selection_summary(record: CalibrationRecord) -> str:
    """How ``T`` and ``ε`` were chosen, in a few words (the record holds the whole text).

    Example:
        >>> rec = CalibrationRecord(temperature=1000.0, epsilon=0.0014, threshold=0.1,
        ...     threshold_spread=2.0, tpr_target=0.95, normalization=None, n_classes=10,
        ...     input_shape=(3, 32, 32), selection="fixed")
        >>> selection_summary(rec)
        'fixed (T, ε)'
    """
    ood = [s for s in record.sources if s.role == "ood"]
    names = ", ".join(s.name for s in ood)
    if record.strategy == "jigsaw":
        return "jigsaw (no OOD data: shuffled patches of the ID validation images)"
    if record.strategy == "noise":
        return "noise (no OOD data: Gaussian + Uniform)"
    if record.strategy == "ood-validation" or (ood and not all(s.synthetic for s in ood)):
        return f"ood-validation [{names}]"
    if ood:
        return f"OOD validation: synthetic noise [{names}]"
    return "fixed (T, ε)"


def calibration_tags(record: CalibrationRecord) -> dict[str, str]:
    """The model-version tags a person reads in the registry table (a short set).

    ``odin.temperature``, ``odin.epsilon``, ``odin.threshold`` (δ on the paper's score,
    with the same δ in spread units, as Evidently shows it), ``odin.tpr_target``,
    ``odin.val_fpr`` and ``odin.val_auroc`` (ODIN beside the MSP baseline, on the
    validation data), ``odin.selection`` (how ``(T, ε)`` was chosen),
    ``odin.preprocessing`` and ``odin.calibration_sha256``. Everything else is in the
    calibration record (an artifact of the run and of the model).

    Example:
        >>> rec = CalibrationRecord(temperature=1000.0, epsilon=0.0014, threshold=0.1,
        ...     threshold_spread=2.0, tpr_target=0.95, normalization=None, n_classes=10,
        ...     input_shape=(3, 32, 32), metrics={"fpr_at_tpr": 0.227, "msp_fpr_at_tpr": 0.687})
        >>> tags = calibration_tags(rec)
        >>> tags["odin.epsilon"], tags["odin.threshold"], tags["odin.val_fpr"]
        ('0.0014', '0.1 (spread 2)', '22.7% (MSP 68.7%)')
    """
    m = record.metrics
    delta = f"{float(record.threshold):.6g} (spread {float(record.threshold_spread):.4g})"
    tags = {
        "odin.temperature": f"{float(record.temperature):g}",
        "odin.epsilon": f"{float(record.epsilon):g}",
        "odin.threshold": delta,
        "odin.tpr_target": f"{float(record.tpr_target):g}",
        "odin.selection": selection_summary(record)[:250],
        "odin.calibration_sha256": record.sha256(),
    }
    if "fpr_at_tpr" in m:
        tags["odin.val_fpr"] = f"{_pct(m['fpr_at_tpr'])} (MSP {_pct(m.get('msp_fpr_at_tpr'))})"
    if "auroc" in m:
        tags["odin.val_auroc"] = f"{_pct(m['auroc'])} (MSP {_pct(m.get('msp_auroc'))})"
    if record.preprocessing is not None:
        tags["odin.preprocessing"] = record.preprocessing.describe()
    if record.warnings:
        tags["odin.warnings"] = str(len(record.warnings))
    return tags


def version_description(record: CalibrationRecord) -> str:
    """A model version's description, written from its record (Markdown).

    Example:
        >>> rec = CalibrationRecord(temperature=1000.0, epsilon=0.0014, threshold=0.1,
        ...     threshold_spread=2.0, tpr_target=0.95, normalization=None, n_classes=10,
        ...     input_shape=(3, 32, 32), created_at="2026-12-02T09:00:00+00:00")
        >>> version_description(rec).splitlines()[0]
        'ODIN detector calibrated 2026-12-02T09:00:00+00:00: T=1000, ε=0.0014, δ=0.1 (spread 2).'
    """
    m = record.metrics
    lines = [
        f"ODIN detector calibrated {record.created_at}: T={record.temperature:g}, "
        f"ε={record.epsilon:g}, δ={record.threshold:.6g} (spread {record.threshold_spread:.4g}).",
        "",
        f"- keeps {100 * record.tpr_target:g}% of in-distribution images (TPR target)",
        f"- (T, ε) chosen by: {selection_summary(record)}",
    ]
    for s in record.sources:
        what = "in-distribution validation" if s.role == "in_distribution" else "OOD validation"
        synthetic = ", synthetic" if s.synthetic else ""
        lines.append(f"- {what}: {s.name} ({s.n_images} images{synthetic})")
    if "fpr_at_tpr" in m:
        lines.append(
            f"- validation FPR at {100 * record.tpr_target:g}% TPR: {_pct(m['fpr_at_tpr'])} "
            f"(MSP baseline {_pct(m.get('msp_fpr_at_tpr'))}); AUROC {_pct(m.get('auroc'))} "
            f"(MSP {_pct(m.get('msp_auroc'))})"
        )
    if record.preprocessing is not None:
        lines.append(f"- image files: {record.preprocessing.describe()}")
    lines += [f"- warning: {w}" for w in record.warnings]
    lines.append(f"- calibration sha256: {record.sha256()}")
    return "\n".join(lines)


def model_description(name: str) -> str:
    """What a registered ``odin`` model is, for its registry page (Markdown).

    Example:
        >>> model_description("odin-resnet20").splitlines()[0]
        'ODIN out-of-distribution detector (odin-monitor flavour `odin`).'
    """
    return "\n".join(
        [
            "ODIN out-of-distribution detector (odin-monitor flavour `odin`).",
            "",
            "Each version holds one calibration of the classifier: the temperature T, the "
            "input step ε and the threshold δ, with its validation figures beside the MSP "
            "baseline in the version's tags and description. An image is flagged OOD when "
            "its ODIN score is below δ.",
            "",
            f"- load: `mlflow_plugin.load_model('models:/{name}@champion')`",
            f"- what changed between versions: `mlflow_plugin.compare_calibrations('{name}', "
            "1, 'champion')`",
            f"- serve: `odin-monitor serve --model-uri models:/{name}@champion`",
        ]
    )


def describe_registered_model(name: str, client: MlflowClient | None = None) -> None:
    """Give a registered model :func:`model_description`, unless it has a description."""
    client = client or MlflowClient()
    if not (client.get_registered_model(name).description or "").strip():
        client.update_registered_model(name, description=model_description(name))


def tag_model_version(
    name: str, version: str, record: CalibrationRecord, client: MlflowClient | None = None
) -> None:
    """Set :func:`calibration_tags` and :func:`version_description` on a model version.

    The registered model gets :func:`model_description` when it has none yet.
    """
    client = client or MlflowClient()
    for key, value in calibration_tags(record).items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=version_description(record))
    describe_registered_model(name, client)
