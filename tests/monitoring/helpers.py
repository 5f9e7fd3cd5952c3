"""Shared test helpers (importable from subprocesses as tests.monitoring.helpers)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from odin_monitor.monitoring.alerts import Alert
from odin_monitor.monitoring.schema import ModelRef

T, K = 1000.0, 10


def make_model() -> ModelRef:
    return ModelRef(
        name="resnet-cifar",
        version="3",
        calibration_sha256="c0ffee" * 10 + "beef",
        threshold=0.10045,
        threshold_spread=float(T * np.log(K * 0.10045)),
        tpr_target=0.95,
        temperature=T,
        n_classes=K,
    )


def make_scores(n: int, ood_rate: float, model: ModelRef, seed: int = 0) -> pd.DataFrame:
    """Scores whose share below the threshold is exactly round(n * ood_rate)."""
    rng = np.random.default_rng(seed)
    n_ood = round(n * ood_rate)
    below = model.threshold - rng.uniform(1e-6, 3e-4, n_ood)
    above = model.threshold + rng.uniform(1e-6, 1.5e-3, n - n_ood)
    odin = rng.permutation(np.concatenate([below, above]))
    return pd.DataFrame(
        {
            "odin_score": odin,
            "spread_score": T * np.log(K * odin),
            "msp": rng.uniform(0.3, 1.0, n),
            "predicted_class": rng.integers(0, 4, n).astype("int64"),
            "is_ood": odin < model.threshold,
        }
    )


def fake_scorer_for(model: ModelRef):
    """Deterministic scorer: images darker than 0.2 on average are OOD."""

    def scorer(images: np.ndarray) -> pd.DataFrame:
        means = images.reshape(len(images), -1).mean(axis=1).astype(float)
        odin = model.threshold + (means - 0.2) * 1e-3
        return pd.DataFrame(
            {
                "odin_score": odin,
                "spread_score": T * np.log(K * odin),
                "msp": 0.5 + 0.5 * means,
                "predicted_class": (means * 10).astype("int64") % 4,
                "is_ood": odin < model.threshold,
            }
        )

    scorer.calls = 0  # type: ignore[attr-defined]

    def counting(images: np.ndarray) -> pd.DataFrame:
        counting.calls += 1  # type: ignore[attr-defined]
        return scorer(images)

    counting.calls = 0  # type: ignore[attr-defined]
    return counting


def make_alert(i: int = 0) -> Alert:
    return Alert(
        alert_id=f"a{i}",
        rule="binomial_spike",
        model_name="m",
        model_version="1",
        calibration_sha256="ab" * 32,
        batch_ids=(f"b{i}",),
        observed_rate=0.2,
        expected_rate=0.05,
        n_images=100,
        n_ood=20,
        statistic=20.0,
        p_value=1e-6,
        threshold=0.01,
        report_path="/r.html",
    )
