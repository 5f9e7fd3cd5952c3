"""The uvicorn target of ``odin-monitor serve``: MLflow's scoring app, guarded.

``uvicorn mlflow_plugin._server_app:app`` with the environment ``mlflow models serve``
sets (``_MLFLOW_SERVER_MODEL_PATH``: the model folder) plus the caps of
:mod:`mlflow_plugin.asgi`. The app is built on first access, so importing this module
(e.g. by a test collector) loads no model.
"""

from __future__ import annotations

import os
from typing import Any

from mlflow_plugin.asgi import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ERROR_CHARS,
    MAX_BODY_ENV,
    MAX_ERROR_ENV,
    guard,
)

__all__: list[str] = []


def _build() -> Any:
    from mlflow.pyfunc import scoring_server

    model_path = os.environ[scoring_server._SERVER_MODEL_PATH]
    inner = scoring_server.init(scoring_server.load_model_with_mlflow_config(model_path))
    return guard(
        inner,
        max_body_bytes=int(os.environ.get(MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES)),
        max_error_chars=int(os.environ.get(MAX_ERROR_ENV, DEFAULT_MAX_ERROR_CHARS)),
    )


def __getattr__(name: str) -> Any:
    if name == "app":
        app = _build()
        globals()["app"] = app
        return app
    raise AttributeError(name)
