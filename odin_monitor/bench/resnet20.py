"""The detector the serving and Spark benchmarks serve: pretrained CIFAR-10 ResNet-20.

ODIN T=1000, ε=0.0014, δ fitted on the first 200 lossless CIFAR-10 test images (TPR
95%). Without the data folder (or its files), a seeded random-weight ResNet-20 fitted on
uniform noise stands in, and the description says so: the numbers then time the
pipeline, not a useful detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from odin_monitor.bench.common import Log, resolve_data_dir
from odin_monitor.errors import DataLoadError
from odin_monitor.synthetic import uniform_noise

__all__ = ["EPSILON", "FIT_IMAGES", "TEMPERATURE", "find_data_dir", "fit_resnet20"]

FIT_IMAGES = 200
TEMPERATURE = 1000.0
EPSILON = 0.0014
_REF = "odin_monitor.models:resnet20"


def find_data_dir(data_dir: Path | None) -> Path | None:
    """The data folder as :func:`resolve_data_dir` finds it, or ``None`` without one.

    Raises:
        DataLoadError: ``data_dir`` was given and does not exist.
    """
    if data_dir is not None:
        return resolve_data_dir(data_dir)  # an explicit folder must exist
    try:
        return resolve_data_dir(None)
    except DataLoadError:
        return None


def fit_resnet20(data: Path | None, seed: int, log: Log) -> tuple[Any, str, bool]:
    """Fit the benchmark detector; returns ``(detector, description, pretrained)``."""
    from odin_monitor.data import load_images
    from odin_monitor.detector import OdinDetector
    from odin_monitor.modelref import model_from_reference
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

    weights = None if data is None else data / "cifar10_resnet20.pt"
    lossless = None if data is None else data / "cifar10_test_lossless.npz"
    if weights is not None and weights.is_file() and lossless is not None and lossless.is_file():
        net = model_from_reference(_REF, weights)
        fit_x = load_images(lossless, limit=FIT_IMAGES)
        desc = (
            f"CIFAR-10 ResNet-20, pretrained ({weights.name}); ODIN T={TEMPERATURE:g}, "
            f"ε={EPSILON:g}, δ fitted on the first {len(fit_x)} images of "
            "cifar10_test_lossless.npz (TPR 95%)"
        )
        pretrained = True
    else:
        torch.manual_seed(seed)
        net = model_from_reference(_REF)
        fit_x = uniform_noise(FIT_IMAGES, (3, 32, 32), seed)
        desc = (
            "CIFAR-10 ResNet-20 architecture with RANDOM weights (no data folder with "
            f"cifar10_resnet20.pt and cifar10_test_lossless.npz); ODIN T={TEMPERATURE:g}, "
            f"ε={EPSILON:g}, δ fitted on {len(fit_x)} seeded uniform-noise images"
        )
        pretrained = False
    log(f"fitting the detector on {len(fit_x)} images ({'pretrained' if pretrained else 'random'})")
    det = OdinDetector(
        net.eval(),
        temperature=TEMPERATURE,
        epsilon=EPSILON,
        normalization=CIFAR_RESNET_NORMALIZATION,
    ).fit(fit_x)
    return det, desc, pretrained
