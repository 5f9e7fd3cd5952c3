"""The compiled scorer: a folded, compiled copy that matches the exact eager path.

Compiling costs seconds (tens for a ResNet on 2 cores), so each test compiles one small
model once; the real-data test compiles ResNet-20 once.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from odin_monitor import OdinDetector
from odin_monitor import compiled as compiled_mod
from odin_monitor.compiled import (
    CompileFallbackWarning,
    compiler_available,
    fold_batchnorm,
    parse_compile_setting,
    resolve_compile,
    scoring_copy,
)
from odin_monitor.errors import InputValidationError
from odin_monitor.scoring import odin_scores

pytestmark = pytest.mark.skipif(
    not compiler_available(), reason="no C++ compiler: inductor cannot build CPU kernels here"
)

CPU = torch.device("cpu")


def _bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )
    # Non-trivial running statistics, so folding has something to fold.
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, 3, 8, 8) * 2)
    return net.eval()


def _x(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _score(net: nn.Module, x: torch.Tensor, compile: bool, batch_size: int = 4) -> torch.Tensor:
    out = odin_scores(
        net,
        x,
        temperature=1000.0,
        epsilon=0.002,
        normalization=None,
        batch_size=batch_size,
        compile=compile,
    )
    return torch.stack([out.odin_score, out.spread_score, out.msp])


def test_fold_batchnorm_folds_a_copy_and_leaves_the_model_alone() -> None:
    net = _bn_net().train()
    before = copy.deepcopy(net.state_dict())
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2
    assert net.training and all(p.requires_grad for p in net.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = _x(6)
    with torch.no_grad():
        expected = net.eval()(x)
        np.testing.assert_allclose(folded(x).numpy(), expected.numpy(), atol=1e-5)


def test_compiled_matches_eager_and_compiles_once_for_every_batch_size() -> None:
    net = _bn_net(1)
    x = _x(11)
    eager = _score(net, x, compile=False)
    first = _score(net, x, compile=True, batch_size=4)  # chunks of 4, 4, 3
    entry = scoring_copy(net, CPU)
    assert entry.failed is None
    graphs = entry.compilations
    # The whole step (forward, input gradient, step, forward on x̃) is one graph.
    assert graphs == 1
    torch.testing.assert_close(first, eager, atol=1e-6, rtol=0)
    # Other sizes, a last chunk of one image, a single image: no recompilation.
    again = _score(net, x, compile=True, batch_size=5)  # 5, 5, 1
    one = _score(net, x[:1], compile=True)
    assert entry.compilations == graphs
    torch.testing.assert_close(again, eager, atol=1e-6, rtol=0)
    torch.testing.assert_close(one, eager[:, :1], atol=1e-6, rtol=0)


def test_other_temperatures_epsilons_and_shapes_do_not_recompile() -> None:
    net = _bn_net(11)
    x = _x(6)
    kwargs: dict[str, Any] = {"normalization": None, "batch_size": None}
    for t, eps in [(1.0, 0.0), (1000.0, 0.002), (10.0, 0.0005), (2.0, 0.0)]:
        fast = odin_scores(net, x, temperature=t, epsilon=eps, compile=True, **kwargs)
        slow = odin_scores(net, x, temperature=t, epsilon=eps, **kwargs)
        torch.testing.assert_close(fast.odin_score, slow.odin_score, atol=1e-6, rtol=0)
    entry = scoring_copy(net, CPU)
    assert entry.compilations == 2  # one graph with the gradient step, one for ε = 0
    # One chunk of 65 runs as CPU sub-chunks of 64 and 1 (scored as two copies). PyTorch
    # picks a convolution kernel by batch size (< 16 or not), so 16 and more images
    # take one more graph, and only one: later sizes on either side compile nothing.
    assert compiled_mod.sub_chunk(CPU, (3, 8, 8)) == 64
    for n, graphs in [(65, 3), (30, 3), (7, 3), (64, 3)]:
        many = _x(n, seed=n)
        fast = odin_scores(net, many, temperature=7.0, epsilon=0.001, compile=True, **kwargs)
        slow = odin_scores(net, many, temperature=7.0, epsilon=0.001, **kwargs)
        torch.testing.assert_close(fast.odin_score, slow.odin_score, atol=1e-6, rtol=0)
        assert torch.equal(fast.predicted_class, slow.predicted_class)
        assert entry.compilations == graphs, n
    # Images of another size (the model pools adaptively): scored eagerly, not compiled.
    big = torch.rand(3, 3, 12, 12)
    fast = odin_scores(net, big, temperature=5.0, epsilon=0.001, compile=True, **kwargs)
    slow = odin_scores(net, big, temperature=5.0, epsilon=0.001, **kwargs)
    assert torch.equal(fast.odin_score, slow.odin_score)  # the exact eager path
    assert entry.compilations == 3


def test_many_models_and_a_bad_input_leave_later_models_compiled() -> None:
    """Dynamo gives up on a code object after 8 recompilations or one tracing error."""
    x = _x(4)
    nets = [_bn_net(20 + i) for i in range(10)]
    bad = nets[0]
    with pytest.raises(RuntimeError):
        _score(bad, torch.rand(2, 4, 8, 8), compile=True)  # 4 channels for 3
    for net in nets:
        torch.testing.assert_close(
            _score(net, x, compile=True), _score(net, x, compile=False), atol=1e-6, rtol=0
        )
        assert scoring_copy(net, CPU).compilations == 1, nets.index(net)


def test_scoring_follows_the_user_model_when_it_changes() -> None:
    net = _bn_net(2)
    x = _x(6)
    _score(net, x, compile=True)
    with torch.no_grad():
        net[0].weight.mul_(-1.5)  # an in-place update: the copy is stale
    torch.testing.assert_close(
        _score(net, x, compile=True), _score(net, x, compile=False), atol=1e-6, rtol=0
    )


def test_the_user_model_comes_back_untouched() -> None:
    net = _bn_net(3).train()
    net[0].weight.grad = torch.full_like(net[0].weight, 7.0)
    frozen = net[3].weight.requires_grad_(False)
    state = copy.deepcopy(net.state_dict())
    _score(net, _x(5), compile=True)
    assert net.training and all(m.training for m in net.modules())
    assert not frozen.requires_grad and net[0].weight.requires_grad
    assert torch.equal(net[0].weight.grad, torch.full_like(net[0].weight, 7.0))
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_compiler_failure_falls_back_to_eager_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch._inductor.compile_fx as inductor

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler found (simulated)")

    monkeypatch.setattr(inductor, "compile_fx", broken)
    net = _bn_net(4)
    x = _x(6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = _score(net, x, compile=True)
        second = _score(net, x, compile=True)
    fallbacks = [w for w in caught if issubclass(w.category, CompileFallbackWarning)]
    assert len(fallbacks) == 1
    assert "simulated" in str(fallbacks[0].message)
    assert "eager" in str(fallbacks[0].message)
    eager = _score(net, x, compile=False)
    assert torch.equal(first, eager) and torch.equal(second, eager)  # the exact eager path
    assert scoring_copy(net, CPU).failed is not None


def test_a_bad_input_is_the_input_error_not_a_compile_failure() -> None:
    net = _bn_net(5)
    _score(net, _x(4), compile=True)
    with pytest.raises(RuntimeError):
        _score(net, torch.rand(2, 4, 8, 8), compile=True)  # 4 channels for a 3-channel conv
    assert scoring_copy(net, CPU).failed is None


def test_detector_switch_and_warm_up() -> None:
    net = _bn_net(6)
    x_fit = _x(40)
    det = OdinDetector(net, normalization=None, batch_size=64).fit(x_fit)  # eager fit
    det.set_params(compile=True).warm_up()
    entry = scoring_copy(net, CPU)
    assert entry.compilations == 2  # both graphs (2–15 and 16+ images) at warm-up
    eager = OdinDetector(net, normalization=None, batch_size=64).fit(x_fit)
    for n in (13, 65, 1):
        scores = det.score_batch(_x(n, seed=9))
        np.testing.assert_allclose(scores.odin_score, eager.score_samples(_x(n, seed=9)), atol=1e-6)
    assert entry.compilations == 2  # no request compiled anything
    with pytest.raises(InputValidationError, match="True, False or 'auto'"):
        OdinDetector(net, normalization=None, compile="fast").fit(_x(4))  # type: ignore[arg-type]


def test_switch_parsing_and_auto() -> None:
    assert parse_compile_setting("TRUE") is True and parse_compile_setting("off") is False
    with pytest.raises(ValueError, match=r"ODIN_COMPILE.*'sometimes'"):
        parse_compile_setting("sometimes", "$ODIN_COMPILE")
    assert resolve_compile("auto", torch.device("mps")) is False
    assert resolve_compile("auto", CPU) is compiler_available()
    assert compiled_mod.resolve_compile(True, torch.device("mps")) is True


def test_resnet20_on_real_images_matches_eager(shared_data: Path) -> None:
    from odin_monitor.data import load_images
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION, resnet20

    model = resnet20()
    model.load_state_dict(torch.load(shared_data / "cifar10_resnet20.pt", weights_only=True))
    model.eval()
    x_id = torch.from_numpy(load_images(shared_data / "cifar10_test_lossless.npz", limit=300))
    x_ood = torch.from_numpy(load_images(shared_data / "ood_tinyimagenet_crop.npz", limit=300))
    x = torch.cat([x_id, x_ood])
    kwargs = {
        "temperature": 1000.0,
        "epsilon": 0.0014,
        "normalization": CIFAR_RESNET_NORMALIZATION,
        "batch_size": 256,
    }
    eager = odin_scores(model, x, **kwargs)
    fast = odin_scores(model, x, compile=True, **kwargs)
    assert scoring_copy(model, CPU).failed is None
    # Measured here: 6e-7. What moves a score is a gradient sign that flips where a ReLU
    # input lies within rounding of 0 (the eager path alone moves scores by up to 7e-7
    # between two memory layouts of the input), so the bound leaves room for another CPU.
    diff = (fast.odin_score - eager.odin_score).abs().max().item()
    assert diff <= 2e-6, diff
    assert torch.equal(fast.predicted_class, eager.predicted_class)
    # The T = 1 softmax magnifies float32 rounding: the eager path alone moves MSP by
    # ~2e-6 between two memory layouts of the same input, so MSP gets 1e-5.
    torch.testing.assert_close(fast.msp, eager.msp, atol=1e-5, rtol=0)
    # Decisions at δ of the first 300 (in-distribution) images: identical, except where
    # a score lies within that bound of δ.
    delta = torch.quantile(eager.odin_score[:300], 0.05, interpolation="lower")
    near = (eager.odin_score - delta).abs() <= 2e-6
    differ = (fast.odin_score < delta) != (eager.odin_score < delta)
    assert not bool((differ & ~near).any())


def test_an_unsupported_device_scores_eagerly_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compiled_mod, "DEVICES", ("cuda",))  # as if the CPU were MPS
    net = _bn_net(7)
    x = _x(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = _score(net, x, compile=True)
        _score(net, x, compile=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, CompileFallbackWarning)]
    assert len(messages) == 1 and "not on cpu" in messages[0]
    assert torch.equal(first, _score(net, x, compile=False))


def test_calibration_with_compiled_forwards_chooses_as_eager() -> None:
    from odin_monitor import calibrate

    net = _bn_net(40)
    x_id = _x(96, seed=41)
    x_ood = torch.rand(96, 3, 8, 8, generator=torch.Generator().manual_seed(42)) ** 3
    kwargs: dict[str, Any] = {
        "normalization": None,
        "temperatures": (1.0, 10.0, 1000.0),
        "epsilons": (0.0, 0.002, 0.01, 0.05),
        "batch_size": 32,
        "search": "full",
    }
    eager = calibrate(net, x_id, x_ood, **kwargs)
    fast = calibrate(net, x_id, x_ood, compile=True, **kwargs)
    assert (fast.record.temperature, fast.record.epsilon) == (
        eager.record.temperature,
        eager.record.epsilon,
    )
    assert abs(fast.record.threshold - eager.record.threshold) <= 1e-6
    # At every pair the FPRs are at most one OOD image apart (rounding near δ).
    np.testing.assert_allclose(
        fast.grid.metric_matrix(), eager.grid.metric_matrix(), atol=1.5 / x_ood.shape[0]
    )
    entry = scoring_copy(net, CPU)
    assert entry.failed is None and entry.compilations == 1  # the plain forward, 16+ images
    assert fast.detector.compile is True
