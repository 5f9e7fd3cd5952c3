"""ODIN scoring against an independent per-image implementation of the paper's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from odin_monitor import InputValidationError, Normalization
from odin_monitor.scoring import (
    grid_scores,
    input_gradient_sign,
    max_softmax,
    model_logits,
    odin_scores,
    perturb,
    scoring_mode,
    spread_score,
)
from tests.helpers import make_smooth_net

NORM = Normalization(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def reference_odin(model, x, temperature, epsilon, norm):
    """The paper, one image at a time, written from the formulas with autograd."""
    model.eval()
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        if norm is None:
            zi = xi
        else:
            mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
            std = torch.tensor(norm.std).view(1, -1, 1, 1)
            zi = (xi - mean) / std
        logits = model(zi)
        y_hat = int(logits.argmax())
        log_s = torch.log_softmax(logits / temperature, dim=1)[0, y_hat]
        (grad,) = torch.autograd.grad(-log_s, xi)
        x_tilde = (xi - epsilon * torch.sign(grad)).detach()
        z_tilde = x_tilde if norm is None else (x_tilde - mean) / std
        with torch.no_grad():
            probs = torch.softmax(model(z_tilde).double() / temperature, dim=1)
            msp = torch.softmax(logits.detach().double(), dim=1).max()
        out.append((float(probs.max()), float(msp), y_hat))
    return np.array(out)


@pytest.mark.parametrize("norm", [None, NORM], ids=["raw", "normalised"])
@pytest.mark.parametrize(("temperature", "epsilon"), [(1.0, 0.0), (1000.0, 0.0014), (10.0, 0.004)])
def test_scores_equal_per_image_reference(images, norm, temperature, epsilon):
    net = make_smooth_net()
    ref = reference_odin(net, images, temperature, epsilon, norm)
    got = odin_scores(net, images, temperature=temperature, epsilon=epsilon, normalization=norm)
    np.testing.assert_allclose(got.odin_score.numpy(), ref[:, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.msp.numpy(), ref[:, 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.predicted_class.numpy(), ref[:, 2].astype(int))


def test_msp_baseline_is_t1_eps0(smooth_net, images):
    out = odin_scores(smooth_net, images, temperature=1.0, epsilon=0.0, normalization=None)
    torch.testing.assert_close(out.odin_score, out.msp, rtol=0, atol=0)


def test_gradient_sign_agrees_with_finite_difference(smooth_net, images):
    """sign(∇ₓ CE) must point where -log S increases, checked by central differences."""
    smooth_net.eval().double()
    x = images[:3].double().clone().requires_grad_(True)
    temperature = 10.0
    logits = smooth_net(x)
    sign = input_gradient_sign(logits, x, temperature)
    y_hat = logits.detach().argmax(1)

    def neg_log_s(xx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return -torch.log_softmax(smooth_net(xx) / temperature, 1)[torch.arange(3), y_hat]

    h = 1e-6
    checked = 0
    rng = np.random.default_rng(0)
    for flat in rng.choice(x[0].numel(), size=25, replace=False):
        e = torch.zeros_like(x).view(3, -1)
        e[:, flat] = h
        e = e.view_as(x)
        fd = (neg_log_s(x.detach() + e) - neg_log_s(x.detach() - e)) / (2 * h)
        for n in range(3):
            if abs(float(fd[n])) > 1e-7:
                assert float(sign.view(3, -1)[n, flat]) == math.copysign(1.0, float(fd[n]))
                checked += 1
    assert checked > 50


def test_step_raises_the_score(smooth_net, images):
    base = odin_scores(smooth_net, images, temperature=1000.0, epsilon=0.0, normalization=None)
    step = odin_scores(smooth_net, images, temperature=1000.0, epsilon=0.002, normalization=None)
    assert bool((step.odin_score > base.odin_score).all())


class FirstChannelOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(36, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, 0].flatten(1))


def test_zero_gradient_has_sign_zero_and_pixel_stays():
    torch.manual_seed(0)
    net = FirstChannelOnly()
    x = torch.rand(4, 3, 6, 6).requires_grad_(True)
    sign = input_gradient_sign(net(x), x, 1000.0)
    assert bool((sign[:, 1:] == 0).all()), "channels the model ignores have gradient exactly 0"
    assert bool((sign[:, 0] != 0).all())
    moved = perturb(x.detach(), sign, 0.01)
    torch.testing.assert_close(moved[:, 1:], x.detach()[:, 1:], rtol=0, atol=0)


def test_epsilon_is_in_pixel_units_under_normalisation():
    """With (x - μ)/σ, the network sees a step of ε/σ per channel."""
    torch.manual_seed(0)
    net = make_smooth_net().eval()
    seen: list[torch.Tensor] = []
    hook = net.conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    x = torch.rand(2, 3, 6, 6)
    eps = 0.003
    odin_scores(net, x, temperature=1000.0, epsilon=eps, normalization=NORM)
    hook.remove()
    z0, z1 = seen  # the unperturbed and the perturbed forward
    step = (z1 - z0).abs()
    for c, s in enumerate(NORM.std):
        np.testing.assert_allclose(step[:, c].numpy(), eps / s, rtol=1e-4)


def test_normalised_model_equals_model_with_normalisation_folded_in(images):
    net = make_smooth_net()
    mean = torch.tensor(NORM.mean).view(1, -1, 1, 1)
    std = torch.tensor(NORM.std).view(1, -1, 1, 1)

    class Folded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner((x - mean) / std)

    a = odin_scores(net, images, temperature=1000.0, epsilon=0.0014, normalization=NORM)
    b = odin_scores(Folded(), images, temperature=1000.0, epsilon=0.0014, normalization=None)
    np.testing.assert_allclose(a.odin_score.numpy(), b.odin_score.numpy(), atol=1e-9)


def test_batch_equals_one_by_one_with_batchnorm_and_dropout(images):
    net = make_smooth_net().train()  # a caller may hand a model in train mode
    whole = odin_scores(net, images, temperature=1000.0, epsilon=0.0014, normalization=NORM)
    single = [
        odin_scores(net, images[i : i + 1], temperature=1000.0, epsilon=0.0014, normalization=NORM)
        for i in range(images.shape[0])
    ]
    np.testing.assert_allclose(
        whole.odin_score.numpy(), np.concatenate([s.odin_score.numpy() for s in single]), atol=1e-6
    )
    chunked = odin_scores(
        net, images, temperature=1000.0, epsilon=0.0014, normalization=NORM, batch_size=5
    )
    np.testing.assert_allclose(whole.odin_score.numpy(), chunked.odin_score.numpy(), atol=1e-6)


def test_model_state_is_untouched(images):
    net = make_smooth_net().train()
    net.bn.eval()  # a mixed state must come back as it was
    net.conv.weight.requires_grad_(False)
    marker = torch.full_like(net.fc.weight, 7.0)
    net.fc.weight.grad = marker
    modes = {name: m.training for name, m in net.named_modules()}
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}

    odin_scores(net, images, temperature=1000.0, epsilon=0.0014, normalization=NORM)

    assert {name: m.training for name, m in net.named_modules()} == modes
    assert {name: p.requires_grad for name, p in net.named_parameters()} == flags
    assert net.fc.weight.grad is marker and bool((marker == 7.0).all())
    assert net.fc.bias.grad is None and net.conv.bias.grad is None
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_model_state_restored_on_error():
    net = make_smooth_net().train()
    with pytest.raises(InputValidationError), scoring_mode(net):
        raise InputValidationError("boom")
    assert net.training and net.bn.training and net.fc.weight.requires_grad


@pytest.mark.parametrize("ctx", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference"])
def test_scoring_works_under_no_grad_and_inference_mode(smooth_net, images, ctx):
    expected = odin_scores(
        smooth_net, images, temperature=1000.0, epsilon=0.0014, normalization=None
    )
    with ctx():
        x = images.clone()  # under inference_mode this is an inference tensor
        got = odin_scores(smooth_net, x, temperature=1000.0, epsilon=0.0014, normalization=None)
    torch.testing.assert_close(got.odin_score, expected.odin_score, rtol=0, atol=0)


def test_grid_equals_one_call_per_pair(smooth_net, images):
    temps, eps = [1.0, 20.0, 1000.0], [0.0, 0.001, 0.004]
    grid = grid_scores(
        smooth_net, images, temperatures=temps, epsilons=eps, normalization=NORM, batch_size=5
    )
    for i, t in enumerate(temps):
        for j, e in enumerate(eps):
            one = odin_scores(
                smooth_net, images, temperature=t, epsilon=e, normalization=NORM, batch_size=5
            )
            # Same chunks, same arithmetic: equal to the last bit.
            np.testing.assert_array_equal(grid[i, j].numpy(), one.odin_score.numpy())


def test_mixed_precision_runs_and_ranks_like_fp32(images):
    net = make_smooth_net()
    kw = {"temperature": 1000.0, "epsilon": 0.0014, "normalization": NORM}
    fp32 = odin_scores(net, images, **kw)
    amp = odin_scores(net, images, mixed_precision=True, **kw)
    assert amp.odin_score.dtype == torch.float64
    corr = np.corrcoef(fp32.spread_score.numpy(), amp.spread_score.numpy())[0, 1]
    assert corr > 0.95


def test_spread_score_formula_and_order():
    torch.manual_seed(0)
    logits = torch.randn(200, 10) * 5
    t = 1000.0
    s = max_softmax(logits, t)
    spread = spread_score(logits, t)
    np.testing.assert_allclose(spread.numpy(), t * np.log(10 * s.numpy()), rtol=1e-9, atol=1e-9)
    assert (np.argsort(s.numpy(), kind="stable") == np.argsort(spread.numpy(), kind="stable")).all()
    # The paper's scores crowd near 1/K; the spread form does not.
    assert float(s.max() - s.min()) < 0.01
    assert float(spread.max() - spread.min()) > 5.0


def test_max_softmax_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]])
    s = max_softmax(logits, 1.0)
    assert torch.isfinite(s).all()
    np.testing.assert_allclose(s.numpy(), [1.0, 1 / 3])


def test_bad_model_output_and_hyperparameters(images):
    with pytest.raises(InputValidationError, match=r"logits \(N, K\)"):
        odin_scores(nn.Conv2d(3, 2, 1), images, temperature=1.0, epsilon=0.0, normalization=None)
    one_class = nn.Sequential(nn.Flatten(), nn.Linear(108, 1))
    with pytest.raises(InputValidationError, match="at least 2 classes"):
        odin_scores(one_class, images, temperature=1.0, epsilon=0.0, normalization=None)
    net = make_smooth_net()
    with pytest.raises(InputValidationError, match="temperature"):
        odin_scores(net, images, temperature=0.0, epsilon=0.0, normalization=None)
    with pytest.raises(InputValidationError, match="epsilon"):
        odin_scores(net, images, temperature=1.0, epsilon=-0.1, normalization=None)
    with pytest.raises(InputValidationError, match="channels"):
        odin_scores(
            net,
            images,
            temperature=1.0,
            epsilon=0.0,
            normalization=Normalization(mean=(0.5,), std=(0.5,)),
        )


def test_model_logits_rejects_non_tensor_output(images):
    class Dicty(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": x.flatten(1)}

    with pytest.raises(InputValidationError, match="returned dict"):
        model_logits(Dicty(), images, None)


def test_concurrent_scoring_leaves_the_model_as_it_was(images):
    from concurrent.futures import ThreadPoolExecutor

    net = make_smooth_net().train()
    net.conv.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    expected = odin_scores(net, images, temperature=1000.0, epsilon=0.0014, normalization=NORM)

    def work(_: int) -> torch.Tensor:
        kw = {"temperature": 1000.0, "epsilon": 0.0014, "normalization": NORM}
        return odin_scores(net, images, **kw).odin_score

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(16)))
    for r in results:
        torch.testing.assert_close(r, expected.odin_score, rtol=0, atol=0)
    assert net.training and {n: p.requires_grad for n, p in net.named_parameters()} == flags


class ViewsActivations(nn.Module):
    """`.view` fails on a channels_last activation: the CPU fast path must fall back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def test_models_that_need_the_default_layout_still_score(images):
    torch.manual_seed(0)
    net = ViewsActivations().eval()
    with pytest.raises(RuntimeError):
        net(images.contiguous(memory_format=torch.channels_last))
    ref = reference_odin(net, images, 1000.0, 0.0014, NORM)
    for _ in range(2):  # the fallback is remembered for the next call
        got = odin_scores(net, images, temperature=1000.0, epsilon=0.0014, normalization=NORM)
        np.testing.assert_allclose(got.odin_score.numpy(), ref[:, 0], atol=1e-6)
