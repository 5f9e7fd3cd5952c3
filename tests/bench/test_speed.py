"""Speed benchmark: what it reports, recomputed from the timings of a fake clock.

The timed methods are replaced by fakes that advance a fake clock by scripted
durations, so every figure of the report (medians, images/s, ratios to the forward,
targets) can be recomputed by hand from the script; the real methods are checked
against ours elsewhere (the calibration timing here, test_per_image, test_peers).
"""

from __future__ import annotations

import statistics

import pytest
import torch

from odin_monitor.bench import speed
from odin_monitor.bench.speed import methods, timing
from odin_monitor.errors import InputValidationError
from odin_monitor.normalization import Normalization

NORM = Normalization(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))

# Per method: the warm-up call's duration, then one per timed round (seconds).
SCRIPT = {
    speed.FORWARD: [9.0, 0.010, 0.014, 0.012],
    speed.FORWARD_CL: [9.0, 0.011, 0.020, 0.011],
    speed.OURS: [9.0, 0.050, 0.030, 0.040],
    speed.PER_IMAGE: [9.0, 0.5, 0.7, 0.6],
}
BATCH, N_BATCHES, N_PER_IMAGE = 8, 2, 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def faked(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "perf_counter", clock)

    def factory(name):
        durations = iter(SCRIPT[name])

        def make(model, norm, bs, dev, amp):
            def run(x):
                clock.calls.append(name)
                clock.now += next(durations)

            return run

        return make

    for name in SCRIPT:
        monkeypatch.setitem(methods.FACTORIES, name, factory(name))
    result = speed.run_speed(
        synthetic=True,
        batch_sizes=(BATCH,),
        n_batches=N_BATCHES,
        n_per_image=N_PER_IMAGE,
        repeats=3,
        calibration=False,
        memory=False,
        include_peer=False,
        include_compiled=False,
    )
    return result, clock


@pytest.mark.parametrize(("shift", "differ", "far"), [(1e-7, 0, 0), (-2e-6, 1, 0), (-0.1, 2, 1)])
def test_compiled_scorer_is_timed_compared_and_held_to_2x(monkeypatch, shift, differ, far):
    from odin_monitor.bench.speed import compiled_check

    clock = FakeClock()
    monkeypatch.setattr(timing, "perf_counter", clock)
    monkeypatch.setattr(compiled_check, "perf_counter", clock)
    durations = {speed.FORWARD: 0.010, speed.OURS: 0.030, methods.OURS_COMPILED: 0.018}
    n = BATCH * N_BATCHES
    exact = torch.linspace(0.0, 1.0, n, dtype=torch.float64)

    def factory(name):
        def make(model, norm, bs, dev, amp):
            def run(x):
                clock.now += durations[name]
                return exact + shift if name == methods.OURS_COMPILED else exact

            return run

        return make

    for name in durations:
        monkeypatch.setitem(methods.FACTORIES, name, factory(name))
    result = speed.run_speed(
        synthetic=True,
        batch_sizes=(BATCH,),
        n_batches=N_BATCHES,
        repeats=3,
        calibration=False,
        memory=False,
        include_peer=False,
        include_per_image=False,
        include_channels_last=False,
    )
    targets = {t.name: t for t in result.targets}
    compiled = targets[f"{methods.OURS_COMPILED} / forward (time per image)"]
    assert compiled.value == pytest.approx(0.018 / 0.010) and compiled.bound == 2.0
    assert compiled.met
    (note,) = [line for line in result.notes if "compiled scorer" in line]
    assert f"{abs(shift):.2e}" in note
    # δ keeps 95% of the 16 scores: the lowest one is δ; only it can flip for small shifts.
    assert f"differ for {differ} images ({far} farther than 1e-06 from δ" in note


def _per_image(name, pick=statistics.median):
    n = N_PER_IMAGE if name == speed.PER_IMAGE else BATCH * N_BATCHES
    return pick(SCRIPT[name][1:]) / n


def test_methods_are_interleaved_round_by_round_after_one_warm_up(faked):
    _, clock = faked
    order = [speed.FORWARD, speed.FORWARD_CL, speed.OURS, speed.PER_IMAGE]
    assert clock.calls == order * 4


def test_rows_are_the_medians_and_ratios_of_the_recorded_timings(faked):
    result, _ = faked
    rows = {r.method: r for r in result.rows}
    assert list(rows) == list(SCRIPT)
    for name, row in rows.items():
        timed = SCRIPT[name][1:]
        assert row.rounds == pytest.approx(tuple(timed))  # the warm-up is not a round
        assert row.seconds == pytest.approx(statistics.median(timed))
        assert row.n_images == (N_PER_IMAGE if name == speed.PER_IMAGE else BATCH * N_BATCHES)
        assert row.images_per_s == pytest.approx(row.n_images / statistics.median(timed))
        assert row.ratio_to_forward == pytest.approx(_per_image(name) / _per_image(speed.FORWARD))
        assert row.ratio_to_forward_best == pytest.approx(
            _per_image(name, min) / _per_image(speed.FORWARD, min)
        )
    assert rows[speed.OURS].ratio_to_forward == pytest.approx(0.040 / 0.012)


