"""``OdinDetector``: a thin, scikit-learn-style estimator over :mod:`odin_monitor.scoring`.

``__init__`` only stores parameters; :meth:`OdinDetector.fit` validates the
in-distribution validation images and sets the learned state (ending in ``_``):
``threshold_`` (δ) is the ``(1 - tpr_target)`` quantile of their ODIN scores, like
``offset_`` in scikit-learn's ``EllipticEnvelope``. Then
``score_samples → decision_function = score_samples - threshold_ → predict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from odin_monitor.columns import SCORE_COLUMNS
from odin_monitor.compiled import WARM_UP_SIZES, CompileSetting, resolve_compile
from odin_monitor.errors import InputValidationError, NotFittedError
from odin_monitor.hyper import check_threshold
from odin_monitor.metrics import threshold_at_tpr
from odin_monitor.normalization import Normalization
from odin_monitor.preprocess import Preprocessing
from odin_monitor.record import (
    CalibrationRecord,
    ValidationSource,
    content_sha256,
    library_versions,
)
from odin_monitor.scoring import (
    OdinScores,
    ProgressCallback,
    model_device,
    model_logits,
    odin_scores,
    scoring_mode,
)
from odin_monitor.validation import as_image_tensor, check_tpr_target, uint8_to_float

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SCORE_COLUMNS", "BatchScores", "OdinDetector"]


@dataclass(frozen=True)
class BatchScores:
    """Per-image results of one pass, as numpy arrays of shape ``(N,)``.

    Attributes:
        odin_score: ``S(x̃; T)``, float64; higher = more in-distribution.
        spread_score: ``T · log(K · S(x̃; T))``, float64, same order as ``odin_score``.
        msp: Unperturbed max softmax at ``T = 1`` (the MSP baseline), float64.
        predicted_class: ``argmax`` of the unperturbed logits, int64.
        is_ood: ``odin_score < threshold``, bool.
    """

    odin_score: np.ndarray
    spread_score: np.ndarray
    msp: np.ndarray
    predicted_class: np.ndarray
    is_ood: np.ndarray

    def __len__(self) -> int:
        return int(self.odin_score.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with the columns of :data:`SCORE_COLUMNS`."""
        import pandas as pd

        return pd.DataFrame({c: getattr(self, c) for c in SCORE_COLUMNS})


