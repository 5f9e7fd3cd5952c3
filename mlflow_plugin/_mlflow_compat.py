"""The one place that touches MLflow's private helpers.

MLflow's own flavours build their model folders with helpers from
``mlflow.utils.*`` whose names start with ``_``. They are not a public API and move
between releases, so every such import lives here, behind small typed functions.
When MLflow changes them, this is the only file to update.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import yaml
from mlflow.models import Model
from mlflow.models.utils import _save_example
from mlflow.tracking._model_registry import DEFAULT_AWAIT_MAX_SLEEP_SECONDS
from mlflow.tracking.artifact_utils import _download_artifact_from_uri
from mlflow.utils.environment import (
    _CONDA_ENV_FILE_NAME,
    _CONSTRAINTS_FILE_NAME,
    _PYTHON_ENV_FILE_NAME,
    _REQUIREMENTS_FILE_NAME,
    _mlflow_conda_env,
    _process_conda_env,
    _process_pip_requirements,
    _PythonEnv,
)
from mlflow.utils.file_utils import write_to
from mlflow.utils.model_utils import (
    _add_code_from_conf_to_system_path,
    _get_flavor_configuration,
    _validate_and_copy_code_paths,
    _validate_and_prepare_target_save_path,
)
from mlflow.utils.requirements_utils import _get_pinned_requirement

__all__ = [
    "CONDA_ENV_FILE_NAME",
    "DEFAULT_AWAIT_REGISTRATION_S",
    "PYTHON_ENV_FILE_NAME",
    "add_code_to_sys_path",
    "conda_env",
    "copy_code_paths",
    "download_model",
    "flavor_configuration",
    "pinned_requirement",
    "prepare_target_dir",
    "save_input_example",
    "write_environment",
]

CONDA_ENV_FILE_NAME: str = _CONDA_ENV_FILE_NAME
PYTHON_ENV_FILE_NAME: str = _PYTHON_ENV_FILE_NAME
DEFAULT_AWAIT_REGISTRATION_S: int = int(DEFAULT_AWAIT_MAX_SLEEP_SECONDS)


def conda_env(pip_requirements: Sequence[str]) -> dict[str, Any]:
    """A conda environment with Python, pip and ``pip_requirements``."""
    return dict(_mlflow_conda_env(additional_pip_deps=list(pip_requirements)))


def pinned_requirement(package: str, module: str | None = None) -> str:
    """``package==<installed version>``, as MLflow's flavours pin their requirements."""
    return str(_get_pinned_requirement(package, module=module))


def prepare_target_dir(path: str) -> None:
    """Create ``path``; refuse a folder that exists and is not empty."""
    _validate_and_prepare_target_save_path(path)


def copy_code_paths(code_paths: Sequence[str] | None, path: str) -> str | None:
    """Copy user ``code_paths`` into ``<path>/code``; return ``"code"`` or ``None``."""
    return _validate_and_copy_code_paths(list(code_paths) if code_paths else None, path)


def add_code_to_sys_path(model_path: str, flavor_conf: dict[str, Any]) -> None:
    """Prepend the model's ``code`` folder (if any) to ``sys.path``."""
    _add_code_from_conf_to_system_path(model_path, flavor_conf)


def flavor_configuration(model_path: str, flavor_name: str) -> dict[str, Any]:
    """The ``flavor_name`` section of ``<model_path>/MLmodel``."""
    return dict(_get_flavor_configuration(model_path, flavor_name))


def download_model(model_uri: str, dst_path: str | None = None) -> str:
    """Download (or resolve, for local paths) a model URI to a local folder."""
    return str(_download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path))


def save_input_example(mlflow_model: Model, input_example: Any, path: str) -> None:
    """Store ``input_example`` in the model folder and reference it from ``MLmodel``."""
    _save_example(mlflow_model, input_example, path)


def write_environment(
    path: str,
    *,
    default_requirements: Sequence[str],
    conda_env: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
) -> None:
    """Write ``conda.yaml``, ``requirements.txt``, ``constraints.txt`` and ``python_env.yaml``."""
    if conda_env is None:
        conda, pip_reqs, constraints = _process_pip_requirements(
            list(default_requirements), pip_requirements, extra_pip_requirements
        )
    else:
        conda, pip_reqs, constraints = _process_conda_env(conda_env)
    with open(os.path.join(path, _CONDA_ENV_FILE_NAME), "w") as f:
        yaml.safe_dump(conda, stream=f, default_flow_style=False)
    if constraints:
        write_to(os.path.join(path, _CONSTRAINTS_FILE_NAME), "\n".join(constraints))
    write_to(os.path.join(path, _REQUIREMENTS_FILE_NAME), "\n".join(pip_reqs))
    _PythonEnv.current().to_yaml(os.path.join(path, _PYTHON_ENV_FILE_NAME))