def test_targets_are_read_from_the_recorded_timings(faked):
    result, _ = faked
    targets = {t.name: t for t in result.targets}
    ours_fwd = targets[f"{speed.OURS} / forward (time per image)"]
    assert ours_fwd.value == pytest.approx(0.040 / 0.012) and not ours_fwd.met  # bound 3.3
    ours_cl = targets[f"{speed.OURS} / {speed.FORWARD_CL} (time per image)"]
    assert ours_cl.value == pytest.approx(0.040 / 0.011)
    loop = targets[f"{speed.OURS} throughput / {speed.PER_IMAGE} throughput"]
    assert loop.value == pytest.approx(_per_image(speed.PER_IMAGE) / _per_image(speed.OURS))
    assert loop.value_best == pytest.approx(
        _per_image(speed.PER_IMAGE, min) / _per_image(speed.OURS, min)
    )
    assert loop.bound == 8.0 and loop.met  # 120× on the CPU bound of 8×


def test_markdown_tables_hold_the_result_numbers(faked):
    result, _ = faked
    text = speed.format_markdown(result)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    parsed = {}
    for line in lines[header + 2 : header + 2 + len(result.rows)]:
        row = dict(zip(names, (c.strip() for c in line.strip("|").split("|")), strict=True))
        parsed[row["method"]] = row
    for r in result.rows:
        row = parsed[r.method]
        assert float(row["median s"]) == pytest.approx(r.seconds, abs=5e-5)
        assert float(row["images/s"].replace(",", "")) == pytest.approx(r.images_per_s, abs=0.5)
        assert float(row["× forward (per image)"]) == pytest.approx(r.ratio_to_forward, abs=5e-3)
        assert int(row["images"]) == r.n_images
    targets = [line for line in lines if line.startswith(f"| {speed.OURS} / forward (time")]
    assert len(targets) == 1 and f"| {0.040 / 0.012:.2f} |" in targets[0]
    assert targets[0].endswith("| **no** |")


def test_naive_calibration_loop_chooses_the_same_pair_as_the_grid(smooth_net):
    g = torch.Generator().manual_seed(3)
    x_id = torch.rand(24, 3, 6, 6, generator=g) * 0.5 + 0.25
    x_ood = torch.rand(24, 3, 6, 6, generator=g)
    result = speed.time_calibration(
        smooth_net,
        x_id,
        x_ood,
        depth=0,
        temperatures=(1, 10, 1000),
        epsilons=(0.0, 0.002, 0.004),
        normalization=NORM,
        batch_size=8,
    )
    assert result.n_pairs == 9 and (result.n_id, result.n_ood) == (24, 24)
    assert result.same_choice
    assert result.max_abs_score_diff <= 1e-12
    # 24 images are too few to halve: the halving search ran as the full grid.
    c2f, halving = result.searches
    assert (c2f.search, c2f.ran, halving.search, halving.ran) == (
        "coarse-to-fine", "coarse-to-fine", "halving", "full"
    )  # fmt: skip
    assert c2f.choice == halving.choice == result.naive_choice


def test_searches_are_timed_beside_the_naive_loop_and_choose_alike(smooth_net):
    g = torch.Generator().manual_seed(4)
    x_id = torch.rand(256, 3, 6, 6, generator=g) * 0.2 + 0.4
    x_ood = torch.rand(256, 3, 6, 6, generator=g)
    result = speed.time_calibration(
        smooth_net, x_id, x_ood, depth=0, temperatures=(1, 10, 1000),
        epsilons=(0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2), normalization=NORM, batch_size=128,
        search_runs=2,
    )  # fmt: skip
    c2f, halving = result.searches
    assert (c2f.ran, halving.ran) == ("coarse-to-fine", "halving")
    assert "all 21 pairs on 64 + 64 images" in halving.detail
    assert "coarse-to-fine:" in c2f.detail
    for t in result.searches:
        assert len(t.rounds) == 2 and t.seconds == pytest.approx(statistics.median(t.rounds))
        assert t.choice == result.ours_choice == result.naive_choice
        assert 3 <= t.finished <= 21  # every ε = 0 at least
    assert result.search_ratio == pytest.approx(c2f.seconds / result.naive_seconds)


