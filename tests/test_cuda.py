"""GPU checks: skipped without CUDA (CI has none); run on a lent GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odin_monitor import Normalization, OdinDetector, calibrate, odin_scores
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION, resnet20
from tests.helpers import make_smooth_net

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

NORM = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_cuda_scores_match_cpu():
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    cpu_model = resnet20().eval()
    gpu_model = resnet20().eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.cuda()
    kw = {"temperature": 1000.0, "epsilon": 0.0014, "normalization": CIFAR_RESNET_NORMALIZATION}
    a = odin_scores(cpu_model, x, **kw)
    b = odin_scores(gpu_model, x, **kw)  # input on CPU, model on GPU: moved chunk by chunk
    assert b.odin_score.device.type == "cpu"
    np.testing.assert_allclose(a.msp.numpy(), b.msp.numpy(), atol=1e-5)
    np.testing.assert_array_equal(a.predicted_class.numpy(), b.predicted_class.numpy())
    # Random-weight ResNets have tiny gradients; a few signs may flip between kernels.
    np.testing.assert_allclose(a.spread_score.numpy(), b.spread_score.numpy(), atol=5e-3)


def test_cuda_mixed_precision_keeps_ranking():
    torch.manual_seed(0)
    net = make_smooth_net().cuda()
    x = torch.rand(256, 3, 16, 16, device="cuda")
    kw = {"temperature": 1000.0, "epsilon": 0.0014, "normalization": NORM}
    fp32 = odin_scores(net, x, **kw)
    amp = odin_scores(net, x, mixed_precision=True, **kw)
    assert amp.odin_score.dtype == torch.float64
    assert np.corrcoef(fp32.spread_score.numpy(), amp.spread_score.numpy())[0, 1] > 0.95


def test_cuda_detector_and_calibration_state_untouched():
    net = make_smooth_net().cuda().train()
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    x = torch.rand(80, 3, 8, 8)
    res = calibrate(net, x, normalization=NORM, temperatures=[1, 1000], epsilons=[0.0, 0.002])
    assert res.detector.predict(x).dtype == np.bool_
    assert net.training and {n: p.requires_grad for n, p in net.named_parameters()} == flags
    det = OdinDetector(net, temperature=1000.0, epsilon=0.002, normalization=NORM, device="cuda")
    np.testing.assert_allclose(
        det.fit(x).reference_.odin_score, res.detector.fit(x).reference_.odin_score, atol=1e-9
    )
