"""Exceptions raised by odin-monitor.

Every exception subclasses both :class:`OdinError` (catch everything from this
library in one place) and the built-in it refines, so generic handlers keep
working. Messages say what was expected, what came, and how to fix it.
"""

from __future__ import annotations


class OdinError(Exception):
    """Base class of every error raised on purpose by odin-monitor."""


class InputValidationError(OdinError, ValueError):
    """Images, scores or arguments are not of the expected form."""


class DataLoadError(OdinError, ValueError):
    """A file or folder of images cannot be read."""


class NotFittedError(OdinError, ValueError, AttributeError):
    """A detector was used before ``fit`` set its threshold.

    Subclasses ``AttributeError`` too, like scikit-learn's ``NotFittedError``.
    """


class CalibrationError(OdinError, ValueError):
    """A calibration grid or record is invalid."""


class ModelLoadError(OdinError, ValueError):
    """A classifier reference or weights file cannot be turned into a model."""
