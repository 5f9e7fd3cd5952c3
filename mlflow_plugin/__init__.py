"""MLflow ``odin`` flavour: log, register, serve and evaluate a calibrated ODIN detector.

Example:
    >>> import mlflow_plugin
    >>> mlflow_plugin.FLAVOR_NAME
    'odin'
"""

from __future__ import annotations

import pkgutil

# A model folder ships a partial copy of this package (what loading needs): span every
# copy on sys.path, so that the rest of an installed copy stays importable.
__path__ = pkgutil.extend_path(__path__, __name__)

from mlflow_plugin.errors import ModelExportError
from mlflow_plugin.flavor import (
    FLAVOR_NAME,
    get_default_conda_env,
    get_default_pip_requirements,
    load_model,
    load_record,
    load_reference,
    log_model,
    save_model,
)
from mlflow_plugin.registry import (
    compare_calibrations,
    load_by_alias,
    register_detector,
    set_alias,
)
from mlflow_plugin.tags import calibration_tags

__all__ = [
    "FLAVOR_NAME",
    "ModelExportError",
    "calibration_tags",
    "compare_calibrations",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_by_alias",
    "load_model",
    "load_record",
    "load_reference",
    "log_model",
    "register_detector",
    "save_model",
    "set_alias",
]
