"""The MLflow flavour's exceptions (the core's are in :mod:`odin_monitor.errors`).

Each subclasses :class:`odin_monitor.OdinError` and the built-in it refines.

Example:
    >>> issubclass(ModelExportError, ValueError)
    True
"""

from __future__ import annotations

from odin_monitor.errors import OdinError

__all__ = ["ModelExportError", "ServerError"]


class ModelExportError(OdinError, ValueError):
    """``torch.export`` cannot capture the classifier faithfully."""


class ServerError(OdinError, RuntimeError):
    """The server exited or did not answer ``/ping`` in time."""
