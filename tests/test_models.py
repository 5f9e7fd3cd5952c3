"""Shipped model factories carry the preprocessing they were trained with."""

from __future__ import annotations

import pytest
import torch

from odin_monitor.modelref import model_from_reference, reference_config
from odin_monitor.models import factory_config, resnet20
from odin_monitor.normalization import IMAGENET_NORMALIZATION

FACTORIES = [
    "odin_monitor.models:resnet20",
    "odin_monitor.models:resnet32",
    "odin_monitor.models:resnet44",
    "odin_monitor.models:resnet56",
    "odin_monitor.models:small_cnn_digits",
]


@pytest.mark.parametrize("reference", FACTORIES)
def test_config_describes_what_the_model_takes_and_returns(reference):
    config = reference_config(reference)
    assert config is not None
    model = model_from_reference(reference)
    logits = model(torch.rand(2, *config.input_shape))
    assert logits.shape == (2, len(config.class_names))
    if config.normalization is not None:
        assert config.normalization.channels == config.input_shape[0]


def test_cifar_resnets_use_imagenet_statistics_not_cifar_ones():
    """The checkpoints of ../shared/data were trained on ImageNet-normalised CIFAR-10."""
    assert factory_config(resnet20).normalization == IMAGENET_NORMALIZATION


def test_a_plain_callable_carries_no_config():
    assert reference_config("odin_monitor.models:cifar_resnet") is None