class OdinDetector:
    """ODIN out-of-distribution detector around a trained classifier.

    Args:
        model: Any ``nn.Module`` mapping ``(N, C, H, W)`` to logits ``(N, K)``. It is
            never modified: scoring restores its mode, flags and gradients.
        temperature: ``T > 0``.
        epsilon: ``ε >= 0``, in pixel units of images in [0, 1].
        normalization: The model's per-channel input normalisation, or ``None`` to
            declare that the model takes raw [0, 1] pixels. Required: there is no
            silent default, because ε's meaning depends on it.
        tpr_target: Share of in-distribution validation images kept at δ.
        batch_size: Images per chunk (caps memory).
        mixed_precision: Autocast the model's forward/backward (bf16).
        device: Where to compute; default the model's device.
        class_names: Optional names of the ``K`` classes.
        compile: Score on a compiled copy of the model (BatchNorm folded,
            ``torch.compile``; :mod:`odin_monitor.compiled`): ``True``, ``False`` (the
            exact eager path, default: compiling costs tens of seconds once) or
            ``"auto"`` (on for CPU with a C++ compiler and for CUDA). Where it cannot
            compile, it warns once and scores eagerly. :meth:`warm_up` compiles ahead.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        >>> det = OdinDetector(net, temperature=1000.0, epsilon=0.0014, normalization=None)
        >>> det = det.fit(torch.rand(40, 3, 4, 4))
        >>> det.predict(torch.rand(3, 3, 4, 4)).dtype
        dtype('bool')
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        temperature: float = 1000.0,
        epsilon: float = 0.0014,
        normalization: Normalization | None,
        tpr_target: float = 0.95,
        batch_size: int = 256,
        mixed_precision: bool = False,
        device: torch.device | str | None = None,
        class_names: Sequence[str] | None = None,
        compile: CompileSetting = False,
    ) -> None:
        self.model = model
        self.temperature = temperature
        self.epsilon = epsilon
        self.normalization = normalization
        self.tpr_target = tpr_target
        self.batch_size = batch_size
        self.mixed_precision = mixed_precision
        self.device = device
        self.class_names = class_names
        self.compile = compile

    # -- scikit-learn plumbing -------------------------------------------------
    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Constructor parameters, as in scikit-learn."""
        del deep
        return {
            "model": self.model,
            "temperature": self.temperature,
            "epsilon": self.epsilon,
            "normalization": self.normalization,
            "tpr_target": self.tpr_target,
            "batch_size": self.batch_size,
            "mixed_precision": self.mixed_precision,
            "device": self.device,
            "class_names": self.class_names,
            "compile": self.compile,
        }

    def set_params(self, **params: Any) -> OdinDetector:
        """Set constructor parameters; unknown names are an error."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise InputValidationError(
                    f"Expected one of {sorted(valid)} in set_params, but got {key!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        fitted = f", threshold_={self.threshold_:.6g}" if self.is_fitted else ""
        return (
            f"OdinDetector(temperature={self.temperature}, epsilon={self.epsilon}, "
            f"tpr_target={self.tpr_target}{fitted})"
        )

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_record`) has set ``threshold_``."""
        return hasattr(self, "threshold_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                "This OdinDetector is not fitted yet: call fit(x_id_val) with in-distribution "
                "validation images (or calibrate(...)) before predict/decision_function."
            )

    def _validate_params(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise InputValidationError(
                f"Expected `model` to be a torch.nn.Module, but got {type(self.model).__name__}."
            )
        if self.normalization is not None and not isinstance(self.normalization, Normalization):
            raise InputValidationError(
                "Expected `normalization` to be odin_monitor.Normalization(mean=..., std=...) "
                f"or None (model takes raw pixels), but got {type(self.normalization).__name__}."
            )
        check_tpr_target(self.tpr_target)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputValidationError(f"Expected `batch_size` >= 1, but got {self.batch_size!r}.")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise InputValidationError(
                f"Expected `compile` to be True, False or 'auto', but got {self.compile!r}."
            )

    # -- scoring ---------------------------------------------------------------
    def _images(self, x: Any, name: str) -> torch.Tensor:
        channels = None if self.normalization is None else self.normalization.channels
        shape = getattr(self, "input_shape_", None)
        x = uint8_to_float(x, shape, name)
        return as_image_tensor(x, name, channels=channels, image_shape=shape)

    def _device(self) -> torch.device:
        return torch.device(self.device) if self.device is not None else model_device(self.model)

    def _score(
        self, x: torch.Tensor, progress: ProgressCallback | None = None
    ) -> dict[str, np.ndarray]:
        out = odin_scores(
            self.model,
            x,
            temperature=float(self.temperature),
            epsilon=float(self.epsilon),
            normalization=self.normalization,
            batch_size=self.batch_size,
            mixed_precision=self.mixed_precision,
            device=self.device,
            progress=progress,
            compile=self.compiles,
        )
        return _arrays(out)

    @property
    def compiles(self) -> bool:
        """Whether scoring runs on the compiled copy (``compile`` resolved for the device)."""
        return resolve_compile(self.compile, self._device())

    def warm_up(self, sizes: Sequence[int] = WARM_UP_SIZES) -> OdinDetector:
        """Score small batches so a compiled step is built now, not on the first request.

        Serving workers call it at load. With ``compile=False`` it only checks that the
        model runs. Scores of the warm-up batches (zeros) are discarded.

        Args:
            sizes: Batch sizes to run; the default,
                :data:`odin_monitor.compiled.WARM_UP_SIZES`, compiles every graph of
                the step (one for 2–15 images, one for 16 or more).

        Returns:
            ``self``.

        Example:
            >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
            >>> det = OdinDetector(net, normalization=None).fit(torch.rand(8, 3, 4, 4))
            >>> det.warm_up() is det
            True
        """
        self._check_fitted()
        self._validate_params()
        for n in sizes:
            self._score(torch.zeros(int(n), *self.input_shape_))
        return self

    def fit(
        self,
        x_id_val: Any,
        y: None = None,
        *,
        source_name: str = "in_distribution",
        progress: ProgressCallback | None = None,
        scores: OdinScores | None = None,
    ) -> OdinDetector:
        """Set ``threshold_`` (δ) from in-distribution validation images.

        Args:
            x_id_val: In-distribution validation images ``(N, C, H, W)`` in [0, 1].
            y: Ignored (scikit-learn compatibility).
            source_name: Name recorded for this set in the calibration record.
            progress: Called with the number of images finished after each chunk.
            scores: The ODIN pass of ``x_id_val`` at this detector's ``(T, ε)`` when it
                was already computed (calibration's grid pass,
                :meth:`odin_monitor.scoring.GridPass.pair`); then no second pass runs.

        Returns:
            ``self``, with ``threshold_``, ``threshold_spread_``, ``n_classes_``,
            ``input_shape_``, ``reference_`` (the validation scores) and
            ``id_source_`` set.
        """
        del y
        self._validate_params()
        for attr in ("threshold_", "input_shape_"):
            if hasattr(self, attr):
                delattr(self, attr)
        x = self._images(x_id_val, "x_id_val")
        tpr = check_tpr_target(self.tpr_target)
        if scores is None:
            arrays = self._score(x, progress)
        elif int(scores.odin_score.shape[0]) != int(x.shape[0]):
            raise InputValidationError(
                f"Expected precomputed scores for the {x.shape[0]} images of x_id_val, but got "
                f"{scores.odin_score.shape[0]}."
            )
        else:
            arrays = _arrays(scores)
        delta = threshold_at_tpr(arrays["odin_score"], tpr)
        # δ in spread units is the spread score of the very image that sets δ.
        idx = int(np.flatnonzero(arrays["odin_score"] == delta)[0])
        self.n_classes_ = int(self._n_classes(x))
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        self.reference_ = BatchScores(**arrays, is_ood=arrays["odin_score"] < delta)
        self.id_source_ = ValidationSource(
            role="in_distribution",
            name=source_name,
            n_images=int(x.shape[0]),
            sha256=content_sha256(x),
        )
        self.threshold_spread_ = float(arrays["spread_score"][idx])
        self.threshold_ = float(delta)
        return self

    def _n_classes(self, x: torch.Tensor) -> int:
        dev = self._device()
        with scoring_mode(self.model), torch.no_grad():
            return int(model_logits(self.model, x[:1].to(dev), self.normalization).shape[1])

    def score_samples(self, x: Any) -> np.ndarray:
        """The paper's ODIN score ``S(x̃; T)`` per image; higher = more in-distribution.

        Args:
            x: Images ``(N, C, H, W)``, raw pixels in [0, 1].

        Returns:
            float64 array ``(N,)``.
        """
        self._validate_params()
        return self._score(self._images(x, "x"))["odin_score"]

    def decision_function(self, x: Any) -> np.ndarray:
        """``score_samples(x) - threshold_``: negative means out-of-distribution."""
        self._check_fitted()
        return self.score_samples(x) - self.threshold_

    def predict(self, x: Any, *, threshold: float | None = None) -> np.ndarray:
        """True where an image is out-of-distribution (``score < δ``).

        Args:
            x: Images ``(N, C, H, W)``, raw pixels in [0, 1].
            threshold: Override δ for this call (a finite number; None: ``threshold_``).

        Returns:
            bool array ``(N,)``.

        Raises:
            InputValidationError: ``threshold`` is not a finite number.
        """
        return self.score_batch(x, threshold=threshold).is_ood

    def score_batch(
        self,
        x: Any,
        *,
        threshold: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> BatchScores:
        """One pass that serves classification and OOD detection together.

        Args:
            x: Images ``(N, C, H, W)``, raw pixels in [0, 1].
            threshold: Override δ for this call (a finite number; None: ``threshold_``).
            progress: Called with the number of images finished after each chunk.

        Returns:
            :class:`BatchScores` (ODIN score, spread score, MSP, predicted class, is_ood).

        Raises:
            InputValidationError: ``threshold`` is not a finite number (NaN would flag
                nothing, ±inf everything or nothing).
        """
        self._check_fitted()
        self._validate_params()
        delta = self.threshold_ if threshold is None else _finite_threshold(threshold)
        scores = self._score(self._images(x, "x"), progress)
        return BatchScores(**scores, is_ood=scores["odin_score"] < delta)

    # -- calibration record ----------------------------------------------------
    def to_record(
        self,
        *,
        ood_sources: Sequence[ValidationSource] = (),
        metrics: Mapping[str, float] | None = None,
        selection: str = "fixed",
        preprocessing: Preprocessing | Literal["auto"] | None = "auto",
        strategy: str | None = None,
        warnings: Sequence[str] = (),
        search: str | None = None,
    ) -> CalibrationRecord:
        """The :class:`CalibrationRecord` of this fitted detector.

        Args:
            ood_sources: The OOD validation sets, if any.
            metrics: Validation metrics at the chosen pair.
            selection: How ``T`` and ``ε`` were chosen.
            strategy: The named rule that chose ``(T, ε)``, if any.
            warnings: What the calibration's checks found.
            search: How the grid was searched, if any.
            preprocessing: How raw image files become this detector's input;
                ``"auto"``: :meth:`Preprocessing.for_input_shape` for 1- or 3-channel
                inputs (an exact bilinear resize), ``None``: tensors only.
        """
        self._check_fitted()
        names = None if self.class_names is None else tuple(self.class_names)
        if preprocessing == "auto":
            c = int(self.input_shape_[0])
            preprocessing = (
                Preprocessing.for_input_shape(self.input_shape_) if c in (1, 3) else None
            )
        return CalibrationRecord(
            temperature=float(self.temperature),
            epsilon=float(self.epsilon),
            threshold=self.threshold_,
            threshold_spread=self.threshold_spread_,
            tpr_target=float(self.tpr_target),
            normalization=self.normalization,
            n_classes=self.n_classes_,
            input_shape=self.input_shape_,  # type: ignore[arg-type]
            sources=(self.id_source_, *ood_sources),
            metrics=dict(metrics or {}),
            selection=selection,
            class_names=names,
            library_versions=library_versions(),
            preprocessing=preprocessing,
            strategy=strategy,
            warnings=tuple(warnings),
            search=search,
        )

    @classmethod
    def from_record(
        cls,
        model: nn.Module,
        record: CalibrationRecord,
        *,
        batch_size: int = 256,
        mixed_precision: bool = False,
        device: torch.device | str | None = None,
        reference: BatchScores | None = None,
        compile: CompileSetting = False,
    ) -> OdinDetector:
        """A fitted detector from a saved record, without re-running calibration.

        Args:
            model: The classifier the record was calibrated for.
            record: The calibration record.
            batch_size: Images per chunk.
            mixed_precision: Autocast the model (bf16).
            device: Where to compute; default the model's device.
            reference: The in-distribution validation scores saved with the record
                (becomes ``reference_``), when available.
            compile: Score on a compiled copy (see the class docstring).

        Returns:
            A fitted detector whose ``threshold_`` is the record's δ.

        Raises:
            InputValidationError: The record's δ is not finite.
        """
        det = cls(
            model,
            temperature=record.temperature,
            epsilon=record.epsilon,
            normalization=record.normalization,
            tpr_target=record.tpr_target,
            batch_size=batch_size,
            mixed_precision=mixed_precision,
            device=device,
            class_names=record.class_names,
            compile=compile,
        )
        det._validate_params()
        det.n_classes_ = record.n_classes
        det.input_shape_ = tuple(record.input_shape)
        ids = [s for s in record.sources if s.role == "in_distribution"]
        if ids:
            det.id_source_ = ids[0]
        if reference is not None:
            det.reference_ = reference
        det.threshold_ = _finite_threshold(record.threshold)
        det.threshold_spread_ = _finite_threshold(record.threshold_spread, "threshold_spread")
        return det


def _arrays(out: OdinScores) -> dict[str, np.ndarray]:
    return {
        "odin_score": out.odin_score.numpy().astype(np.float64),
        "spread_score": out.spread_score.numpy().astype(np.float64),
        "msp": out.msp.numpy().astype(np.float64),
        "predicted_class": out.predicted_class.numpy().astype(np.int64),
    }


def _finite_threshold(threshold: Any, name: str = "threshold") -> float:
    """``threshold`` as a float, refusing NaN, ±inf and non-numbers (a NaN δ flags nothing)."""
    try:
        return check_threshold(threshold, name)
    except InputValidationError:
        raise InputValidationError(
            f"Expected a finite number for {name} (δ), but got {threshold!r}; "
            "pass threshold=None to use the fitted threshold_, or a value such as "
            "det.threshold_ + 1e-4."
        ) from None
