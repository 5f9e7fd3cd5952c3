"""The calibration record of a detector.

A frozen, typed, JSON-round-tripping description of a calibrated detector that
travels with the model (MLflow artifacts, registry tags).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from odin_monitor.errors import CalibrationError
from odin_monitor.normalization import Normalization
from odin_monitor.preprocess import Preprocessing

__all__ = ["CalibrationRecord", "ValidationSource", "content_sha256", "library_versions"]

#: 2 added ``preprocessing``, ``strategy`` and ``warnings`` (a record without them is
#: written and hashed as version 1 was); ``search`` joined them later, absent when unset
#: like them (readers of schema 2 that predate it ignore it).
SCHEMA_VERSION = 2
Role = Literal["in_distribution", "ood"]


def content_sha256(images: Any) -> str:
    """SHA-256 of an image batch's float32 C-order bytes, prefixed by its shape.

    Example:
        >>> a = np.zeros((1, 1, 2, 2), dtype=np.float32)
        >>> len(content_sha256(a)), content_sha256(a) == content_sha256(a.astype(np.float64))
        (64, True)
        >>> content_sha256(a) == content_sha256(a.reshape(1, 1, 4, 1))
        False
    """
    arr = np.ascontiguousarray(
        images.detach().cpu().numpy() if hasattr(images, "detach") else images, dtype=np.float32
    )
    digest = hashlib.sha256(repr(tuple(arr.shape)).encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries a calibration depends on."""
    import sklearn
    import torch

    from odin_monitor._version import __version__

    return {
        "odin_monitor": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


@dataclass(frozen=True)
class ValidationSource:
    """One image set used to calibrate.

    Attributes:
        role: ``"in_distribution"`` (sets δ) or ``"ood"`` (chooses T and ε).
        name: A human name (file path, ``"gaussian"``, ...).
        n_images: How many images.
        sha256: :func:`content_sha256` of the float32 pixels.
        synthetic: True for the paper's generated noise sets.
        seed: Seed of a synthetic set.
    """

    role: Role
    name: str
    n_images: int
    sha256: str
    synthetic: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class CalibrationRecord:
    """Everything needed to reproduce and audit a calibrated ODIN detector.

    Attributes:
        temperature: ``T``.
        epsilon: ``ε`` in pixel units of [0, 1] images.
        threshold: ``δ`` on the paper's score ``S(x̃; T)``; in-distribution iff ``score >= δ``.
        threshold_spread: The same ``δ`` on the spread score ``T · log(K · S)``.
        tpr_target: Share of in-distribution validation images kept at ``δ``.
        normalization: The model's input normalisation, or ``None`` (raw pixels).
        n_classes: ``K``.
        input_shape: ``(C, H, W)``.
        sources: The validation sets, with content hashes.
        metrics: Validation metrics at the chosen pair (empty without OOD data).
        selection: How ``T`` and ``ε`` were chosen.
        class_names: Optional class names, ``K`` of them.
        library_versions: Library versions at calibration time.
        created_at: ISO-8601 UTC timestamp.
        schema_version: Version of this record's layout.
        preprocessing: How a raw image file becomes the model's input (decode, colour,
            geometry; :class:`~odin_monitor.preprocess.Preprocessing`), or ``None`` for
            a detector that only takes tensors.
        strategy: The named rule that chose ``(T, ε)`` (``"ood-validation"``,
            ``"jigsaw"``, ``"noise"``; :func:`odin_monitor.calibrate`), or ``None``.
        warnings: What the calibration's own checks found (low accuracy, a pair on
            the grid's edge, ODIN not beating MSP on the validation data).
        search: How the grid was searched (``"coarse-to-fine"``, ``"halving"``, ``"full"``;
            :mod:`odin_monitor.search`), or ``None``.

    Example:
        >>> rec = CalibrationRecord(temperature=1000.0, epsilon=0.0014, threshold=0.1003,
        ...     threshold_spread=2.9, tpr_target=0.95, normalization=None, n_classes=10,
        ...     input_shape=(3, 32, 32))
        >>> CalibrationRecord.from_json(rec.to_json()) == rec
        True
    """

    temperature: float
    epsilon: float
    threshold: float
    threshold_spread: float
    tpr_target: float
    normalization: Normalization | None
    n_classes: int
    input_shape: tuple[int, int, int]
    sources: tuple[ValidationSource, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    selection: str = "fixed"
    class_names: tuple[str, ...] | None = None
    library_versions: Mapping[str, str] = field(default_factory=dict)
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    schema_version: int = SCHEMA_VERSION
    preprocessing: Preprocessing | None = None
    strategy: str | None = None
    warnings: tuple[str, ...] = ()
    search: str | None = None

    def __post_init__(self) -> None:
        if self.class_names is not None and len(self.class_names) != self.n_classes:
            raise CalibrationError(
                f"Expected {self.n_classes} class names, but got {len(self.class_names)}."
            )
        if len(self.input_shape) != 3:
            raise CalibrationError(f"Expected input_shape (C, H, W), but got {self.input_shape}.")
        if self.preprocessing is not None and self.preprocessing.input_shape != tuple(
            self.input_shape
        ):
            raise CalibrationError(
                f"Expected the preprocessing to produce the model's input {tuple(self.input_shape)}"
                f", but it produces {self.preprocessing.input_shape}."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["normalization"] = None if self.normalization is None else self.normalization.to_dict()
        out["input_shape"] = list(self.input_shape)
        out["metrics"] = dict(self.metrics)
        out["library_versions"] = dict(self.library_versions)
        out["class_names"] = None if self.class_names is None else list(self.class_names)
        if self.preprocessing is None:
            del out["preprocessing"]  # hashes of records without it stay as they were
        else:
            out["preprocessing"] = self.preprocessing.to_dict()
        # Likewise for the fields schema 2 added: absent when unset.
        if self.strategy is None:
            del out["strategy"]
        if self.search is None:
            del out["search"]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        else:
            del out["warnings"]
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the input of :meth:`sha256`."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    def sha256(self) -> str:
        """SHA-256 of :meth:`to_json`: identifies this calibration."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRecord:
        """Inverse of :meth:`to_dict`."""
        try:
            if int(data.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
                raise CalibrationError(
                    f"Expected a calibration record of schema <= {SCHEMA_VERSION}, but got "
                    f"{data['schema_version']}; upgrade odin-monitor to read it."
                )
            names = data.get("class_names")
            return cls(
                temperature=float(data["temperature"]),
                epsilon=float(data["epsilon"]),
                threshold=float(data["threshold"]),
                threshold_spread=float(data["threshold_spread"]),
                tpr_target=float(data["tpr_target"]),
                normalization=Normalization.from_dict(data.get("normalization")),
                n_classes=int(data["n_classes"]),
                input_shape=tuple(int(v) for v in data["input_shape"]),  # type: ignore[arg-type]
                sources=tuple(ValidationSource(**s) for s in data.get("sources", ())),
                metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
                selection=str(data.get("selection", "fixed")),
                class_names=None if names is None else tuple(str(n) for n in names),
                library_versions=dict(data.get("library_versions", {})),
                created_at=str(data["created_at"]),
                schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
                preprocessing=(
                    None
                    if data.get("preprocessing") is None
                    else Preprocessing.from_dict(data["preprocessing"])
                ),
                strategy=None if data.get("strategy") is None else str(data["strategy"]),
                warnings=tuple(str(w) for w in data.get("warnings", ())),
                search=None if data.get("search") is None else str(data["search"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, CalibrationError):
                raise
            raise CalibrationError(f"Not a valid calibration record: {err!r}.") from err

    @classmethod
    def from_json(cls, text: str) -> CalibrationRecord:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CalibrationError(f"Expected calibration record JSON, but: {err}.") from err
        return cls.from_dict(data)
