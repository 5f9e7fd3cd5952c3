"""The searches choose as the full grid on every shared validation set (real ResNet-20).

In-distribution: the first 400 lossless CIFAR-10 test images. OOD validation sets: the
three Tiny ImageNet sets (crop, resize, ODIN's resize) and the two no-OOD rules
(jigsaw patches of the ID images, the paper's Gaussian + Uniform noise), 400 images
each. Grid: ``T ∈ {1, 10, 100, 1000}`` × 11 ``ε`` in ``[0, 0.004]`` (44 pairs; the
paper's 210 cost five times as much, and ``bench speed`` times them).

The full cubes are computed once, and a coarse pass with estimates per set; the
searches' choices are read from them (:func:`odin_monitor.search.halving_choice`,
:func:`odin_monitor.search.coarse_to_fine_choice`: the entries ``search_grid`` uses),
and ``calibrate`` runs its default search once, end to end. Skipped with a clear
reason where ../shared/data is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odin_monitor import calibrate, odin_scores
from odin_monitor.data import load_images
from odin_monitor.grid import CalibrationGrid
from odin_monitor.modelref import model_from_reference
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION as NORM
from odin_monitor.scoring import grid_pass, grid_scores
from odin_monitor.search import coarse_columns, coarse_to_fine_choice, halving_choice
from odin_monitor.synthetic import gaussian_noise, jigsaw, uniform_noise

N = 400
TEMPS = (1.0, 10.0, 100.0, 1000.0)
EPS = tuple(round(0.0004 * i, 12) for i in range(11))
BATCH = 200
OOD_SETS = ("tinyimagenet_crop", "tinyimagenet_resize", "tinyimagenet_resize_odin", "jigsaw",
            "noise")  # fmt: skip


@pytest.fixture(scope="module")
def resnet20(shared_data):
    return model_from_reference("odin_monitor.models:resnet20", shared_data / "cifar10_resnet20.pt")


@pytest.fixture(scope="module")
def images(shared_data):
    x_id = load_images(shared_data / "cifar10_test_lossless.npz", limit=N)
    out = {"id": x_id}
    for name in OOD_SETS[:3]:
        out[name] = load_images(shared_data / f"ood_{name}.npz", limit=N)
    out["jigsaw"] = jigsaw(x_id, grid=4, seed=3)  # calibrate's jigsaw rule, seed 0
    shape = tuple(x_id.shape[1:])
    out["noise"] = np.concatenate(
        [gaussian_noise(N // 2, shape, 0), uniform_noise(N // 2, shape, 1)]
    )
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


@pytest.fixture(scope="module")
def cubes(resnet20, images):
    kw = {"temperatures": TEMPS, "epsilons": EPS, "normalization": NORM, "batch_size": BATCH}
    return {k: grid_scores(resnet20, x, **kw).numpy() for k, x in images.items()}


@pytest.fixture(scope="module")
def estimates(resnet20, images):
    coarse = np.broadcast_to(coarse_columns(EPS), (len(TEMPS), len(EPS)))
    kw = {"temperatures": TEMPS, "epsilons": EPS, "normalization": NORM, "batch_size": BATCH}
    return {k: grid_pass(resnet20, x, pairs=coarse.copy(), estimate=True, **kw).estimates.numpy()
            for k, x in images.items()}  # fmt: skip


@pytest.mark.parametrize("ood", OOD_SETS)
def test_coarse_to_fine_chooses_the_full_grids_pair(cubes, estimates, ood):
    full = CalibrationGrid.from_scores(cubes["id"], cubes[ood], TEMPS, EPS).best
    got = coarse_to_fine_choice(cubes["id"], cubes[ood], estimates["id"], estimates[ood],
                                TEMPS, EPS)  # fmt: skip
    assert got.chosen == (full.temperature, full.epsilon), (
        f"{ood}: coarse-to-fine {got.chosen}, full grid ({full.temperature}, {full.epsilon}); "
        f"{int(got.finished.sum())} finished, estimate error {got.estimate_error:.3f}"
    )
    # It spared work: 6 of the 11 ε are coarse, and not every other pair was finished.
    assert got.coarse.sum() == 6 and got.finished.sum() < got.finished.size


@pytest.mark.parametrize("ood", OOD_SETS)
def test_halving_chooses_the_full_grids_pair(cubes, ood):
    full = CalibrationGrid.from_scores(cubes["id"], cubes[ood], TEMPS, EPS).best
    got = halving_choice(cubes["id"], cubes[ood], TEMPS, EPS)
    assert got.chosen == (full.temperature, full.epsilon), (
        f"{ood}: halving {got.chosen}, full grid ({full.temperature}, {full.epsilon}); "
        f"{int(got.contenders.sum())} contenders, margin {got.margin:.3f}"
    )
    # It spared work: not every pair was finished on every image.
    assert got.contenders.sum() < got.contenders.size


def test_calibrate_end_to_end_on_tiny_imagenet_crop(resnet20, images, cubes):
    x_id, x_ood = images["id"], images["tinyimagenet_crop"]
    res = calibrate(resnet20, x_id, x_ood, normalization=NORM, temperatures=TEMPS, epsilons=EPS,
                    batch_size=BATCH)  # fmt: skip
    full = CalibrationGrid.from_scores(cubes["id"], cubes["tinyimagenet_crop"], TEMPS, EPS)
    assert res.record.search == "coarse-to-fine"  # calibrate's default
    assert res.chosen == (full.best.temperature, full.best.epsilon)
    # Finished pairs: the full grid's scores, bit for bit (same images, same chunks).
    done = res.grid.finished
    assert 0 < done.sum() < done.size
    np.testing.assert_array_equal(res.id_scores[done], cubes["id"][done])
    np.testing.assert_array_equal(res.ood_scores[done], cubes["tinyimagenet_crop"][done])
    # δ's reference scores come from the grid pass; a fresh pass agrees to 1e-12.
    t, e = res.chosen
    fresh = odin_scores(resnet20, x_id, temperature=t, epsilon=e, normalization=NORM,
                        batch_size=BATCH)  # fmt: skip
    for name in ("odin_score", "spread_score", "msp"):
        np.testing.assert_allclose(
            getattr(res.detector.reference_, name), getattr(fresh, name).numpy(), rtol=0, atol=1e-12
        )
    np.testing.assert_array_equal(
        res.detector.reference_.predicted_class, fresh.predicted_class.numpy()
    )
