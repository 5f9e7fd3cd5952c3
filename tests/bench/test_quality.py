"""Quality benchmark: its choices and metrics against a brute-force recomputation.

A tiny data folder (random-weight ResNet-20, a few random images in the real files'
layout) lets the whole run go without the shared data; every figure the run reports
is then recomputed independently: ``odin_scores`` pair by pair (not the shared-gradient
``grid_scores`` the run uses), ``ood_metrics`` on those, a plain loop for the choice.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from odin_monitor import odin_scores, ood_metrics
from odin_monitor.bench import quality
from odin_monitor.bench.common import load_resnet, resolve_data_dir
from odin_monitor.bench.quality.data import load_data
from odin_monitor.errors import DataLoadError, InputValidationError
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION, resnet20
from odin_monitor.normalization import normalize

TEMPS = (1.0, 1000.0)
EPS = (0.0, 0.004)
SIZES = {"n_id_val": 24, "n_id_test": 20, "n_ood_val": 12, "n_ood_test": 16}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The data folder's files, small: 48 ID images with labels, 3 × 40 Tiny-ImageNet-like."""
    folder = tmp_path_factory.mktemp("tiny-data")
    rng = np.random.default_rng(0)
    smooth = rng.integers(60, 200, (48, 4, 4, 3)).repeat(8, 1).repeat(8, 2).astype(np.uint8)
    np.savez(folder / quality.ID_FILE, images=smooth, labels=rng.integers(0, 10, 48))
    for k, name in enumerate(quality.OOD_FILES.values()):
        noisy = np.random.default_rng(10 + k).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
        np.savez(folder / name, images=noisy)
    torch.manual_seed(0)
    net = resnet20()
    with torch.no_grad():  # larger logits than at initialisation: scores far from 1/K
        net.linear.weight.mul_(20.0)
    torch.save(net.state_dict(), folder / "cifar10_resnet20.pt")
    return folder


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    return quality.run_quality(
        data_dir=tiny_data,
        depths=(20,),
        temperatures=TEMPS,
        epsilons=EPS,
        batch_size=16,
        plots_dir=tmp_path_factory.mktemp("plots"),
        **SIZES,
    )


def _scores(model, x, t, e):
    return odin_scores(
        model, x, temperature=t, epsilon=e, normalization=CIFAR_RESNET_NORMALIZATION
    ).odin_score.numpy()


def test_each_choice_is_the_brute_force_minimum_of_validation_fpr(tiny_data, tiny_run):
    (d,) = tiny_run.depths
    cfg = quality.QualityConfig(data_dir=tiny_data, **SIZES)
    data = load_data(cfg, lambda _line: None)
    model = load_resnet(20, tiny_data)
    ood_val = dict(data.ood_val)
    ood_val[quality.POOLED_SYNTHETIC] = torch.cat([ood_val["Gaussian"], ood_val["Uniform"]])
    for name, x_ood in ood_val.items():
        table = []
        for t in TEMPS:
            for e in EPS:
                m = ood_metrics(_scores(model, data.id_val, t, e), _scores(model, x_ood, t, e))
                table.append((m["fpr_at_tpr"], -m["auroc"], t, e))
        fpr, _, t, e = min(table)  # lowest FPR; ties: higher AUROC, smaller T, smaller ε
        chosen = d.choices[name]
        assert (chosen.temperature, chosen.epsilon) == (t, e), name
        assert chosen.val_fpr == pytest.approx(fpr)
    assert (d.choices[quality.NO_OOD].temperature, d.choices[quality.NO_OOD].epsilon) == (
        1000.0,
        0.0014,
    )
    # The grids differ between sources, so the choices are not all the same by accident.
    assert len({(c.temperature, c.epsilon) for c in d.choices.values()}) > 1