def test_calibration_report_and_target_read_the_default_search_timing(faked):
    import dataclasses

    from odin_monitor.bench.speed.results import CalibrationTiming, SearchTiming
    from odin_monitor.bench.speed.run import targets

    result, _ = faked
    pair = (1000.0, 0.0014)
    c2f = SearchTiming("coarse-to-fine", False, 14.0, (13.0, 14.0, 15.0), pair, 37,
                       "coarse-to-fine", "coarse-to-fine: 5 of 21 epsilon per T")  # fmt: skip
    halving = SearchTiming("halving", False, 31.0, (30.0, 31.0, 32.0), pair, 150, "halving",
                           "successive halving: all 210 pairs on 64 + 64 images")  # fmt: skip
    calib = CalibrationTiming(
        depth=20, n_id=256, n_ood=256, n_pairs=210, ours_seconds=30.0, naive_seconds=100.0,
        ours_choice=pair, naive_choice=pair, max_abs_score_diff=0.0, searches=(c2f, halving),
    )  # fmt: skip
    checks = targets(result.rows, calib, torch.device("cpu"))
    (check,) = [t for t in checks if t.name.startswith("calibration")]
    assert check.name == "calibration: coarse-to-fine search time / naive loop time"
    assert check.value == pytest.approx(0.14) and check.met
    text = speed.format_markdown(dataclasses.replace(result, calibration=calib, targets=checks))
    rows = [line for line in text.splitlines()
            if line.startswith(("| coarse-to-fine search", "| halving search"))]  # fmt: skip
    assert len(rows) == 2
    assert rows[0].startswith("| coarse-to-fine search (calibrate's default): coarse-to-fine: 5")
    assert rows[0].endswith("| 14.0 | 0.140 | T=1000, ε=0.0014 |")
    assert rows[1].startswith("| halving search: successive halving: all 210 pairs on 64 + 64")
    assert rows[1].endswith("| 31.0 | 0.310 | T=1000, ε=0.0014 |")
    assert "| full grid: grid_scores (one backward per T) | 30.0 | 0.300 |" in text
    assert "Same choice: **True**" in text and "coarse-to-fine 13.0, 14.0, 15.0" in text
    assert "grid on 256 ID + 256 OOD images (random)" in text  # the calibration's inputs
    # A disagreeing search fails the same-choice check.
    other = dataclasses.replace(halving, choice=(1.0, 0.0))
    assert not dataclasses.replace(calib, searches=(c2f, other)).same_choice
    # Without a timed search the full grid stands for calibration.
    bare_checks = targets(result.rows, dataclasses.replace(calib, searches=()), torch.device("cpu"))
    (bare,) = [t for t in bare_checks if t.name.startswith("calibration")]
    assert bare.name == "calibration: grid time / naive loop time" and bare.value == 0.3


def test_channels_last_forward_equals_plain_forward(smooth_net, images):
    cpu = torch.device("cpu")
    plain = methods.FACTORIES[speed.FORWARD](smooth_net.eval(), NORM, 5, cpu, False)(images)
    cl = methods.FACTORIES[speed.FORWARD_CL](smooth_net, NORM, 5, cpu, False)(images)
    torch.testing.assert_close(torch.cat(cl), torch.cat(plain), rtol=0, atol=1e-5)


def test_bad_precision_is_a_clear_error():
    with pytest.raises(InputValidationError, match="precisions"):
        speed.run_speed(synthetic=True, precisions=("fp8",))


def test_bad_calibration_id_set_is_a_clear_error():
    with pytest.raises(InputValidationError, match=r"calib_id among \['jpeg', 'lossless'\].*'png'"):
        speed.run_speed(synthetic=True, calib_id="png")


def test_calibration_id_sets_are_the_named_files(shared_data):
    from odin_monitor.data import load_images

    for id_set, name in (("jpeg", "cifar10_test.npz"), ("lossless", "cifar10_test_lossless.npz")):
        got = methods.inputs(shared_data, 5, 0, id_set)
        assert torch.equal(got, torch.from_numpy(load_images(shared_data / name, limit=5)))
    assert not torch.equal(
        methods.inputs(shared_data, 5, 0), methods.inputs(shared_data, 5, 0, "lossless")
    )
    with pytest.raises(InputValidationError, match="at least 2000 images in cifar10_test_lossless"):
        methods.inputs(shared_data, 2000, 0, "lossless")


def test_cpu_peak_memory_subprocess_reports_a_positive_rise():
    spec = {
        "method": speed.FORWARD,
        "depth": 20,
        "batch_size": 32,
        "amp": False,
        "n_images": 32,
        "data_dir": None,
        "seed": 0,
        "threads": 1,
    }
    peak = timing.cpu_peak_mb_subprocess(spec)
    assert peak is not None and peak > 0


def test_sub_chunk_ab_sets_the_size_only_while_timing() -> None:
    import odin_monitor.compiled as compiled_mod
    from odin_monitor.bench.speed.sub_chunks import _with_sub_chunk

    cpu = torch.device("cpu")
    before = compiled_mod.sub_chunk(cpu, (3, 32, 32))
    seen = _with_sub_chunk(lambda x: compiled_mod.sub_chunk(cpu, tuple(x.shape[1:])), 7)
    assert seen(torch.zeros(1, 3, 32, 32)) == 7
    assert _with_sub_chunk(lambda x: compiled_mod.sub_chunk(cpu, (3, 32, 32)), None)(None) is None
    assert compiled_mod.sub_chunk(cpu, (3, 32, 32)) == before == 64
