"""The shared score columns and the spread transform."""

from __future__ import annotations

import numpy as np
import torch

from mlflow_plugin.pyfunc import model_signature
from odin_monitor.columns import SCORE_COLUMNS, SCORE_DTYPES, spread_transform
from odin_monitor.detector import BatchScores
from odin_monitor.scoring import max_softmax, spread_score


def test_spread_transform_of_s_equals_the_logit_form():
    """T·log(K·S) from S (this module) and from the logits (scoring) agree."""
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)).double() * 3
    for t in (1.0, 10.0, 1000.0):
        s = max_softmax(logits, t).numpy()
        np.testing.assert_allclose(
            spread_transform(s, t, 7), spread_score(logits, t).numpy(), rtol=1e-9, atol=1e-7
        )


def test_spread_transform_is_monotone_and_zero_at_uniform():
    s = np.array([1 / 4, 0.3, 0.5, 0.99])
    out = spread_transform(s, 1000.0, 4)
    assert out[0] == 0.0 and np.all(np.diff(out) > 0)


def test_every_layer_uses_the_same_columns():
    n = 3
    batch = BatchScores(
        odin_score=np.full(n, 0.5),
        spread_score=np.zeros(n),
        msp=np.full(n, 0.5),
        predicted_class=np.zeros(n, dtype=np.int64),
        is_ood=np.zeros(n, dtype=bool),
    )
    frame = batch.to_frame()
    assert tuple(frame.columns) == SCORE_COLUMNS
    assert {c: str(frame[c].dtype) for c in frame} == SCORE_DTYPES
    sig = model_signature((3, 4, 4), threshold=0.1, batch_size=8)
    assert tuple(sig.outputs.input_names()) == SCORE_COLUMNS
