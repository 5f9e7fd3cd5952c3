"""Speed bench: the comparison methods agree with ours, and a tiny run reports every row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odin_monitor import odin_scores
from odin_monitor.bench import speed
from odin_monitor.bench.peers import pytorch_ood_odin, pytorch_ood_version
from odin_monitor.bench.per_image import per_image_odin
from odin_monitor.errors import InputValidationError
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


def test_channels_last_forward_equals_plain_forward(smooth_net, images):
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

    cpu = torch.device("cpu")
    plain = speed._forward(smooth_net.eval(), CIFAR_RESNET_NORMALIZATION, 5, cpu, False)(images)
    cl = speed._forward_cl(smooth_net, CIFAR_RESNET_NORMALIZATION, 5, cpu, False)(images)
    torch.testing.assert_close(torch.cat(cl), torch.cat(plain), rtol=0, atol=1e-5)


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


def test_naive_calibration_loop_chooses_the_same_pair_as_the_grid(smooth_net):
    g = torch.Generator().manual_seed(3)
    x_id = torch.rand(24, 3, 6, 6, generator=g) * 0.5 + 0.25
    x_ood = torch.rand(24, 3, 6, 6, generator=g)
    timing = speed.time_calibration(
        smooth_net,
        x_id,
        x_ood,
        depth=0,
        temperatures=(1, 10, 1000),
        epsilons=(0.0, 0.002, 0.004),
        normalization=NORM,
        batch_size=8,
    )
    assert timing.n_pairs == 9
    assert timing.same_choice
    assert timing.max_abs_score_diff <= 1e-12
    assert timing.ours_seconds > 0 and timing.naive_seconds > 0


def test_tiny_synthetic_run_reports_every_method_and_target():
    result = speed.run_speed(
        synthetic=True,
        batch_sizes=(8,),
        n_per_image=2,
        repeats=1,
        calib_n=4,
        calib_temperatures=(1, 1000),
        calib_epsilons=(0.0, 0.0014),
        memory=False,
        include_peer=False,
    )
    methods = [r.method for r in result.rows]
    assert methods == [speed.FORWARD, speed.FORWARD_CL, speed.OURS, speed.PER_IMAGE]
    fwd = result.rows[0]
    assert fwd.ratio_to_forward == pytest.approx(1.0)
    ours = result.rows[2]
    assert ours.images_per_s == pytest.approx(ours.n_images / ours.seconds)
    assert result.rows[-1].batch_size == 1 and result.rows[-1].n_images == 2
    text = speed.format_markdown(result)
    for needle in [
        "| forward (inference_mode) | fp32 | 8 |",
        "| odin (ours) |",
        "| forward (channels_last input) |",
        "#### Targets",
        "#### Calibration",
        "same choice: **True**",
        "per-image loop",
    ]:
        assert needle in text
    names = [t.name for t in result.targets]
    assert any("calibration" in n for n in names) and any("/ forward" in n for n in names)


def test_bad_precision_is_a_clear_error():
    with pytest.raises(InputValidationError, match="precisions"):
        speed.run_speed(synthetic=True, precisions=("fp8",))


def test_cpu_peak_memory_subprocess_reports_a_positive_rise():
    spec = {
        "method": speed.FORWARD,
        "depth": 20,
        "batch_size": 32,
        "amp": False,
        "n_images": 32,
        "data_dir": None,
        "seed": 0,
        "threads": 1,
    }
    peak = speed._cpu_peak_mb_subprocess(spec)
    assert peak is not None and peak > 0
