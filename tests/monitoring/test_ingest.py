"""Ingest: image batch files and serving logs from elsewhere, including poison inputs (issue 9)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from odin_monitor.monitoring import EXIT_QUARANTINED, InvalidBatchError, process_batch
from odin_monitor.monitoring.ingest import complete_scores, read_image_file, read_score_file
from odin_monitor.monitoring.schema import SCORE_ATOL, UNKNOWN_CLASS, ModelRef
from tests.monitoring.helpers import K, T, fake_scorer_for, make_scores

# --- Image batch files


def _forged_npy(n_images: int) -> bytes:
    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (n_images, 3, 8, 8)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + bytes(64)


def _poison(tmp_path, name: str):
    path = tmp_path / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    ok = io.BytesIO()
    np.savez(ok, images=np.zeros((4, 3, 8, 8), np.float32))
    if name == "truncated.npz":
        path.write_bytes(ok.getvalue()[: len(ok.getvalue()) // 2])
    elif name.startswith("zero"):
        path.write_bytes(b"")
    elif name == "forged.npy":
        path.write_bytes(_forged_npy(10**11))
    elif name == "forged.npz":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("images.npy", _forged_npy(10**11))
    elif name == "pickled.npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


POISON = {
    "truncated.npz": "truncated or corrupt",
    "zero.npz": r"empty \(0 bytes\)",
    "zero.npy": r"empty \(0 bytes\)",
    "forged.npy": r"76,800,000,000,000 bytes.*only 64 follow",
    "forged.npz": r"76,800,000,000,000 bytes.*only 64 follow",
    "pickled.npy": "Python objects",
}


@pytest.mark.parametrize("name", POISON)
def test_poison_image_file_is_an_invalid_batch(tmp_path, name):
    path = _poison(tmp_path, name)
    with pytest.raises(InvalidBatchError, match=rf"Expected a readable \.np[yz].*{POISON[name]}"):
        read_image_file(path)


@pytest.mark.parametrize("name", POISON)
def test_poison_image_file_is_quarantined_once(config, model, reference, tmp_path, name):
    path = _poison(tmp_path, name)
    scorer = fake_scorer_for(model)
    res = process_batch(model, config, images=path, scorer=scorer, reference=reference)
    assert res.exit_code == EXIT_QUARANTINED and scorer.calls == 0
    assert not path.exists()
    (row,) = config.log.quarantined()
    assert row["batch_id"] == res.batch_id
    assert (config.quarantine_dir / f"{res.batch_id}__{name}").exists()


def test_image_file_reads_images_or_the_only_array(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "named.npz", labels=np.arange(2), images=x)
    np.testing.assert_array_equal(read_image_file(tmp_path / "named.npz"), x)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(InvalidBatchError, match=r"named 'images'.*\['a', 'b'\]"):
        read_image_file(tmp_path / "two.npz")


# --- Serving logs: every column is checked against the model


def _log(model, n: int = 40, seed: int = 0) -> pd.DataFrame:
    return make_scores(n, 0.1, model, seed=seed)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_good_log_round_trips_unchanged(model, tmp_path, suffix):
    full = _log(model)
    path = tmp_path / f"log{suffix}"
    full.to_csv(path, index=False) if suffix == ".csv" else full.to_parquet(path)
    pd.testing.assert_frame_equal(read_score_file(path, model), full, check_exact=False)


def test_is_ood_is_recomputed_from_delta_and_a_contradiction_refused(model):
    frame = _log(model)
    frame.loc[[3, 7], "is_ood"] = ~frame.loc[[3, 7], "is_ood"]
    with pytest.raises(InvalidBatchError, match=r"is_ood = odin_score < δ = 0\.10045.*\[3, 7\]"):
        complete_scores(frame, model)
    # The issue's case: odin_score 0.01 flagged in-distribution, under a model whose K is
    # unknown (so 0.01 is a possible probability): logged as 0% OOD before, refused now.
    no_k = replace(model, n_classes=None, temperature=None)
    with pytest.raises(InvalidBatchError, match=r"is_ood .* first \[0\] with values \[0\.01\]"):
        complete_scores(pd.DataFrame({"odin_score": [0.01], "is_ood": [False]}), no_k)


def test_is_ood_within_tolerance_of_delta_takes_the_recomputed_flag(model):
    odin = model.threshold + np.array([SCORE_ATOL / 2, -SCORE_ATOL / 2, 2e-3])
    given = pd.DataFrame({"odin_score": odin, "is_ood": [True, False, False]})
    out = complete_scores(given, model)
    assert out["is_ood"].tolist() == [False, True, False]  # odin_score < δ, independently


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("odin_score", 0.01, r"odin_score in \[0\.1, 1\].*K=10.*\[0\.01\]"),  # below 1/K
        ("odin_score", 5.0, r"odin_score in \[0\.1, 1\].*\[5\.0\]"),
        ("msp", 7.0, r"msp in \[0\.1, 1\].*\[7\.0\]"),
        ("msp", np.inf, r"finite msp .*first \[5\]"),
        ("msp", np.nan, r"finite msp .*first \[5\].*drop the msp column"),
        ("predicted_class", 99, r"predicted_class in \[0, 9\].*\[99\]"),
        ("predicted_class", -2, r"predicted_class in \[0, 9\].*-1 for unknown.*\[-2\]"),
        (
            "spread_score",
            1e9,
            r"spread_score = T·log\(K·odin_score\) with T=1000 .*K=10.*\[1000000000\.0\]",
        ),
        ("spread_score", np.nan, r"finite spread_score .*first \[5\]"),
    ],
)
def test_impossible_value_is_refused_naming_column_row_and_range(model, column, value, message):
    frame = _log(model)
    frame.loc[5, column] = value
    with pytest.raises(InvalidBatchError, match=message) as info:
        complete_scores(frame, model)
    assert "1 of 40 rows" in str(info.value) or "on 1 of 40 rows" in str(info.value)


def test_the_issue_row_is_refused_whatever_column_comes_first(model):
    row = {"odin_score": [5.0], "predicted_class": [99], "msp": [7.0], "is_ood": [False]}
    with pytest.raises(InvalidBatchError, match="odin_score in"):
        complete_scores(pd.DataFrame(row), model)
    for fixed in ({"odin_score": [0.5]}, {"odin_score": [0.5], "msp": [0.5]}):
        with pytest.raises(InvalidBatchError, match=r"msp in|predicted_class in"):
            complete_scores(pd.DataFrame({**row, **fixed}), model)


def test_supplied_spread_must_match_the_model_and_is_kept(model):
    frame = _log(model)
    frame["spread_score"] = frame["spread_score"] + 1e-6  # rounding: still this odin_score
    out = complete_scores(frame, model)
    np.testing.assert_array_equal(out["spread_score"], frame["spread_score"])
    frame.loc[2, "spread_score"] = T * np.log(K * 0.2)  # the spread of another score
    with pytest.raises(InvalidBatchError, match=r"spread_score.*first \[2\]"):
        complete_scores(frame, model)


def test_missing_columns_are_derived_or_left_unknown(model):
    odin = _log(model)["odin_score"]
    out = complete_scores(pd.DataFrame({"odin_score": odin}), model)
    np.testing.assert_allclose(out["spread_score"], T * np.log(K * odin.to_numpy()))
    assert out["msp"].isna().all() and (out["predicted_class"] == UNKNOWN_CLASS).all()
    no_t = replace(model, n_classes=None, temperature=None)
    assert complete_scores(pd.DataFrame({"odin_score": odin}), no_t)["spread_score"].isna().all()


def test_without_k_classes_only_need_to_be_non_negative(model):
    no_k = replace(model, n_classes=None, temperature=None)
    frame = _log(model).assign(predicted_class=99, spread_score=np.nan)
    frame = frame.drop(columns="spread_score")
    assert (complete_scores(frame, no_k)["predicted_class"] == 99).all()
    with pytest.raises(InvalidBatchError, match=r"predicted_class in >= 0"):
        complete_scores(frame.assign(predicted_class=-5), no_k)


def test_bad_score_file_is_quarantined_with_its_reason(config, model, reference, tmp_path):
    frame = _log(model)
    frame.loc[[1, 4], "odin_score"] = 5.0
    path = tmp_path / "serving.csv"
    frame.to_csv(path, index=False)
    res = process_batch(model, config, scores=path, reference=reference)
    assert res.exit_code == EXIT_QUARANTINED
    assert "odin_score in [0.1, 1]" in res.quarantine_reason
    assert "first [1, 4]" in res.quarantine_reason
    assert config.log.batch_ids() == [] and not path.exists()


def test_spread_derived_for_ingested_logs_matches_the_core():
    """A log holding only S gets the core's spread score T·log(K·S) for the model's T and K."""
    import torch

    from odin_monitor.scoring import max_softmax, spread_score

    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 4
    for t in (1.0, 1000.0):
        odin = max_softmax(logits, t).numpy().astype(np.float64)
        model = ModelRef("m", "1", "0" * 64, float(np.median(odin)), 0.0, 0.95, t, 10)
        derived = complete_scores(pd.DataFrame({"odin_score": odin}), model)["spread_score"]
        np.testing.assert_allclose(derived, spread_score(logits, t).numpy(), rtol=1e-9, atol=1e-9)
