"""The pyfunc wrapper: validated images in, one row of ODIN scores per image out.

Two routes, fixed by the model's signature (:func:`model_signature`):

* **image** (the default of models with a preprocessing spec): a DataFrame with one
  binary column ``image`` of encoded files (JPEG, PNG, WebP, BMP, GIF), decoded and
  resized by the record's :class:`~odin_monitor.preprocess.Preprocessing`. Through
  ``mlflow models serve``: ``{"dataframe_split": {"columns": ["image"], "data":
  [["<base64>"], ...]}}``; through ``spark_udf``: a binary column (the ``content`` of
  ``spark.read.format("binaryFile")``).
* **tensor**: float32 ``(N, C, H, W)`` in [0, 1] (``{"inputs": [...]}``), also flattened
  images ``(N, C·H·W)`` or a one-column DataFrame of per-image arrays.

Every input ends in :func:`odin_monitor.validation.as_image_tensor`: a wrong shape,
dtype, channel count, NaN, a pixel outside [0, 1], or a file that is no image (each
bad row named, nothing scored) is an ``MlflowException`` with
``INVALID_PARAMETER_VALUE`` (HTTP 400 through the server).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from mlflow_plugin.scorer_thread import ScorerThread
from odin_monitor.columns import MLFLOW_TYPES, SCORE_COLUMNS
from odin_monitor.compiled import CompileSetting, parse_compile_setting
from odin_monitor.detector import OdinDetector
from odin_monitor.errors import InputValidationError, OdinError
from odin_monitor.inference_log import InferenceLogWriter
from odin_monitor.preprocess import Preprocessing, preprocess_images

__all__ = [
    "COMPILE_ENV",
    "IMAGE_COLUMN",
    "OdinPyfuncModel",
    "compile_setting_from",
    "image_column",
    "images_from_input",
    "model_signature",
    "resolve_device",
]


#: The one binary input column of an image model (encoded files: JPEG, PNG, ...).
IMAGE_COLUMN = "image"
InputKind = Literal["image", "tensor"]


def model_signature(
    input_shape: tuple[int, ...],
    *,
    threshold: float,
    batch_size: int,
    input_kind: InputKind = "tensor",
) -> ModelSignature:
    """The input, the score columns out, and the params.

    ``input_kind="image"``: one binary column ``image`` (encoded image files; MLflow
    decodes base64 for it in ``dataframe_split`` requests, Spark passes a binary column
    as bytes). ``"tensor"``: a float32 tensor ``(-1, C, H, W)`` in [0, 1].

    The params' defaults are the calibrated values, because MLflow applies a
    ParamSpec's default on every call that does not pass the param.

    Example:
        >>> sig = model_signature((3, 8, 8), threshold=0.2, batch_size=64)
        >>> sig.inputs.inputs[0].shape, sig.params.to_dict()[1]["default"]
        ((-1, 3, 8, 8), 0.2)
        >>> model_signature((3, 8, 8), threshold=0.2, batch_size=64,
        ...                 input_kind="image").inputs.input_names()
        ['image']
    """
    if input_kind == "image":
        inputs = Schema([ColSpec("binary", IMAGE_COLUMN)])
    elif input_kind == "tensor":
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *map(int, input_shape)))])
    else:
        raise MlflowException.invalid_parameter_value(
            f"Expected input_kind 'image' or 'tensor', but got {input_kind!r}."
        )
    outputs = Schema([ColSpec(MLFLOW_TYPES[c], c) for c in SCORE_COLUMNS])
    params = ParamSchema(
        [
            ParamSpec("batch_size", "long", int(batch_size)),
            ParamSpec("threshold", "double", float(threshold)),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def resolve_device(device: Any = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the device asked for.

    Raises:
        MlflowException: An unknown device string, or CUDA asked for but unavailable.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise MlflowException.invalid_parameter_value(
            f"Expected model_config['device'] like 'cpu', 'cuda' or 'cuda:1', but got {device!r}."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MlflowException.invalid_parameter_value(
            f"model_config['device'] is {device!r}, but CUDA is not available here. "
            "Use 'cpu' or leave it unset (CUDA when available)."
        )
    return dev


#: Environment variable that turns the compiled scorer on in serving workers.
COMPILE_ENV = "ODIN_COMPILE"


def compile_setting_from(model_config: Mapping[str, Any]) -> CompileSetting:
    """The ``compile`` switch of a load: ``model_config["compile"]``, else ``$ODIN_COMPILE``.

    Raises:
        MlflowException: A value other than true, false or auto.

    Example:
        >>> compile_setting_from({"compile": "auto"})
        'auto'
    """
    value, source = model_config.get("compile"), "model_config['compile']"
    if value is None:
        value, source = os.environ.get(COMPILE_ENV), f"${COMPILE_ENV}"
    try:
        return parse_compile_setting(value, source)
    except ValueError as err:
        raise MlflowException.invalid_parameter_value(str(err)) from err


def _stack_column(values: pd.Series) -> np.ndarray:
    try:
        return np.stack([np.asarray(v, dtype=np.float32) for v in values])
    except (ValueError, TypeError) as err:
        raise InputValidationError(
            "Expected every row of the image column to hold an array of the same length "
            f"(one flattened image), but they differ: {err}."
        ) from err


def images_from_input(model_input: Any, input_shape: tuple[int, ...]) -> np.ndarray | torch.Tensor:
    """Turn pyfunc input into a batch ``(N, C, H, W)``, leaving value checks to the detector.

    Accepted: an array or tensor ``(N, C, H, W)``; flattened images ``(N, C·H·W)``;
    a DataFrame with one column of per-image arrays, or ``C·H·W`` numeric columns;
    a one-entry dict of any of these (a named tensor input).

    Raises:
        InputValidationError: The input is none of the above.

    Example:
        >>> images_from_input(np.zeros((2, 12), np.float32), (3, 2, 2)).shape
        (2, 3, 2, 2)
    """
    size = math.prod(input_shape)
    x: Any = model_input
    if isinstance(x, Mapping):
        if len(x) != 1:
            raise InputValidationError(
                f"Expected one input tensor of images, but got a dict with keys {sorted(x)}."
            )
        x = next(iter(x.values()))
    if isinstance(x, pd.DataFrame):
        x = _stack_column(x.iloc[:, 0]) if x.shape[1] == 1 else x.to_numpy()
    elif isinstance(x, pd.Series):
        x = _stack_column(x)
    elif isinstance(x, list):
        try:
            x = np.asarray(x, dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise InputValidationError(
                f"Expected a rectangular nested list of numbers (N, "
                f"{', '.join(map(str, input_shape))}), but it is ragged or not numeric: {err}."
            ) from err
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise InputValidationError(
            f"Expected images as a float32 array (N, {', '.join(map(str, input_shape))}), "
            f"flattened (N, {size}), or a DataFrame of them, but got {type(x).__name__}."
        )
    if x.ndim == 2 and x.shape[1] == size:
        return x.reshape((x.shape[0], *input_shape))
    if x.ndim == 2:
        raise InputValidationError(
            f"Expected flattened images with {size} values each (C·H·W for "
            f"{tuple(input_shape)}), but got shape {tuple(x.shape)}."
        )
    return x


def image_column(model_input: Any) -> Any | None:
    """The values of an ``image`` column (a DataFrame's, or a dict's), else ``None``."""
    if isinstance(model_input, pd.DataFrame) and IMAGE_COLUMN in model_input.columns:
        return model_input[IMAGE_COLUMN].tolist()
    if isinstance(model_input, Mapping) and IMAGE_COLUMN in model_input:
        values = model_input[IMAGE_COLUMN]
        return values.tolist() if isinstance(values, (np.ndarray, pd.Series)) else list(values)
    return None


class OdinPyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps for the ``odin`` flavour.

    Args:
        detector: A fitted :class:`~odin_monitor.OdinDetector` on its device.
        batch_size: Default images per chunk (the signature's default).
        threshold: Default δ (the signature's default; the calibrated value).
        preprocessing: How encoded images become inputs (the record's), or ``None``
            for a model that takes tensors only.
        inference_log: Where every scored request's rows are appended
            (:class:`~odin_monitor.inference_log.InferenceLogWriter`), or ``None``.
        scorer: The thread that scores (:class:`~mlflow_plugin.scorer_thread.ScorerThread`,
            the one the model was loaded on), or ``None`` for the caller's thread.
    """

    def __init__(
        self,
        detector: OdinDetector,
        *,
        batch_size: int,
        threshold: float,
        preprocessing: Preprocessing | None = None,
        inference_log: InferenceLogWriter | None = None,
        scorer: ScorerThread | None = None,
    ) -> None:
        self.detector = detector
        self.scorer = scorer
        self.inference_log = inference_log
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.preprocessing = preprocessing

    def get_raw_model(self) -> OdinDetector:
        """The underlying detector (``PyFuncModel.get_raw_model()`` returns it)."""
        return self.detector

    def _params(self, params: Mapping[str, Any] | None) -> tuple[int, float]:
        params = dict(params or {})
        unknown = sorted(set(params) - {"batch_size", "threshold"})
        if unknown:
            raise MlflowException.invalid_parameter_value(
                f"Expected params among ['batch_size', 'threshold'], but got {unknown}."
            )
        try:
            batch_size = int(params.get("batch_size", self.batch_size))
            threshold = float(params.get("threshold", self.threshold))
        except (TypeError, ValueError) as err:
            raise MlflowException.invalid_parameter_value(
                f"Expected an integer batch_size and a numeric threshold, but got {params}."
            ) from err
        if batch_size < 1:
            raise MlflowException.invalid_parameter_value(
                f"Expected params['batch_size'] >= 1, but got {batch_size}."
            )
        if not math.isfinite(threshold):
            raise MlflowException.invalid_parameter_value(
                f"Expected a finite params['threshold'], but got {threshold}."
            )
        return batch_size, threshold

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Score images; one row per image.

        Args:
            model_input: A DataFrame with an ``image`` column of encoded image files
                (bytes, or base64 text), decoded with the model's preprocessing spec;
                or float32 images ``(N, C, H, W)`` in [0, 1] (see
                :func:`images_from_input` for the other accepted layouts).
            params: ``batch_size`` (images per chunk, caps memory) and ``threshold``
                (δ override); both default to the saved values.

        Returns:
            DataFrame with columns ``odin_score``, ``spread_score``, ``msp``,
            ``predicted_class``, ``is_ood``.

        Raises:
            MlflowException: ``INVALID_PARAMETER_VALUE`` for bad images or params.
        """
        batch_size, threshold = self._params(params)
        det = copy.copy(self.detector)
        det.batch_size = batch_size
        try:
            x = self._images(model_input, tuple(det.input_shape_))
            # Concurrent requests take turns inside the core's per-model lock (and, in
            # a server, on the one scorer thread); they decode (above) side by side.
            if self.scorer is None:
                scores = det.score_batch(x, threshold=threshold)
            else:
                scores = self.scorer.run(det.score_batch, x, threshold=threshold)
        except OdinError as err:
            raise MlflowException.invalid_parameter_value(str(err)) from err
        frame = scores.to_frame()
        if self.inference_log is not None:
            self.inference_log.append(frame)  # never raises, never waits on the disk
        return frame

    def _images(self, model_input: Any, input_shape: tuple[int, ...]) -> Any:
        encoded = image_column(model_input)
        # An `image` column of per-image arrays (as tensor models took it) stays tensors.
        if encoded is None or not any(isinstance(v, (bytes, bytearray, memoryview, str))
                                      for v in encoded):  # fmt: skip
            return images_from_input(model_input, input_shape)
        if self.preprocessing is None:
            raise InputValidationError(
                "Expected float32 image tensors: this model was logged without a "
                "preprocessing spec, so it cannot decode image files. Re-log it with "
                "odin-monitor >= this version to accept encoded images."
            )
        batch, _ = preprocess_images(encoded, self.preprocessing)
        return batch
