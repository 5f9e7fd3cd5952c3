"""The ``odin`` MLflow flavour: save, log and load a calibrated ``OdinDetector``.

Shaped like MLflow's own flavours (``mlflow.pytorch``): :func:`save_model` writes a
model folder, :func:`log_model` logs it through :meth:`mlflow.models.Model.log`,
:func:`load_model` returns the :class:`~odin_monitor.OdinDetector`, and
``_load_pyfunc`` returns the pyfunc wrapper (:class:`~mlflow_plugin.pyfunc.OdinPyfuncModel`).

A model folder::

    MLmodel                      flavours "odin" (T, ε, δ, tpr_target, normalisation,
                                 input shape, class count) and "python_function"
    data/model.pt2               torch.export archive, dynamic batch (or data/state_dict.pt
                                 plus a "package.module:factory" reference)
    data/calibration_record.json the CalibrationRecord
    data/reference_scores.npz    scores of the in-distribution validation set
    data/calibration_grid.csv    the T × ε grid (when logged from a CalibrationResult)
    code/odin_monitor, code/mlflow_plugin   what loading and scoring need, so the model
                                 loads where odin-monitor is not installed
    input_example.json, conda.yaml, requirements.txt, python_env.yaml

Nothing in it is unpickled on load: the archive is checked record by record, the
fallback weights are read with ``torch.load(weights_only=True)``, the reference
scores with ``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import mlflow
import pandas as pd
import torch
from mlflow import pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME, ModelInfo

import odin_monitor
from mlflow_plugin import _mlflow_compat as compat
from mlflow_plugin.allocator import tune_malloc_for_serving
from mlflow_plugin.export import (
    ModelExportError,
    export_classifier,
    save_state_dict,
)
from mlflow_plugin.integrity import check_signature_matches, read_record
from mlflow_plugin.model_folder import (
    PT2_FILE,
    RECORD_FILE,
    STATE_DICT_FILE,
    default_input_example,
    load_classifier,
    png_example,
    read_reference,
    ship_code,
    write_data,
)
from mlflow_plugin.pyfunc import (
    InputKind,
    OdinPyfuncModel,
    compile_setting_from,
    model_signature,
    resolve_device,
)
from mlflow_plugin.scorer_thread import scorer_for
from mlflow_plugin.tags import tag_model_version
from odin_monitor.calibration import CalibrationResult
from odin_monitor.compiled import CompileSetting
from odin_monitor.detector import OdinDetector
from odin_monitor.errors import ModelLoadError, NotFittedError
from odin_monitor.inference_log import writer_from_config
from odin_monitor.record import CalibrationRecord

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FLAVOR_NAME",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "load_record",
    "load_reference",
    "log_model",
    "save_model",
]

FLAVOR_NAME = "odin"
Serialization = Literal["auto", "pt2", "state_dict"]


_logger = logging.getLogger(__name__)


def get_default_pip_requirements() -> list[str]:
    """Pip requirements of a saved detector (MLflow itself is added by MLflow).

    The project's own code ships inside the model (``code/``), so it is not listed.

    Example:
        >>> any(r.startswith("torch==") for r in get_default_pip_requirements())
        True
    """
    return [
        compat.pinned_requirement("torch"),
        compat.pinned_requirement("numpy"),
        compat.pinned_requirement("pandas"),
        compat.pinned_requirement("scikit-learn", module="sklearn"),
    ]


def get_default_conda_env() -> dict[str, Any]:
    """The conda environment of a saved detector, built from the pip requirements."""
    return compat.conda_env(get_default_pip_requirements())


# -- saving ------------------------------------------------------------------------


def _unpack(
    detector: OdinDetector | CalibrationResult, record: CalibrationRecord | None
) -> tuple[OdinDetector, CalibrationRecord, CalibrationResult | None]:
    result = detector if isinstance(detector, CalibrationResult) else None
    det = detector.detector if isinstance(detector, CalibrationResult) else detector
    if not isinstance(det, OdinDetector):
        raise MlflowException.invalid_parameter_value(
            "Expected an odin_monitor.OdinDetector (fitted) or the CalibrationResult of "
            f"odin_monitor.calibrate(...), but got {type(detector).__name__}."
        )
    if not det.is_fitted:
        raise NotFittedError(
            "Expected a fitted OdinDetector: call detector.fit(x_id_val) or use "
            "odin_monitor.calibrate(...) before saving it."
        )
    if record is None:
        record = result.record if result is not None else det.to_record()
    if (record.temperature, record.epsilon, record.threshold) != (
        float(det.temperature),
        float(det.epsilon),
        float(det.threshold_),
    ):
        raise MlflowException.invalid_parameter_value(
            f"The record (T={record.temperature}, ε={record.epsilon}, δ={record.threshold}) "
            f"does not describe the detector (T={det.temperature}, ε={det.epsilon}, "
            f"δ={det.threshold_}). Pass the record of this detector, or none."
        )
    return det, record, result


def _save_classifier(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str,
    serialization: Serialization,
    model_factory: str | None,
) -> tuple[str, str]:
    if serialization not in ("auto", "pt2", "state_dict"):
        raise MlflowException.invalid_parameter_value(
            f"Expected serialization 'auto', 'pt2' or 'state_dict', but got {serialization!r}."
        )
    if serialization == "state_dict" and not model_factory:
        raise MlflowException.invalid_parameter_value(
            "serialization='state_dict' needs model_factory='package.module:factory' to "
            "rebuild the architecture at load time."
        )
    if serialization != "state_dict":
        try:
            export_classifier(model, input_shape, os.path.join(path, PT2_FILE))
            return "pt2", PT2_FILE
        except ModelExportError as err:
            if serialization == "pt2" or not model_factory:
                raise
            _logger.warning("%s Saving a state_dict and %r instead.", err, model_factory)
    save_state_dict(model, str(model_factory), input_shape, os.path.join(path, STATE_DICT_FILE))
    return "state_dict", STATE_DICT_FILE


def _input_kind(requested: InputKind | None, record: CalibrationRecord) -> InputKind:
    kind = requested or ("image" if record.preprocessing is not None else "tensor")
    if kind not in ("image", "tensor"):
        raise MlflowException.invalid_parameter_value(
            f"Expected input_kind='image' or 'tensor', but got {requested!r}."
        )
    if kind == "image" and record.preprocessing is None:
        raise MlflowException.invalid_parameter_value(
            "input_kind='image' needs a preprocessing spec in the calibration record "
            "(calibrate(..., preprocessing=Preprocessing(...)) or the default 'auto')."
        )
    return kind


def save_model(
    detector: OdinDetector | CalibrationResult,
    path: str | os.PathLike[str],
    *,
    record: CalibrationRecord | None = None,
    serialization: Serialization = "auto",
    model_factory: str | None = None,
    input_example: Any = None,
    code_paths: Sequence[str] | None = None,
    conda_env: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    mlflow_model: Model | None = None,
    input_kind: InputKind | None = None,
) -> None:
    """Save a calibrated detector as an MLflow model folder (no pickle in it).

    Args:
        detector: A fitted :class:`~odin_monitor.OdinDetector`, or the
            :class:`~odin_monitor.CalibrationResult` of :func:`odin_monitor.calibrate`
            (then the grid is saved too).
        path: A new (or empty) folder.
        record: The calibration record; default the result's or ``detector.to_record()``.
        serialization: ``"auto"`` (``torch.export``, else the ``model_factory``
            fallback), ``"pt2"`` (``torch.export`` only) or ``"state_dict"``.
        model_factory: ``"package.module:factory"``, a zero-argument callable returning
            the architecture, for the state_dict fallback. It must be importable where
            the model is loaded (ship its code with ``code_paths``).
        input_example: float32 images ``(n, C, H, W)`` (stored as PNG files for an image
            model), or a DataFrame with an ``image`` column; default two seeded noise images.
        code_paths: Extra code to ship with the model (e.g. the factory's module).
        conda_env: As in MLflow's flavours.
        pip_requirements: As in MLflow's flavours.
        extra_pip_requirements: As in MLflow's flavours.
        metadata: Custom metadata stored in ``MLmodel``.
        mlflow_model: Used by :func:`log_model`.
        input_kind: What the pyfunc takes: ``"image"`` (one binary ``image`` column of
            encoded files, decoded by the record's preprocessing spec; the default when
            the record has one) or ``"tensor"`` (float32 ``(N, C, H, W)``, as before).

    Raises:
        ModelExportError: ``torch.export`` cannot capture the classifier and no
            ``model_factory`` was given; the message names the cause and the fallback.

    Example:
        >>> det = OdinDetector(net, temperature=1000.0, epsilon=0.0014,
        ...                    normalization=None).fit(x_val)  # doctest: +SKIP
        >>> mlflow_plugin.save_model(det, "odin_model")  # doctest: +SKIP
    """
    det, rec, result = _unpack(detector, record)
    path = os.path.abspath(os.fspath(path))
    compat.prepare_target_dir(path)
    os.makedirs(os.path.join(path, "data"), exist_ok=True)
    mlflow_model = mlflow_model or Model()
    input_shape = tuple(int(s) for s in det.input_shape_)

    fmt, model_file = _save_classifier(det.model, input_shape, path, serialization, model_factory)
    reference, grid = write_data(path, det, rec, result)
    code_dir = ship_code(path, code_paths)

    kind = _input_kind(input_kind, rec)
    example = default_input_example(input_shape) if input_example is None else input_example
    if isinstance(example, torch.Tensor):
        example = example.detach().cpu().numpy()
    if kind == "image" and not isinstance(example, pd.DataFrame):
        example = png_example(example)
    compat.save_input_example(mlflow_model, example, path)
    mlflow_model.signature = model_signature(
        input_shape, threshold=rec.threshold, batch_size=int(det.batch_size), input_kind=kind
    )
    if metadata is not None:
        mlflow_model.metadata = dict(metadata)
    mlflow_model.add_flavor(
        FLAVOR_NAME,
        format=fmt,
        model_file=model_file,
        model_factory=model_factory if fmt == "state_dict" else None,
        record_file=RECORD_FILE,
        reference_file=reference,
        grid_file=grid,
        temperature=rec.temperature,
        epsilon=rec.epsilon,
        threshold=rec.threshold,
        threshold_spread=rec.threshold_spread,
        tpr_target=rec.tpr_target,
        normalization=None if rec.normalization is None else rec.normalization.to_dict(),
        input_shape=list(input_shape),
        n_classes=rec.n_classes,
        class_names=None if rec.class_names is None else list(rec.class_names),
        batch_size=int(det.batch_size),
        calibration_sha256=rec.sha256(),
        input_kind=kind,
        odin_monitor_version=odin_monitor.__version__,
        torch_version=str(torch.__version__),
        code=code_dir,
    )
    pyfunc.add_to_model(
        mlflow_model,
        loader_module="mlflow_plugin.flavor",
        code=code_dir,
        conda_env=compat.CONDA_ENV_FILE_NAME,
        python_env=compat.PYTHON_ENV_FILE_NAME,
        # MLflow only lets a load override the keys saved here (None: the defaults).
        model_config={
            "compile": None,
            "device": None,
            "inference_log": None,
            "malloc_tuning": None,
            "model_name": None,
            "model_version": None,
            "scorer_thread": None,
        },
    )
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))
    compat.write_environment(
        path,
        default_requirements=get_default_pip_requirements(),
        conda_env=conda_env,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
    )


def log_model(
    detector: OdinDetector | CalibrationResult,
    name: str = "odin_detector",
    *,
    record: CalibrationRecord | None = None,
    serialization: Serialization = "auto",
    model_factory: str | None = None,
    input_example: Any = None,
    registered_model_name: str | None = None,
    await_registration_for: int = compat.DEFAULT_AWAIT_REGISTRATION_S,
    code_paths: Sequence[str] | None = None,
    conda_env: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    log_calibration: bool = True,
    input_kind: InputKind | None = None,
    log_figures: bool = True,
) -> ModelInfo:
    """Log a calibrated detector to the active run (one is started if none is active).

    The run gets the calibration as params (``odin.temperature``, ``odin.epsilon``,
    ``odin.threshold``, ...), the validation metrics (``odin.val.<metric>``) and
    figures under ``odin/<name>/`` (see :mod:`mlflow_plugin.artifacts`). With
    ``registered_model_name``, the new model version is tagged with the calibration
    (see :func:`mlflow_plugin.tags.calibration_tags`); no alias is set.

    Args:
        detector: A fitted detector or a :class:`~odin_monitor.CalibrationResult`.
        name: The logged model's name.
        record: See :func:`save_model`.
        serialization: See :func:`save_model`.
        model_factory: See :func:`save_model`.
        input_example: See :func:`save_model`.
        registered_model_name: Register the model under this name (and tag the version).
        await_registration_for: Seconds to wait for the version to be ready.
        code_paths: See :func:`save_model`.
        conda_env: See :func:`save_model`.
        pip_requirements: See :func:`save_model`.
        extra_pip_requirements: See :func:`save_model`.
        metadata: See :func:`save_model`.
        params: Extra params of the logged model.
        tags: Tags of the logged model.
        log_calibration: Log the calibration params, metrics and figures to the run.
        log_figures: With ``log_calibration``, also draw and log the figures (off when
            the caller logs figures it already has, so that each is logged once).
        input_kind: See :func:`save_model` (``"image"`` by default when the record has a
            preprocessing spec).

    Returns:
        MLflow's :class:`~mlflow.models.model.ModelInfo` (``model_uri``,
        ``registered_model_version``, ...).

    Example:
        >>> result = odin_monitor.calibrate(net, x_val, normalization=None)  # doctest: +SKIP
        >>> with mlflow.start_run():  # doctest: +SKIP
        ...     info = mlflow_plugin.log_model(result, registered_model_name="odin-cifar10")
        >>> mlflow_plugin.load_model(info.model_uri)  # doctest: +SKIP
        OdinDetector(temperature=1000.0, epsilon=0.0014, tpr_target=0.95, threshold_=...)
    """
    import mlflow_plugin.flavor as flavor_module
    from mlflow_plugin.artifacts import log_calibration as _log_calibration

    det, rec, result = _unpack(detector, record)
    own_run = mlflow.active_run() is None
    run = mlflow.start_run() if own_run else mlflow.active_run()
    try:
        if log_calibration:
            _log_calibration(
                run.info.run_id,  # type: ignore[union-attr]
                rec,
                name=name,
                result=result,
                detector=det,
                figures=log_figures,
            )
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=flavor_module,
            flavor_name=FLAVOR_NAME,
            registered_model_name=registered_model_name,
            await_registration_for=await_registration_for,
            detector=result if result is not None else det,
            record=rec,
            serialization=serialization,
            model_factory=model_factory,
            input_example=input_example,
            code_paths=code_paths,
            conda_env=conda_env,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
            params=dict(params) if params else None,
            tags=dict(tags) if tags else None,
            input_kind=input_kind,
        )
        if registered_model_name is not None and info.registered_model_version is not None:
            tag_model_version(registered_model_name, str(info.registered_model_version), rec)
    finally:
        if own_run:
            mlflow.end_run()
    return info


# -- loading -------------------------------------------------------------------------


def _load_detector(
    model_path: str,
    conf: Mapping[str, Any],
    *,
    device: torch.device,
    batch_size: int | None = None,
    record: CalibrationRecord | None = None,
    compile: CompileSetting = False,
) -> OdinDetector:
    record = record or read_record(model_path, conf)
    model = load_classifier(model_path, conf, device)
    return OdinDetector.from_record(
        model,
        record,
        batch_size=int(batch_size or conf.get("batch_size", 256)),
        device=device,
        reference=read_reference(model_path, conf),
        compile=compile,
    )


def load_model(
    model_uri: str,
    dst_path: str | None = None,
    *,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    compile: CompileSetting = False,
) -> OdinDetector:
    """Load a logged detector as a fitted :class:`~odin_monitor.OdinDetector`.

    Args:
        model_uri: ``runs:/<run_id>/<name>``, ``models:/<name>@<alias>``,
            ``models:/<name>/<version>``, ``models:/<model_id>`` or a local folder.
        dst_path: Where to download the model (default: a temporary folder).
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
        batch_size: Images per chunk; default the saved value.
        compile: Score on a compiled copy of the classifier (``True``, ``False``,
            ``"auto"``; :mod:`odin_monitor.compiled`); call ``warm_up()`` to compile
            before the first batch.

    Returns:
        The detector, with ``threshold_``, ``input_shape_``, ``n_classes_`` and
        ``reference_`` (the in-distribution validation scores) set.

    Raises:
        ModelLoadError: A refused or unreadable file (e.g. a pickle in place of the
            weights), with the reason.

    Example:
        >>> det = mlflow_plugin.load_model("models:/odin-cifar10@champion")  # doctest: +SKIP
        >>> det.score_batch(images).to_frame()  # doctest: +SKIP
    """
    local = compat.download_model(model_uri, dst_path)
    conf = compat.flavor_configuration(local, FLAVOR_NAME)
    return _load_detector(
        local, conf, device=resolve_device(device), batch_size=batch_size, compile=compile
    )


def load_record(model_uri: str) -> CalibrationRecord:
    """The :class:`~odin_monitor.CalibrationRecord` of a logged detector.

    Example:
        >>> load_record("models:/odin-cifar10@champion").threshold  # doctest: +SKIP
        0.10013
    """
    local = compat.download_model(model_uri)
    return read_record(local, compat.flavor_configuration(local, FLAVOR_NAME))


def load_reference(model_uri: str) -> pd.DataFrame:
    """The in-distribution validation scores saved with a detector.

    Returns:
        DataFrame with columns ``odin_score``, ``spread_score``, ``msp``,
        ``predicted_class``, ``is_ood`` (one row per validation image).

    Raises:
        ModelLoadError: The model was saved without reference scores.

    Example:
        >>> load_reference("models:/odin-cifar10@champion").columns.tolist()  # doctest: +SKIP
        ['odin_score', 'spread_score', 'msp', 'predicted_class', 'is_ood']
    """
    local = compat.download_model(model_uri)
    reference = read_reference(local, compat.flavor_configuration(local, FLAVOR_NAME))
    if reference is None:
        raise ModelLoadError(
            f"The model {model_uri} holds no reference scores: it was saved from a detector "
            "without `reference_`. Re-log it from a detector fitted with detector.fit(...)."
        )
    return reference.to_frame()


def _load_pyfunc(path: str, model_config: Mapping[str, Any] | None = None) -> OdinPyfuncModel:
    """Called by ``mlflow.pyfunc.load_model``.

    ``model_config={"device": ...}`` picks the device; ``model_config={"compile": ...}``
    or the environment variable ``ODIN_COMPILE`` (``true``, ``false``, ``auto``; for
    ``mlflow models serve`` workers) scores on a compiled copy, compiled here at load
    (warm-up) rather than on the first request. Inside MLflow's scoring server (and
    wherever ``true``): ``malloc_tuning`` / ``ODIN_MALLOC_TUNING`` keeps freed memory
    mapped between requests (:mod:`mlflow_plugin.allocator`), and ``scorer_thread`` /
    ``ODIN_SCORER_THREAD`` loads and scores on one thread (:mod:`mlflow_plugin.scorer_thread`).
    """
    config = dict(model_config or {})
    try:
        scorer = scorer_for(config.get("scorer_thread"))
        tune_malloc_for_serving(config.get("malloc_tuning"))
    except ValueError as err:
        raise MlflowException.invalid_parameter_value(str(err)) from err
    conf = compat.flavor_configuration(path, FLAVOR_NAME)
    record = read_record(path, conf)
    if scorer is None:
        det = _ready_detector(path, conf, record, config)
    else:  # torch work on the scorer thread: the process keeps one OpenMP team
        det = scorer.run(_ready_detector, path, conf, record, config)
    # ODIN_INFERENCE_LOG or model_config={"inference_log": folder}: every scored row logged.
    # Made here, on the loading thread: its stop-signal handlers need the main thread.
    inference_log = writer_from_config(config, calibration_sha256=record.sha256())
    return OdinPyfuncModel(
        det,
        batch_size=int(conf.get("batch_size", det.batch_size)),
        threshold=det.threshold_,
        preprocessing=record.preprocessing,
        inference_log=inference_log,
        scorer=scorer,
    )


def _ready_detector(
    path: str, conf: Mapping[str, Any], record: CalibrationRecord, config: Mapping[str, Any]
) -> OdinDetector:
    """The detector loaded on its device, checked against the signature, warmed up."""
    device = resolve_device(config.get("device"))
    compile_setting = compile_setting_from(config)
    det = _load_detector(path, conf, device=device, record=record, compile=compile_setting)
    check_signature_matches(path, float(det.threshold_))
    if det.compiles:
        det.warm_up()  # compile at load, not on the first request
    return det
