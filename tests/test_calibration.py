"""Calibration: the shared-gradient grid chooses exactly what a naive loop chooses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from odin_monitor import (
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    CalibrationError,
    CalibrationRecord,
    InputValidationError,
    Normalization,
    OdinDetector,
    calibrate,
    odin_scores,
)
from odin_monitor.calibration import GridPoint, select_best
from odin_monitor.synthetic import gaussian_noise, uniform_noise
from tests.helpers import make_smooth_net

NORM = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_paper_grid():
    assert PAPER_TEMPERATURES == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert len(PAPER_EPSILONS) == 21 and PAPER_EPSILONS[0] == 0.0 and PAPER_EPSILONS[-1] == 0.004
    np.testing.assert_allclose(np.diff(PAPER_EPSILONS), 0.0002)
    assert 0.0014 in PAPER_EPSILONS


def test_choice_equals_naive_210_pair_loop():
    g = torch.Generator().manual_seed(5)
    x_id = torch.rand(40, 3, 6, 6, generator=g) * 0.5 + 0.25
    x_ood = torch.rand(40, 3, 6, 6, generator=g)
    net = make_smooth_net(seed=2)
    res = calibrate(net, x_id, x_ood, normalization=NORM, batch_size=16)
    assert len(res.grid.points) == 210

    naive = []
    for t in PAPER_TEMPERATURES:
        for e in PAPER_EPSILONS:
            det = OdinDetector(net, temperature=t, epsilon=e, normalization=NORM, batch_size=16)
            s_in, s_out = det.score_samples(x_id), det.score_samples(x_ood)
            delta = np.sort(s_in)[::-1][int(np.ceil(0.95 * len(s_in) - 1e-9)) - 1]
            fpr = float(np.mean(s_out >= delta))
            y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
            auroc = float(roc_auc_score(y, np.r_[s_in, s_out]))
            naive.append((fpr, -auroc, float(t), float(e)))
    best = min(naive)
    assert (res.record.temperature, res.record.epsilon) == (best[2], best[3])
    got = [
        (p.metrics["fpr_at_tpr"], -p.metrics["auroc"], p.temperature, p.epsilon)
        for p in res.grid.points
    ]
    np.testing.assert_allclose(np.array(got), np.array(naive), rtol=0, atol=1e-12)
    # δ is the detector's own threshold on the ID validation set at the chosen pair.
    det = OdinDetector(
        net, temperature=best[2], epsilon=best[3], normalization=NORM, batch_size=16
    ).fit(x_id)
    assert res.detector.threshold_ == det.threshold_ == res.record.threshold


def test_noise_strategy_uses_seeded_synthetic_sets():
    x_id = torch.rand(30, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    kw = {"normalization": NORM, "temperatures": [1, 1000], "epsilons": [0.0, 0.002], "seed": 7}
    a = calibrate(make_smooth_net(), x_id, strategy="noise", **kw)
    b = calibrate(make_smooth_net(), x_id, strategy="noise", **kw)
    names = [(s.role, s.name, s.synthetic, s.seed, s.n_images) for s in a.record.sources]
    assert names == [
        ("in_distribution", "in_distribution", False, None, 30),
        ("ood", "gaussian", True, 7, 15),
        ("ood", "uniform", True, 8, 15),
    ]
    assert a.record.sources[1].sha256 == b.record.sources[1].sha256
    from odin_monitor.record import content_sha256

    assert a.record.sources[1].sha256 == content_sha256(gaussian_noise(15, (3, 6, 6), 7))
    assert a.record.sources[2].sha256 == content_sha256(uniform_noise(15, (3, 6, 6), 8))
    assert a.record.strategy == "noise" and a.record.selection.startswith("noise:")
    np.testing.assert_array_equal(a.id_scores, b.id_scores)


def test_without_ood_data_the_jigsaw_rule_chooses_on_shuffled_id_patches():
    from odin_monitor.record import content_sha256
    from odin_monitor.synthetic import jigsaw

    x_id = torch.rand(30, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = {"normalization": NORM, "temperatures": [1, 10, 1000], "epsilons": [0.0, 0.002]}
    res = calibrate(make_smooth_net(), x_id, **kw)
    assert res.record.strategy == "jigsaw"
    (src,) = [s for s in res.record.sources if s.role == "ood"]
    assert (src.name, src.synthetic, src.n_images, src.seed) == ("jigsaw", True, 30, 3)
    pseudo = jigsaw(x_id.numpy(), grid=4, seed=3)
    assert src.sha256 == content_sha256(pseudo)
    # The choice is the grid's best pair against exactly those images.
    from odin_monitor.scoring import grid_scores

    s_out = grid_scores(make_smooth_net(), torch.from_numpy(pseudo), temperatures=[1, 10, 1000],
                        epsilons=[0.0, 0.002], normalization=NORM).numpy()  # fmt: skip
    np.testing.assert_allclose(res.ood_scores, s_out, rtol=0, atol=1e-12)
    with pytest.raises(InputValidationError, match="strategy='ood-validation'"):
        calibrate(make_smooth_net(), x_id, strategy="ood-validation", **kw)
    with pytest.raises(InputValidationError, match="strategy in"):
        calibrate(make_smooth_net(), x_id, strategy="magic", **kw)


def test_self_checks_warn_about_chance_accuracy_grid_edges_and_losing_to_msp():
    g = torch.Generator().manual_seed(4)
    x_id = torch.rand(40, 3, 6, 6, generator=g)
    labels = np.random.default_rng(0).integers(0, 5, 40)  # unrelated labels: chance
    res = calibrate(make_smooth_net(), x_id, torch.rand(30, 3, 6, 6, generator=g),
                    normalization=NORM, temperatures=[1, 10, 1000], epsilons=[0.0, 0.001, 0.002],
                    y_id_val=labels)  # fmt: skip
    acc = float(np.mean(res.detector.reference_.predicted_class == labels))
    assert res.record.metrics["val_accuracy"] == pytest.approx(acc)
    warnings = " | ".join(res.record.warnings)
    assert f"classifies {100 * acc:.1f}% of the validation images" in warnings
    t, e = res.record.temperature, res.record.epsilon
    assert ("T=" in warnings) == (t in (1, 1000))
    assert ("ε=" in warnings) == (e in (0.0, 0.002))
    msp = res.grid.msp.metrics["fpr_at_tpr"]
    assert ("does not beat the MSP" in warnings) == (
        (t, e) != (1.0, 0.0) and res.best.metrics["fpr_at_tpr"] >= msp
    )
    again = type(res.record).from_json(res.record.to_json())
    assert again.warnings == res.record.warnings and again.sha256() == res.record.sha256()


def test_record_metrics_and_round_trip():
    g = torch.Generator().manual_seed(1)
    x_id, x_ood = torch.rand(30, 3, 6, 6, generator=g), torch.rand(20, 3, 6, 6, generator=g)
    res = calibrate(
        make_smooth_net(),
        x_id,
        {"a": x_ood[:10], "b": x_ood[10:]},
        normalization=NORM,
        temperatures=[1, 10],
        epsilons=[0.0, 0.001],
    )
    rec = res.record
    assert [s.name for s in rec.sources[1:]] == ["a", "b"]
    for key in ("fpr_at_tpr", "detection_error", "auroc", "aupr_in", "aupr_out", "msp_fpr_at_tpr"):
        assert 0.0 <= rec.metrics[key] <= 1.0
    assert rec.metrics["fpr_at_tpr"] == res.best.metrics["fpr_at_tpr"]
    assert CalibrationRecord.from_json(rec.to_json()) == rec
    frame = res.grid_frame()
    assert len(frame) == 4 and int(frame["chosen"].sum()) == 1
    assert res.metric_matrix("auroc").shape == (2, 2)


def test_selection_tie_breaks():
    pts = [
        GridPoint(10.0, 0.001, {"fpr_at_tpr": 0.2, "auroc": 0.9}),
        GridPoint(1.0, 0.002, {"fpr_at_tpr": 0.2, "auroc": 0.9}),
        GridPoint(1.0, 0.001, {"fpr_at_tpr": 0.2, "auroc": 0.9}),
        GridPoint(100.0, 0.0, {"fpr_at_tpr": 0.2, "auroc": 0.95}),
    ]
    assert select_best(pts) is pts[3]
    assert select_best(pts[:3]) is pts[2]
    with pytest.raises(CalibrationError):
        select_best([])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"temperatures": []}, "at least one"),
        ({"temperatures": [0.0]}, "> 0"),
        ({"epsilons": [-0.1]}, ">= 0"),
        ({"epsilons": [0.001, 0.001]}, "distinct"),
        ({"tpr_target": 0}, "tpr_target"),
    ],
)
def test_bad_grid(kw, match):
    with pytest.raises(InputValidationError, match=match):
        calibrate(make_smooth_net(), torch.rand(4, 3, 6, 6), normalization=NORM, **kw)


def test_ood_shape_must_match():
    with pytest.raises(InputValidationError, match=r"x_ood_val\['ood_validation'\]"):
        calibrate(
            make_smooth_net(),
            torch.rand(4, 3, 6, 6),
            torch.rand(4, 3, 8, 8),
            normalization=NORM,
            temperatures=[1],
            epsilons=[0.0],
        )


def test_halving_chooses_as_the_full_grid_and_fits_delta_from_the_grid_pass():
    g = torch.Generator().manual_seed(11)
    x_id = torch.rand(300, 3, 6, 6, generator=g) * 0.2 + 0.4
    x_ood = torch.rand(300, 3, 6, 6, generator=g)
    net = make_smooth_net(seed=4)
    # Large ε on this small net spread the pairs' FPRs (about 0.16 to 0.57 on the subset).
    kw = {"normalization": NORM, "batch_size": 64, "temperatures": [1, 10, 100, 1000],
          "epsilons": [0.0, 0.02, 0.05, 0.1, 0.2]}  # fmt: skip
    seen: list[int] = []
    res = calibrate(net, x_id, x_ood, progress=seen.append, search="halving", **kw)
    full = calibrate(net, x_id, x_ood, search="full", **kw)
    assert res.search is not None and res.search.search == "halving"
    assert res.record.search == "halving" and full.record.search == "full"
    assert "successive halving" in res.record.selection
    assert res.chosen == full.chosen
    assert 0 < int(res.grid.finished.sum()) < 20  # the non-contenders were spared
    # No second pass over the ID images: the progress counts each stage's images once.
    assert sum(seen) == 300 + 300 + 75 + 75
    # δ's reference scores are the grid pass's, equal to a fresh pass at the chosen pair.
    t, e = res.chosen
    fresh = odin_scores(net, x_id, temperature=t, epsilon=e, normalization=NORM, batch_size=64)
    ref = res.detector.reference_
    for name in ("odin_score", "spread_score", "msp"):
        np.testing.assert_allclose(
            getattr(ref, name), getattr(fresh, name).numpy(), rtol=0, atol=1e-12
        )
        assert getattr(ref, name).dtype == np.float64
    np.testing.assert_array_equal(ref.predicted_class, fresh.predicted_class.numpy())
    det = OdinDetector(net, temperature=t, epsilon=e, normalization=NORM, batch_size=64).fit(x_id)
    assert res.detector.threshold_ == det.threshold_ == full.detector.threshold_
    assert res.detector.threshold_spread_ == det.threshold_spread_
    # The finished pairs' metrics are the full grid's; the others are NaN, never chosen.
    for p in res.grid.points:
        if np.isnan(p.metrics["fpr_at_tpr"]):
            continue
        assert p.metrics == full.grid.point(p.temperature, p.epsilon).metrics


def test_search_is_an_optional_record_key():
    g = torch.Generator().manual_seed(2)
    res = calibrate(make_smooth_net(), torch.rand(20, 3, 6, 6, generator=g), normalization=NORM,
                    temperatures=[1, 1000], epsilons=[0.0, 0.002], search="halving")  # fmt: skip
    # 20 images are too few to halve (a quarter < 64): searched in full, and said so.
    assert res.record.search == "full" and "full search" in res.record.selection
    assert CalibrationRecord.from_json(res.record.to_json()) == res.record
    old = dataclasses.replace(res.record, search=None)
    assert "search" not in old.to_dict()  # records without it hash as before
    assert CalibrationRecord.from_json(old.to_json()).search is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"search": "random"}, "search in"),
        ({"subset_fraction": 1.5}, "subset_fraction"),
        ({"margin_z": -2}, "margin_z"),
        ({"coarse_gap": 0.0}, "coarse_gap > 0"),
        ({"coarse_gap": float("inf")}, "coarse_gap > 0"),
        ({"estimate_margin": -0.1}, r"estimate_margin in \[0, 1\]"),
        ({"estimate_margin": float("nan")}, r"estimate_margin in \[0, 1\]"),
    ],
)
def test_bad_search_settings(kw, match):
    with pytest.raises(InputValidationError, match=match):
        calibrate(make_smooth_net(), torch.rand(4, 3, 6, 6), normalization=NORM, **kw)
