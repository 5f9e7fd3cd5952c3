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
        batch_size=64, seed=9, progress=seen.append,
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
                        normalization=NORM)  # fmt: skip
    assert found.search == "full" and found.finished.all() and found.subset_fpr is None
    assert "full search" in found.describe(3.0)
