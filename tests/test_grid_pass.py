"""grid_pass and search_grid: a few pairs, scored exactly as the full grid and odin_scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odin_monitor import InputValidationError, Normalization
from odin_monitor.grid import CalibrationGrid
from odin_monitor.scoring import grid_pass, grid_scores, odin_scores
from odin_monitor.search import (
    MIN_SUBSET_IMAGES,
    contender_mask,
    fpr_at_tpr_cube,
    progress_total,
    search_grid,
    subset_indices,
)
from tests.helpers import make_smooth_net

NORM = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
TEMPS, EPS = (1.0, 10.0, 1000.0), (0.0, 0.001, 0.004)


def images(n: int, seed: int, low: float = 0.0, span: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 6, 6, generator=g) * span + low


def test_masked_pass_equals_the_full_grid_on_its_pairs_and_leaves_the_rest_nan():
    net, x = make_smooth_net(seed=1), images(37, 0)
    full = grid_scores(net, x, temperatures=TEMPS, epsilons=EPS, normalization=NORM, batch_size=8)
    mask = np.array([[False, True, False], [False, False, False], [False, False, True]])
    gp = grid_pass(
        net, x, temperatures=TEMPS, epsilons=EPS, normalization=NORM, pairs=mask, batch_size=8
    )
    expected = mask.copy()
    expected[:, 0] = True  # ε = 0 comes free with the unperturbed forward
    assert gp.computed.numpy().tolist() == expected.tolist()
    got = gp.scores.numpy()
    np.testing.assert_array_equal(got[expected], full.numpy()[expected])
    assert np.isnan(got[~expected]).all()


def test_a_pair_of_the_pass_equals_a_fresh_odin_scores_pass():
    net, x = make_smooth_net(seed=2), images(29, 1)
    gp = grid_pass(net, x, temperatures=TEMPS, epsilons=EPS, normalization=NORM, batch_size=7)
    for t in TEMPS:
        for e in EPS:
            got, want = (
                gp.pair(t, e),
                odin_scores(net, x, temperature=t, epsilon=e, normalization=NORM, batch_size=7),
            )
            for name in ("odin_score", "spread_score", "msp"):
                a, b = getattr(got, name), getattr(want, name)
                assert a.dtype == b.dtype == torch.float64
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
            assert torch.equal(got.predicted_class, want.predicted_class)


def test_bad_masks_and_pairs_left_out_are_refused():
    net, x = make_smooth_net(), images(4, 2)
    kw = {"temperatures": TEMPS, "epsilons": EPS, "normalization": NORM}
    with pytest.raises(InputValidationError, match=r"boolean mask of shape \(3, 3\)"):
        grid_pass(net, x, pairs=np.ones((2, 3), dtype=bool), **kw)
    with pytest.raises(InputValidationError, match="boolean mask"):
        grid_pass(net, x, pairs=np.ones((3, 3)), **kw)
    gp = grid_pass(net, x, pairs=np.zeros((3, 3), dtype=bool), **kw)
    with pytest.raises(InputValidationError, match="left out"):
        gp.pair(10.0, 0.001)
    with pytest.raises(InputValidationError, match="pair of the grid"):
        gp.pair(5.0, 0.0)


def test_halving_search_scores_the_subset_fully_and_the_contenders_everywhere():
    net = make_smooth_net(seed=3)
    x_id, x_ood = images(300, 4, 0.25, 0.5), images(280, 5)
    seen: list[int] = []
    found = search_grid(
        net, x_id, x_ood, temperatures=TEMPS, epsilons=EPS, normalization=NORM,
        batch_size=64, seed=9, progress=seen.append, search="halving",
    )  # fmt: skip
    assert found.search == "halving" and found.n_subset == (75, 70)
    # Every image once, the subsets twice (all pairs, then the contenders).
    assert sum(seen) == 300 + 280 + 75 + 70 == progress_total(300, 280, "halving", 0.25)
    kw = {"temperatures": TEMPS, "epsilons": EPS, "normalization": NORM, "batch_size": 64}
    full_in, full_out = grid_scores(net, x_id, **kw).numpy(), grid_scores(net, x_ood, **kw).numpy()
    # The contenders, recomputed here from the subsets' own full grids.
    sub_in, sub_out = subset_indices(300, 0.25, 9), subset_indices(280, 0.25, 10)
    assert (sub_in.size, sub_out.size) == found.n_subset
    fpr = fpr_at_tpr_cube(
        grid_scores(net, x_id[torch.from_numpy(sub_in)], **kw).numpy(),
        grid_scores(net, x_ood[torch.from_numpy(sub_out)], **kw).numpy(),
    )
    np.testing.assert_array_equal(found.subset_fpr, fpr)
    mask, margin = contender_mask(fpr, 70)
    assert found.margin == margin
    expected = mask | (np.asarray(EPS) == 0)[None, :]
    np.testing.assert_array_equal(found.finished, expected)
    # Finished pairs: bit for bit the full grid's scores on every image.
    for got, full in ((found.id_pass, full_in), (found.ood_pass, full_out)):
        np.testing.assert_array_equal(got.scores.numpy()[expected], full[expected])
        assert np.isnan(got.scores.numpy()[~expected]).all()
    # The id pass carries MSP and the class of every image, in the images' order.
    ref = odin_scores(net, x_id, temperature=1.0, epsilon=0.0, normalization=NORM)
    torch.testing.assert_close(found.id_pass.msp, ref.msp, rtol=0, atol=1e-12)
    assert torch.equal(found.id_pass.predicted_class, ref.predicted_class)
    # The choice among the finished pairs is the full grid's.
    halved = CalibrationGrid.from_scores(
        found.id_pass.scores.numpy(), found.ood_pass.scores.numpy(), TEMPS, EPS
    ).best
    best = CalibrationGrid.from_scores(full_in, full_out, TEMPS, EPS).best
    assert (halved.temperature, halved.epsilon) == (best.temperature, best.epsilon)


def test_sets_too_small_to_halve_are_searched_in_full():
    net = make_smooth_net()
    n = 4 * MIN_SUBSET_IMAGES - 4  # a quarter is just under the minimum
    found = search_grid(net, images(n, 6), images(n, 7), temperatures=TEMPS, epsilons=EPS,
                        normalization=NORM, search="halving")  # fmt: skip
    assert found.search == "full" and found.finished.all() and found.subset_fpr is None
    assert "full search" in found.describe(3.0)


# --- estimates and the coarse-to-fine search -----------------------------------------------

FINE_EPS = tuple(round(0.0005 * i, 12) for i in range(9))  # 0 … 0.004; coarse: every other


def test_estimates_interpolate_the_logits_along_each_temperatures_line():
    net, x = make_smooth_net(seed=5), images(23, 8)
    coarse = np.array([[e in (0.0, 0.001, 0.004) for e in FINE_EPS]] * 3)
    gp = grid_pass(net, x, temperatures=TEMPS, epsilons=FINE_EPS, normalization=NORM,
                   pairs=coarse, batch_size=8, estimate=True)  # fmt: skip
    assert gp.estimates is not None
    est = gp.estimates.numpy()
    assert np.isnan(est[coarse]).all() and not np.isnan(est[~coarse]).any()
    # Written out from the formulas: x̃ = x - ε·sign(∇ₓ CE(f(x)/T, ŷ)) at the two computed
    # ε around each left-out one, the logits mixed linearly, S = max softmax(·/T).
    xn, net = (x - 0.5) / 0.25, net.eval()
    for i, t in enumerate(TEMPS):
        xi = xn.clone().requires_grad_(True)
        logits = net(xi)
        loss = torch.nn.functional.cross_entropy(logits / t, logits.argmax(1), reduction="sum")
        (g,) = torch.autograd.grad(loss, xi)
        with torch.no_grad():
            at = {e: net(xn - (e / 0.25) * g.sign()).double() for e in (0.0, 0.001, 0.004)}
        for j, e in enumerate(FINE_EPS):
            if coarse[i, j]:
                continue
            lo, hi = (0.0, 0.001) if e < 0.001 else (0.001, 0.004)
            w = (e - lo) / (hi - lo)
            want = torch.softmax(((1 - w) * at[lo] + w * at[hi]) / t, dim=1).max(dim=1).values
            np.testing.assert_allclose(est[i, j], want.numpy(), rtol=0, atol=2e-6)


def test_estimates_are_exact_for_a_network_without_relus():
    # Affine in x, so affine along every perturbation line: interpolation is exact.
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 5))  # fmt: skip
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g)
    x = images(31, 9)
    full = grid_scores(net, x, temperatures=TEMPS, epsilons=FINE_EPS, normalization=NORM).numpy()
    coarse = np.array([[j % 4 == 0 for j in range(9)]] * 3)
    gp = grid_pass(net, x, temperatures=TEMPS, epsilons=FINE_EPS, normalization=NORM,
                   pairs=coarse, estimate=True)  # fmt: skip
    est = gp.estimates.numpy()
    np.testing.assert_allclose(est[~coarse], full[~coarse], rtol=1e-5, atol=0)
    # A model with ReLUs is not affine: over wide ε its estimates miss.
    relu, wide = make_smooth_net(seed=6), tuple(0.1 * j for j in range(9))
    full_r = grid_scores(relu, x, temperatures=TEMPS, epsilons=wide, normalization=NORM)
    est_r = grid_pass(relu, x, temperatures=TEMPS, epsilons=wide, normalization=NORM,
                      pairs=coarse, estimate=True).estimates.numpy()  # fmt: skip
    assert np.abs(est_r[~coarse] - full_r.numpy()[~coarse]).max() > 1e-3


def test_coarse_to_fine_search_finishes_exact_pairs_and_chooses_as_the_full_grid():
    net = make_smooth_net(seed=3)
    x_id, x_ood = images(300, 4, 0.25, 0.5), images(280, 5)
    seen: list[int] = []
    # Wide ε on this small net spread the pairs' FPRs (as the paper's do on a ResNet).
    wide = tuple(round(0.025 * j, 12) for j in range(9))
    kw = {"temperatures": TEMPS, "epsilons": wide, "normalization": NORM, "batch_size": 64}
    found = search_grid(net, x_id, x_ood, progress=seen.append, coarse_gap=0.05,
                        **kw)  # fmt: skip
    assert found.search == "coarse-to-fine" and found.rounds is not None
    assert found.coarse is not None and found.coarse.tolist() == [j % 2 == 0 for j in range(9)]
    assert found.finished[:, found.coarse].all() and not found.finished.all()
    # The coarse pass, then one pass per round over both sets.
    assert sum(seen) == (1 + found.rounds) * (300 + 280)
    if found.rounds == 1:
        assert sum(seen) == progress_total(300, 280, "coarse-to-fine", 0.25, wide, 0.05)
    full_in, full_out = grid_scores(net, x_id, **kw).numpy(), grid_scores(net, x_ood, **kw).numpy()
    done = found.finished
    for got, full in ((found.id_pass, full_in), (found.ood_pass, full_out)):
        np.testing.assert_array_equal(got.scores.numpy()[done], full[done])
        assert np.isnan(got.scores.numpy()[~done]).all()
    chosen = CalibrationGrid.from_scores(
        found.id_pass.scores.numpy(), found.ood_pass.scores.numpy(), TEMPS, wide
    ).best
    best = CalibrationGrid.from_scores(full_in, full_out, TEMPS, wide).best
    assert (chosen.temperature, chosen.epsilon) == (best.temperature, best.epsilon)
    # What was spared could not win: its exact FPR is beyond the best by the allowance.
    fpr = fpr_at_tpr_cube(full_in, full_out)
    assert (fpr[~done] > fpr.min()).all()
    assert "coarse-to-fine: 5 of 9 epsilon per T" in found.describe(4.0)
