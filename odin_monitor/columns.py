"""The score columns every layer shares, and the spread transform (no torch here).

A scored batch has one row per image and these columns, in this order, whether it
comes from the detector (:class:`~odin_monitor.detector.BatchScores`), the pyfunc
(its output signature), the score log or an ingested serving log:

* ``odin_score``: ``S(x̃; T)``, float64, higher = more in-distribution;
* ``spread_score``: ``T · log(K · S(x̃; T))``, float64, the same order, well spread;
* ``msp``: the unperturbed ``T = 1`` max softmax (the MSP baseline), float64;
* ``predicted_class``: argmax of the unperturbed logits, int64;
* ``is_ood``: ``odin_score < δ``, bool.

Example:
    >>> list(SCORE_COLUMNS)
    ['odin_score', 'spread_score', 'msp', 'predicted_class', 'is_ood']
    >>> float(spread_transform(np.array([0.5]), 1.0, 2)[0])
    0.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["MLFLOW_TYPES", "SCORE_COLUMNS", "SCORE_DTYPES", "spread_transform"]

#: Column name -> numpy/pandas dtype of a scored batch.
SCORE_DTYPES: dict[str, str] = {
    "odin_score": "float64",
    "spread_score": "float64",
    "msp": "float64",
    "predicted_class": "int64",
    "is_ood": "bool",
}

#: The columns, in order.
SCORE_COLUMNS: tuple[str, ...] = tuple(SCORE_DTYPES)

#: Column name -> MLflow ``ColSpec`` type (the pyfunc's output signature).
MLFLOW_TYPES: dict[str, str] = {
    "odin_score": "double",
    "spread_score": "double",
    "msp": "double",
    "predicted_class": "long",
    "is_ood": "boolean",
}


def spread_transform(odin_score: np.ndarray, temperature: float, n_classes: int) -> np.ndarray:
    """``T · log(K · S)`` of ODIN scores ``S``: monotone in ``S``, for drift and plots.

    :func:`odin_monitor.scoring.spread_score` computes the same quantity from the
    logits (more precisely at large ``T``); this form serves where only ``S`` is known
    (serving logs, stored score cubes).

    Args:
        odin_score: ``S(x̃; T)`` values in ``[1/K, 1]``.
        temperature: ``T > 0``.
        n_classes: ``K``.

    Returns:
        float64 array of the same shape.

    Example:
        >>> float(spread_transform(np.array([1.0]), 10.0, 1)[0])
        0.0
    """
    return float(temperature) * np.log(float(n_classes) * np.asarray(odin_score, dtype=float))
