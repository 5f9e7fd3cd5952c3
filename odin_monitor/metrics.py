"""OOD detection metrics, in the ODIN paper's conventions.

In-distribution is the **positive** class and scores are "higher = more
in-distribution". The threshold at a TPR target is the largest score ``δ`` that
keeps at least ``tpr_target`` of the in-distribution images (``score >= δ``); at
that ``δ``:

* ``fpr_at_tpr``: share of OOD images with ``score >= δ`` (the paper's "FPR at 95% TPR");
* ``detection_error``: ``0.5 (1 - TPR) + 0.5 FPR`` at ``δ`` (the paper's column);
* ``detection_error_min``: the minimum of the same over all thresholds;
* ``auroc``; ``aupr_in`` (in-distribution positive); ``aupr_out`` (OOD positive,
  scores negated);
* ``fpr_at_tpr_ood_positive``: the OpenOOD / pytorch-ood convention (OOD is the
  positive class: the share of in-distribution images flagged when 95% of OOD
  images are caught), under its own name.

Curves and areas come from scikit-learn; ties are resolved exactly (a score equal
to the threshold counts as accepted), never by interpolation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from odin_monitor.errors import InputValidationError
from odin_monitor.validation import check_tpr_target

__all__ = ["METRIC_NAMES", "as_score_array", "ood_metrics", "threshold_at_tpr"]

METRIC_NAMES = (
    "fpr_at_tpr",
    "tpr_at_threshold",
    "threshold",
    "detection_error",
    "detection_error_min",
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr_at_tpr_ood_positive",
)


def as_score_array(scores: Any, name: str) -> np.ndarray:
    """Validate a 1-D, non-empty, finite array of scores and return it as float64.

    Example:
        >>> as_score_array([0.2, 0.1], "scores").dtype
        dtype('float64')
    """
    try:
        arr = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputValidationError(
            f"Expected `{name}` to be a 1-D array of numbers, but got {type(scores).__name__}."
        ) from err
    if arr.ndim != 1:
        raise InputValidationError(
            f"Expected `{name}` to be 1-D (one score per image), but got shape {arr.shape}."
        )
    if arr.size == 0:
        raise InputValidationError(
            f"Expected `{name}` to hold at least one score, but it is empty."
        )
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputValidationError(f"Expected finite `{name}`, but entry {bad} is {arr[bad]}.")
    return arr


def threshold_at_tpr(scores_in: Any, tpr_target: float = 0.95) -> float:
    """The largest ``δ`` with ``mean(scores_in >= δ) >= tpr_target``.

    This is the ``(1 - tpr_target)`` quantile of the in-distribution scores in its
    inverted-CDF form: the ``ceil(tpr_target · n)``-th largest score.

    Args:
        scores_in: In-distribution scores, shape ``(N,)``.
        tpr_target: Share of in-distribution images to keep, in (0, 1).

    Returns:
        The threshold ``δ``.

    Example:
        >>> threshold_at_tpr([0.1 * i for i in range(1, 21)], 0.95)
        0.2
    """
    s = np.sort(as_score_array(scores_in, "scores_in"))[::-1]
    k = _kept_count(s.size, check_tpr_target(tpr_target))
    return float(s[k - 1])


def _kept_count(n: int, tpr_target: float) -> int:
    # The tolerance absorbs binary rounding of products such as 0.95 * 1000.
    return max(1, min(n, math.ceil(tpr_target * n - 1e-9)))


def _fpr_at_tpr(pos: np.ndarray, neg: np.ndarray, tpr_target: float) -> tuple[float, float, float]:
    """FPR and TPR where ROC's TPR first reaches the target; pos are positives."""
    y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    fpr, tpr, thresholds = roc_curve(y, np.concatenate([pos, neg]), drop_intermediate=False)
    # tpr is non-decreasing; the first index reaching the target is the largest threshold.
    idx = int(np.searchsorted(tpr, tpr_target - 1e-12, side="left"))
    return float(fpr[idx]), float(tpr[idx]), float(thresholds[idx])


def ood_metrics(scores_in: Any, scores_out: Any, tpr_target: float = 0.95) -> dict[str, float]:
    """Metrics of an OOD detector from its scores (higher = more in-distribution).

    Args:
        scores_in: Scores of in-distribution images, shape ``(N_in,)``.
        scores_out: Scores of out-of-distribution images, shape ``(N_out,)``.
        tpr_target: The TPR at which FPR and detection error are read (0.95 in the paper).

    Returns:
        A dict with the keys of :data:`METRIC_NAMES`, all rates in [0, 1]:
        ``fpr_at_tpr``, ``tpr_at_threshold`` (the TPR actually reached, >= target),
        ``threshold`` (δ), ``detection_error``, ``detection_error_min``, ``auroc``,
        ``aupr_in``, ``aupr_out``, ``fpr_at_tpr_ood_positive``.

    Example:
        >>> m = ood_metrics([0.9, 0.8, 0.7, 0.6], [0.65, 0.1], tpr_target=0.75)
        >>> m["threshold"], m["fpr_at_tpr"], m["auroc"]
        (0.7, 0.0, 0.875)
    """
    s_in = as_score_array(scores_in, "scores_in")
    s_out = as_score_array(scores_out, "scores_out")
    tpr_target = check_tpr_target(tpr_target)
    labels = np.concatenate([np.ones(s_in.size), np.zeros(s_out.size)])
    scores = np.concatenate([s_in, s_out])

    fpr, tpr, thr = _fpr_at_tpr(s_in, s_out, tpr_target)
    roc_fpr, roc_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    det_err_all = 0.5 * (1.0 - roc_tpr) + 0.5 * roc_fpr
    fpr_ood_pos, _, _ = _fpr_at_tpr(-s_out, -s_in, tpr_target)
    return {
        "fpr_at_tpr": fpr,
        "tpr_at_threshold": tpr,
        "threshold": thr,
        "detection_error": 0.5 * (1.0 - tpr) + 0.5 * fpr,
        "detection_error_min": float(det_err_all.min()),
        "auroc": float(roc_auc_score(labels, scores)),
        "aupr_in": float(average_precision_score(labels, scores)),
        "aupr_out": float(average_precision_score(1 - labels, -scores)),
        "fpr_at_tpr_ood_positive": fpr_ood_pos,
    }