def test_test_metrics_equal_ood_metrics_of_independently_computed_scores(tiny_data, tiny_run):
    (d,) = tiny_run.depths
    cfg = quality.QualityConfig(data_dir=tiny_data, **SIZES)
    data = load_data(cfg, lambda _line: None)
    model = load_resnet(20, tiny_data)
    for name, x_ood in data.ood_test.items():
        msp = ood_metrics(_scores(model, data.id_test, 1.0, 0.0), _scores(model, x_ood, 1.0, 0.0))
        assert d.msp[name] == pytest.approx(msp), name
        for column, c in d.choices.items():
            t, e = c.temperature, c.epsilon
            want = ood_metrics(_scores(model, data.id_test, t, e), _scores(model, x_ood, t, e))
            assert d.transfer[name][column] == pytest.approx(want), (name, column)
        own = d.choices[name]
        want = ood_metrics(
            _scores(model, data.id_test, own.temperature, own.epsilon),
            _scores(model, x_ood, own.temperature, own.epsilon),
        )
        assert d.odin[name] == pytest.approx(want), name
    with torch.inference_mode():
        predicted = model(normalize(data.id_test, CIFAR_RESNET_NORMALIZATION)).argmax(1).numpy()
    assert d.id_test_accuracy == pytest.approx((predicted == data.id_test_labels).mean())


def test_markdown_tables_hold_the_result_numbers(tiny_run):
    (d,) = tiny_run.depths
    text = quality.format_markdown(tiny_run)
    for name, m_odin in d.odin.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} | {name} val"))
        pair = re.search(r"T=([0-9.e+-]+), ε=([0-9.e+-]+)", row)
        assert pair and (float(pair[1]), float(pair[2])) == (
            d.choices[name].temperature,
            d.choices[name].epsilon,
        )
        cells = re.findall(r"([0-9.]+) / \*\*([0-9.]+)\*\*", row)
        keys = ["fpr_at_tpr", "detection_error", "auroc", "aupr_in", "aupr_out"]
        assert len(cells) == len(keys)
        for (msp_text, odin_text), key in zip(cells, keys, strict=True):
            assert float(msp_text) == pytest.approx(100 * d.msp[name][key], abs=0.05)
            assert float(odin_text) == pytest.approx(100 * m_odin[key], abs=0.05)
    assert len(d.plots) == 3 and all(p.is_file() and p.stat().st_size > 0 for p in d.plots)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataLoadError, match="--data-dir"):
        resolve_data_dir(tmp_path / "nope")
    with pytest.raises(DataLoadError, match=r"cifar10_test_lossless\.npz"):
        quality.run_quality(data_dir=tmp_path, depths=(20,))


def test_grid_without_msp_pair_is_rejected(tmp_path):
    with pytest.raises(InputValidationError, match="MSP"):
        quality.run_quality(data_dir=tmp_path, temperatures=(10, 1000))


def test_too_many_ood_images_asked_is_rejected(tiny_data):
    with pytest.raises(InputValidationError, match="n_ood_val"):
        quality.run_quality(
            data_dir=tiny_data, depths=(20,), n_id_val=24, n_ood_val=30, n_ood_test=30
        )


def test_quick_grid_is_the_benchmarks_own():
    from odin_monitor.cli import demo_cmd

    assert 1.0 in quality.QUALITY_QUICK_TEMPERATURES and 0.0 in quality.QUALITY_QUICK_EPSILONS
    assert quality.QUALITY_QUICK_EPSILONS != demo_cmd.QUICK_EPSILONS


def test_real_splits_are_disjoint_and_sized(shared_data):
    cfg = quality.QualityConfig(data_dir=shared_data, n_id_val=100, n_ood_val=30, n_ood_test=20)
    data = load_data(cfg, lambda _line: None)
    assert len(data.id_val) == 100 and len(data.id_test) == 900
    flat_val = data.id_val.reshape(100, -1).numpy()
    flat_test = data.id_test.reshape(900, -1).numpy()
    assert not (set(map(bytes, flat_val.round(6))) & set(map(bytes, flat_test.round(6))))
    for name in [*quality.OOD_FILES, "Gaussian", "Uniform"]:
        assert len(data.ood_val[name]) == 30 and len(data.ood_test[name]) == 20
    # The three Tiny ImageNet files share one index split: the Pillow and the ODIN authors'
    # resize of the same source image are closer than any other pair.
    a = data.ood_val["TIN resize (Pillow)"].reshape(30, -1).numpy()
    b = data.ood_val["TIN resize (ODIN authors')"].reshape(30, -1).numpy()
    dist = ((a[:, None, :] - b[None, :, :]) ** 2).mean(-1)
    assert (dist.argmin(axis=1) == np.arange(30)).mean() > 0.9
