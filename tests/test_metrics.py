"""Metrics against scikit-learn and plain loops written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from odin_monitor import InputValidationError, ood_metrics, threshold_at_tpr


def plain_threshold(s_in, tpr):
    """Largest δ among the scores with mean(s_in >= δ) >= tpr, by brute force."""
    candidates = sorted(set(s_in), reverse=True)
    return next(d for d in candidates if np.mean(np.asarray(s_in) >= d) >= tpr - 1e-12)


def plain_metrics(s_in, s_out, tpr):
    s_in, s_out = np.asarray(s_in, float), np.asarray(s_out, float)
    delta = plain_threshold(s_in, tpr)
    tpr_at = float(np.mean(s_in >= delta))
    fpr = float(np.mean(s_out >= delta))
    errors = []
    for t in [*np.unique(np.r_[s_in, s_out]), math.inf]:
        errors.append(0.5 * (1 - np.mean(s_in >= t)) + 0.5 * np.mean(s_out >= t))
    # OOD positive: the largest cut c on -score keeping tpr of OOD; FPR = ID share with -s >= c.
    cut = plain_threshold(-s_out, tpr)
    return {
        "threshold": delta,
        "tpr_at_threshold": tpr_at,
        "fpr_at_tpr": fpr,
        "detection_error": 0.5 * (1 - tpr_at) + 0.5 * fpr,
        "detection_error_min": float(min(errors)),
        "fpr_at_tpr_ood_positive": float(np.mean(-s_in >= cut)),
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tpr", [0.95, 0.9, 0.5])
def test_against_plain_loops_and_sklearn(seed, tpr):
    rng = np.random.default_rng(seed)
    # Rounded scores force many ties inside and across the two sets.
    s_in = np.round(rng.normal(1.0, 1.0, 97 + seed), 1)
    s_out = np.round(rng.normal(0.0, 1.0, 61 + 3 * seed), 1)
    got = ood_metrics(s_in, s_out, tpr_target=tpr)
    want = plain_metrics(s_in, s_out, tpr)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    y = np.r_[np.ones(s_in.size), np.zeros(s_out.size)]
    s = np.r_[s_in, s_out]
    assert got["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert got["aupr_in"] == pytest.approx(average_precision_score(y, s))
    assert got["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s))
    # The threshold is the one the detector uses: kept share reaches the target exactly.
    assert got["threshold"] == threshold_at_tpr(s_in, tpr)
    assert np.mean(s_in >= got["threshold"]) >= tpr


def test_hand_computed_case():
    m = ood_metrics([0.9, 0.8, 0.7, 0.6], [0.65, 0.1], tpr_target=0.75)
    assert m["threshold"] == 0.7
    assert m["fpr_at_tpr"] == 0.0
    assert m["tpr_at_threshold"] == 0.75
    assert m["detection_error"] == pytest.approx(0.125)
    assert m["auroc"] == pytest.approx(7 / 8)


def test_ties_at_threshold_count_as_accepted():
    # δ = 0.5; the OOD score equal to δ is accepted (a false positive).
    m = ood_metrics([1.0, 0.5], [0.5, 0.0], tpr_target=1.0 - 1e-9)
    assert m["threshold"] == 0.5
    assert m["fpr_at_tpr"] == 0.5


def test_all_equal_scores():
    m = ood_metrics([0.3] * 10, [0.3] * 7)
    assert m["fpr_at_tpr"] == 1.0
    assert m["auroc"] == 0.5
    assert m["detection_error_min"] == 0.5


def test_perfect_separation_and_tiny_sets():
    m = ood_metrics([1.0], [0.0])
    assert (m["fpr_at_tpr"], m["auroc"], m["aupr_in"], m["aupr_out"]) == (0.0, 1.0, 1.0, 1.0)
    assert m["detection_error"] == 0.0


def test_threshold_is_inverted_cdf_quantile():
    s = np.arange(1, 1001) / 1000.0  # 0.95 * 1000 must not round up to 951 kept images
    assert threshold_at_tpr(s, 0.95) == pytest.approx(0.051)
    assert threshold_at_tpr([0.2, 0.1], 0.95) == 0.1


@pytest.mark.parametrize(
    ("s_in", "s_out", "tpr", "match"),
    [
        ([], [0.1], 0.95, "at least one score"),
        ([0.1], [], 0.95, "at least one score"),
        ([[0.1]], [0.2], 0.95, "1-D"),
        ([np.nan], [0.2], 0.95, "finite"),
        ([0.1], [0.2], 1.0, r"in \(0, 1\)"),
        ([0.1], [0.2], "high", "number"),
        (["a"], [0.2], 0.95, "numbers"),
    ],
)
def test_bad_input(s_in, s_out, tpr, match):
    with pytest.raises(InputValidationError, match=match):
        ood_metrics(s_in, s_out, tpr_target=tpr)
