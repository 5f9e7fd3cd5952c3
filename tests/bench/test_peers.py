"""pytorch-ood's ODIN (0.4.0, a benchmark-only extra) scores like ours."""

from __future__ import annotations

import numpy as np
import pytest

from odin_monitor import odin_scores
from odin_monitor.bench.peers import pytorch_ood_odin, pytorch_ood_version
from odin_monitor.normalization import Normalization

NORM = Normalization(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def test_pytorch_ood_scores_equal_ours(smooth_net, images):
    if pytorch_ood_version() is None:
        pytest.skip("pytorch-ood is not installed (a benchmark-only extra)")
    score = pytorch_ood_odin(
        smooth_net.eval(),
        temperature=1000.0,
        epsilon=0.002,
        normalization=NORM,
        batch_size=5,
        device="cpu",
    )
    ours = odin_scores(smooth_net, images, temperature=1000.0, epsilon=0.002, normalization=NORM)
    np.testing.assert_allclose(score(images).double().numpy(), ours.odin_score.numpy(), atol=1e-6)
