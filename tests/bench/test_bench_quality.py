"""Quality bench: data splits, the tables it prints, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from odin_monitor.bench import quality
from odin_monitor.bench.common import markdown_table, resolve_data_dir
from odin_monitor.errors import DataLoadError, InputValidationError


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataLoadError, match="--data-dir"):
        resolve_data_dir(tmp_path / "nope")
    with pytest.raises(DataLoadError, match=r"cifar10_test_lossless\.npz"):
        quality.run_quality(data_dir=tmp_path, depths=(20,))


def test_grid_without_msp_pair_is_rejected(tmp_path):
    with pytest.raises(InputValidationError, match="MSP"):
        quality.run_quality(data_dir=tmp_path, temperatures=(10, 1000))


def test_markdown_table():
    assert markdown_table(["a"], [[1], [2]]).splitlines()[2:] == ["| 1 |", "| 2 |"]


def test_bench_imports_neither_mlflow_nor_evidently():
    code = (
        "import sys; sys.modules['mlflow'] = None; sys.modules['evidently'] = None; "
        "sys.modules['torchvision'] = None; "
        "import odin_monitor.bench.quality, odin_monitor.bench.speed"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory):
    return quality.run_quality(
        data_dir=shared_data,
        depths=(20,),
        temperatures=(1, 1000),
        epsilons=(0.0, 0.0014),
        n_id_val=60,
        n_id_test=60,
        n_ood_val=20,
        n_ood_test=20,
        plots_dir=tmp_path_factory.mktemp("plots"),
    )


def test_splits_are_disjoint_and_sized(shared_data):
    cfg = quality.QualityConfig(data_dir=shared_data, n_id_val=100, n_ood_val=30, n_ood_test=20)
    data = quality._load(cfg, lambda _line: None)
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
    d = ((a[:, None, :] - b[None, :, :]) ** 2).mean(-1)
    assert (d.argmin(axis=1) == np.arange(30)).mean() > 0.9


def test_tiny_run_tables(tiny_run):
    (d,) = tiny_run.depths
    assert d.depth == 20 and 0.8 < d.id_test_accuracy <= 1.0
    assert set(d.odin) == set(quality.OOD_FILES) | {"Gaussian", "Uniform"}
    assert d.choices[quality.NO_OOD].temperature == 1000.0
    for name in d.odin:
        assert d.transfer[name][name] == d.odin[name]
        assert d.grid_fpr[name].shape == (2, 2)
        # The chosen pair is the validation minimum of FPR.
        assert d.choices[name].val_fpr == pytest.approx(d.grid_fpr[name].min())
    text = quality.format_markdown(tiny_run)
    assert "| TIN crop | TIN crop val: T=" in text
    assert "| chosen (T, ε) | T=1, ε=0 |" in text
    assert "no OOD data (T=1000, ε=0.0014)" in text
    assert len(d.plots) == 3 and all(p.is_file() and p.stat().st_size > 0 for p in d.plots)
