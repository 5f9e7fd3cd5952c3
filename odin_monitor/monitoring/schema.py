"""The data contract between the core and monitoring: model metadata and score frames.

A scored batch is a :class:`pandas.DataFrame` with one row per image and the
columns of :data:`odin_monitor.columns.SCORE_COLUMNS`. This module validates such
frames and raw image batches, with errors that say what was expected and what came.

Example:
    >>> ref = ModelRef("resnet", "3", "ab" * 32, threshold=0.1005,
    ...                threshold_spread=2.1, tpr_target=0.95)
    >>> ref.expected_ood_rate
    0.05
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from odin_monitor.columns import SCORE_COLUMNS, spread_transform
from odin_monitor.hyper import (
    check_epsilon,
    check_temperature,
    check_threshold,
    check_tpr_target,
)
from odin_monitor.monitoring.errors import ConfigError, InvalidBatchError

#: ``predicted_class`` used for ingested rows that carry no class.
UNKNOWN_CLASS = -1

#: Absolute tolerance on probabilities (``odin_score``, ``msp``) when checked against a
#: model: float32 rounding, or a log printed with 6 decimals.
SCORE_ATOL = 1e-6


@dataclass(frozen=True)
class ModelRef:
    """Identity and operating point of a registered ODIN detector.

    Attributes:
        name: Registered model name (one Evidently project per name).
        version: Registered model version.
        calibration_sha256: Hash of the calibration artefact that produced ``threshold``.
        threshold: δ in ``odin_score`` units (``is_ood`` when ``odin_score < threshold``).
        threshold_spread: The same δ in ``spread_score`` units.
        tpr_target: In-distribution true-positive rate targeted at calibration.
        temperature: Optional T, used to derive ``spread_score`` for ingested logs (and shown
            in reports).
        n_classes: Optional K, only used to derive ``spread_score`` for ingested logs.
        epsilon: Optional ε of the input perturbation, only shown in reports.

    Raises:
        ConfigError: An empty name or version.
        odin_monitor.errors.InputValidationError: ``tpr_target`` outside (0, 1), a
            non-finite threshold, a temperature that is not > 0 (both ``ValueError``).

    Example:
        >>> ModelRef("m", "1", "0" * 64, 0.1005, 2.0, 0.95).expected_ood_rate
        0.05
    """

    name: str
    version: str
    calibration_sha256: str
    threshold: float
    threshold_spread: float
    tpr_target: float
    temperature: float | None = None
    n_classes: int | None = None
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Expected a non-empty model name but got {self.name!r}.")
        if not isinstance(self.version, str) or not self.version:
            raise ConfigError(
                f"Expected the model version as a non-empty string but got {self.version!r}; "
                "pass str(version)."
            )
        # The core's checks, one definition of a valid δ, TPR and T; stored as floats.
        checked = {
            "tpr_target": check_tpr_target(self.tpr_target),
            "threshold": check_threshold(self.threshold),
            "threshold_spread": check_threshold(self.threshold_spread, "threshold_spread"),
        }
        if self.temperature is not None:
            checked["temperature"] = check_temperature(self.temperature)
        if self.epsilon is not None:
            checked["epsilon"] = check_epsilon(self.epsilon)
        for field, value in checked.items():
            object.__setattr__(self, field, value)

    @property
    def expected_ood_rate(self) -> float:
        """Share of in-distribution images flagged OOD by design: ``1 - tpr_target``."""
        return round(1.0 - float(self.tpr_target), 12)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return asdict(self)


def validate_scores(scores: Any) -> pd.DataFrame:
    """Check a scored batch and return it with the canonical columns and dtypes.

    Args:
        scores: DataFrame with the columns of :data:`odin_monitor.columns.SCORE_COLUMNS`.

    Returns:
        A new DataFrame with exactly those columns, in order, with canonical dtypes.

    Raises:
        InvalidBatchError: On a missing column, an empty batch, NaN/inf scores or
            non-integer classes.

    Example:
        >>> df = pd.DataFrame({"odin_score": [0.1], "spread_score": [1.0], "msp": [0.9],
        ...                    "predicted_class": [2], "is_ood": [False]})
        >>> validate_scores(df).shape
        (1, 5)
    """
    if not isinstance(scores, pd.DataFrame):
        raise InvalidBatchError(
            f"Expected a pandas DataFrame of scores but got {type(scores).__name__}."
        )
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise InvalidBatchError(
            f"Expected score columns {list(SCORE_COLUMNS)} but got {list(scores.columns)} "
            f"(missing {missing}); use odin_monitor.monitoring.ingest for partial logs."
        )
    if len(scores) == 0:
        raise InvalidBatchError("Expected at least one scored image but got an empty batch.")
    out = pd.DataFrame(index=pd.RangeIndex(len(scores)))
    for col in ("odin_score", "spread_score", "msp"):
        try:
            values = pd.to_numeric(scores[col].to_numpy(), errors="raise").astype("float64")
        except (TypeError, ValueError) as exc:
            raise InvalidBatchError(
                f"Expected numeric values in column {col!r} but got dtype {scores[col].dtype}."
            ) from exc
        out[col] = values
    bad = ~np.isfinite(out["odin_score"].to_numpy())
    if bad.any():
        raise InvalidBatchError(
            f"Expected finite odin_score values but got {int(bad.sum())} NaN/inf "
            f"(first at row {int(np.flatnonzero(bad)[0])})."
        )
    cls = scores["predicted_class"]
    cls_num = pd.to_numeric(cls, errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(cls_num)) or not np.all(cls_num == np.round(cls_num)):
        raise InvalidBatchError(
            f"Expected integer predicted_class values but got dtype {cls.dtype} "
            "with missing or fractional entries."
        )
    out["predicted_class"] = cls_num.astype("int64")
    flags = scores["is_ood"]
    if flags.dtype != bool:
        uniq = set(pd.unique(flags))
        if not uniq <= {0, 1}:
            raise InvalidBatchError(
                f"Expected boolean is_ood values but got {sorted(map(str, uniq))[:5]}."
            )
    out["is_ood"] = flags.to_numpy().astype(bool)
    return out


def _rows(mask: np.ndarray, values: np.ndarray, first: int = 5) -> str:
    """``"3 of 200 rows, first [4, 9, 17] with values [0.01, 5.0, nan]"`` for an error."""
    idx = np.flatnonzero(mask)
    shown = values[idx[:first]].tolist()
    return (
        f"{len(idx)} of {len(mask)} rows (0-based), first {idx[:first].tolist()} "
        f"with values {shown}"
    )


def check_against_model(scores: pd.DataFrame, model: ModelRef) -> pd.DataFrame:
    """Check a scored batch from elsewhere against the model it is logged under.

    A serving log computed outside this process is not trusted: every column must be
    possible for ``model``, and ``is_ood`` is recomputed from δ.

    * ``odin_score`` and ``msp`` are maximum softmax probabilities, so they lie in
      ``[1/K, 1]`` (``[0, 1]`` when ``model.n_classes`` is unknown), up to
      :data:`SCORE_ATOL`; ``msp`` may be NaN (unknown), nothing may be infinite.
    * ``predicted_class`` is in ``[0, K)``, or :data:`UNKNOWN_CLASS`.
    * ``spread_score`` must equal ``T·log(K·odin_score)`` when ``model.temperature``
      and ``model.n_classes`` are set (compared as the ``odin_score`` it implies,
      within :data:`SCORE_ATOL`); otherwise it must be finite or NaN (unknown).
    * ``is_ood`` must equal ``odin_score < model.threshold`` on every row farther than
      :data:`SCORE_ATOL` from δ: a log flagged with another threshold was made by
      another calibration, so it is refused rather than silently re-flagged. Rows
      within the tolerance take the recomputed flag.

    Args:
        scores: A frame already passed through :func:`validate_scores`.
        model: The detector the batch is logged under.

    Returns:
        A copy with ``is_ood`` recomputed as ``odin_score < model.threshold``.

    Raises:
        InvalidBatchError: Naming the column, the first offending rows (0-based),
            the expected range and the values that came.

    Example:
        >>> m = ModelRef("m", "1", "0" * 64, 0.5, 0.0, 0.95, n_classes=4)
        >>> df = validate_scores(pd.DataFrame({"odin_score": [0.4, 0.9],
        ...     "spread_score": [np.nan] * 2, "msp": [0.7, 1.0],
        ...     "predicted_class": [1, -1], "is_ood": [True, False]}))
        >>> check_against_model(df, m)["is_ood"].tolist()
        [True, False]
    """
    k = model.n_classes
    lo = 1.0 / k if k else 0.0
    who = f"model {model.name} v{model.version}" + (f" (K={k} classes)" if k else "")
    odin = scores["odin_score"].to_numpy(dtype=float)
    for col, allow_nan in (("odin_score", False), ("msp", True)):
        v = scores[col].to_numpy(dtype=float)
        bad = ~((v >= lo - SCORE_ATOL) & (v <= 1.0 + SCORE_ATOL))
        if allow_nan:
            bad &= ~np.isnan(v)
        if bad.any():
            raise InvalidBatchError(
                f"Expected {col} in [{lo:.6g}, 1] (a max softmax probability of {who}), "
                f"but got {_rows(bad, v)}. Check that the log comes from this model."
            )
    cls = scores["predicted_class"].to_numpy()
    bad = (cls != UNKNOWN_CLASS) & ((cls < 0) | ((cls >= k) if k else False))
    if bad.any():
        span = f"[0, {k - 1}]" if k else ">= 0"
        raise InvalidBatchError(
            f"Expected predicted_class in {span} of {who}, or {UNKNOWN_CLASS} for unknown, "
            f"but got {_rows(bad, cls)}."
        )
    spread = scores["spread_score"].to_numpy(dtype=float)
    if model.temperature is not None and k:
        t = float(model.temperature)
        with np.errstate(over="ignore", invalid="ignore"):
            implied = np.exp(spread / t) / k
        bad = ~(np.abs(implied - odin) <= SCORE_ATOL)
        if bad.any():
            expected = spread_transform(odin[bad][:5], t, k).round(6).tolist()
            raise InvalidBatchError(
                f"Expected spread_score = T·log(K·odin_score) with T={t:g} of {who}, "
                f"i.e. {expected} on the first bad rows, but got {_rows(bad, spread)}. "
                "Drop the spread_score column to have it derived."
            )
    else:
        bad = np.isinf(spread)
        if bad.any():
            raise InvalidBatchError(
                "Expected finite (or NaN: unknown) spread_score values, "
                f"but got {_rows(bad, spread)}."
            )
    is_ood = odin < float(model.threshold)
    given = scores["is_ood"].to_numpy(dtype=bool)
    bad = (given != is_ood) & (np.abs(odin - float(model.threshold)) > SCORE_ATOL)
    if bad.any():
        raise InvalidBatchError(
            f"Expected is_ood = odin_score < δ = {model.threshold:.6g} of {who}, but it "
            f"disagrees on {_rows(bad, odin)} (their odin_score). The log was flagged with "
            "another threshold: ingest it under the model version that produced it, or drop "
            "the is_ood column to flag it with this one."
        )
    out = scores.copy()
    out["is_ood"] = is_ood
    return out


def validate_images(images: Any) -> np.ndarray:
    """Check a raw image batch: float array (N, C, H, W), finite, within [0, 1].

    Raises:
        InvalidBatchError: With the reason, e.g. ``Expected 4 dimensions ... but got 3``.

    Example:
        >>> validate_images(np.zeros((2, 3, 8, 8), dtype=np.float32)).shape
        (2, 3, 8, 8)
    """
    if not isinstance(images, np.ndarray):
        raise InvalidBatchError(
            f"Expected images as a numpy array (N, C, H, W) but got {type(images).__name__}."
        )
    if images.ndim != 4:
        raise InvalidBatchError(f"Expected 4 dimensions (N, C, H, W) but got shape {images.shape}.")
    if images.shape[0] == 0 or 0 in images.shape:
        raise InvalidBatchError(f"Expected a non-empty batch but got shape {images.shape}.")
    if not np.issubdtype(images.dtype, np.floating):
        raise InvalidBatchError(
            f"Expected float images in [0, 1] but got dtype {images.dtype}; divide uint8 by 255."
        )
    if not np.all(np.isfinite(images)):
        raise InvalidBatchError(
            f"Expected finite pixel values but got {int((~np.isfinite(images)).sum())} NaN/inf."
        )
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise InvalidBatchError(f"Expected pixel values in [0, 1] but got range [{lo}, {hi}].")
    return images.astype(np.float32, copy=False)
