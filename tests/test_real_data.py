"""Real data from ../shared/data: the pretrained ResNet-20 and the paper's claim.

Skipped with a clear reason where the shared data is absent (a fresh clone).
"""

from __future__ import annotations

import numpy as np
import pytest

from odin_monitor import OdinDetector, ood_metrics
from odin_monitor.data import load_images
from odin_monitor.modelref import model_from_reference
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION


@pytest.fixture(scope="module")
def resnet20(shared_data):
    return model_from_reference("odin_monitor.models:resnet20", shared_data / "cifar10_resnet20.pt")


def test_resnet20_reaches_documented_accuracy(shared_data, resnet20):
    # data/README.md: 20/20 on the lossless PNGs and 91.5% on the 1,000 lossless test images.
    det = OdinDetector(
        resnet20, temperature=1.0, epsilon=0.0, normalization=CIFAR_RESNET_NORMALIZATION
    )
    for name, expected in [
        ("cifar10_test_first20_png.npz", 1.0),
        ("cifar10_test_lossless.npz", 0.915),
    ]:
        x = load_images(shared_data / name)
        labels = np.load(shared_data / name)["labels"]
        det.fit(x)
        accuracy = float(np.mean(det.reference_.predicted_class == labels))
        assert accuracy == pytest.approx(expected, abs=0.0015), name


def test_odin_beats_msp_on_tiny_imagenet_crop(shared_data, resnet20):
    # The issue asks for >= 2,000 images each: the lossless set has 1,000, so the ID side
    # uses the JPEG-degraded test set (a pipeline check, not a paper figure).
    rng = np.random.default_rng(0)
    x_id = load_images(shared_data / "cifar10_test.npz")
    x_id = x_id[np.sort(rng.choice(len(x_id), 2000, replace=False))]
    x_ood = load_images(shared_data / "ood_tinyimagenet_crop.npz", limit=2000)
    det = OdinDetector(
        resnet20, temperature=1000.0, epsilon=0.0014, normalization=CIFAR_RESNET_NORMALIZATION
    ).fit(x_id)
    s_in, s_out = det.reference_, det.score_batch(x_ood)
    odin = ood_metrics(s_in.odin_score, s_out.odin_score)
    msp = ood_metrics(s_in.msp, s_out.msp)
    assert odin["fpr_at_tpr"] < msp["fpr_at_tpr"] - 0.05
    assert odin["auroc"] > msp["auroc"]
