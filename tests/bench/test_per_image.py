"""The paper's per-image loop scores like ``odin_scores`` and leaves the model as it was."""

from __future__ import annotations

import numpy as np

from odin_monitor import odin_scores
from odin_monitor.bench.per_image import per_image_odin
from odin_monitor.normalization import Normalization

NORM = Normalization(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def test_per_image_loop_scores_equal_ours_and_model_is_restored(smooth_net, images):
    smooth_net.train()
    smooth_net.fc.weight.requires_grad_(False)
    ours = odin_scores(
        smooth_net, images, temperature=10.0, epsilon=0.002, normalization=NORM
    ).odin_score.numpy()
    loop = per_image_odin(smooth_net, images, temperature=10.0, epsilon=0.002, normalization=NORM)
    np.testing.assert_allclose(loop, ours, rtol=0, atol=1e-6)
    # eps moves the score: the comparison is not vacuous
    plain = odin_scores(smooth_net, images, temperature=10.0, epsilon=0.0, normalization=NORM)
    assert np.abs(plain.odin_score.numpy() - ours).max() > 1e-5
    assert smooth_net.training
    assert not smooth_net.fc.weight.requires_grad and smooth_net.conv.weight.requires_grad
    assert all(p.grad is None for p in smooth_net.parameters())
