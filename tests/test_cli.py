"""The command line through click's runner, on small real data and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from odin_monitor.cli import main
from tests.helpers import make_smooth_net

FACTORY = "tests.helpers:make_smooth_net"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    torch.save(make_smooth_net(seed=3).state_dict(), root / "weights.pt")
    rng = np.random.default_rng(0)
    # In-distribution: smooth blobs; OOD: pixel noise. uint8 NHWC like real datasets.
    yy, xx = np.mgrid[0:6, 0:6]
    blobs = []
    for _ in range(120):
        cy, cx = rng.uniform(1, 5, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
        blobs.append(np.stack([blob * rng.uniform(0.5, 1)] * 3, -1))
    np.savez(root / "id.npz", images=(np.array(blobs) * 255).astype(np.uint8))
    np.savez(root / "ood.npz", images=rng.integers(0, 256, (60, 6, 6, 3), dtype=np.uint8))
    return root


def invoke(args, env=None):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def run_calibrate(id_val, out, *extra, model=FACTORY, flags=()):
    """`calibrate` with raw pixels; errors caught as a user would see them."""
    args = [*flags, "calibrate", "--model", model, "--id-val", str(id_val)]
    args += ["--normalization", "none", "--out", str(out), *extra]
    return CliRunner().invoke(main, args)


@pytest.fixture(scope="module")
def calibrated(workdir) -> Path:
    out = workdir / "calib"
    res = invoke(
        [
            "--quiet",
            "calibrate",
            "--model",
            FACTORY,
            "--weights",
            str(workdir / "weights.pt"),
            "--id-val",
            str(workdir / "id.npz"),
            "--ood-val",
            f"noise={workdir / 'ood.npz'}",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--temperatures",
            "1,1000",
            "--epsilons",
            "0,0.002",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert res.exit_code == 0, res.output
    return out


def test_calibrate_writes_detector_grid_and_record(calibrated):
    from odin_monitor import CalibrationRecord

    for name in (
        "record.json",
        "grid.csv",
        "grid.png",
        "roc.png",
        "histograms.png",
        "model/MLmodel",
    ):
        assert (calibrated / name).is_file(), name
    rec = CalibrationRecord.from_json((calibrated / "record.json").read_text())
    assert rec.normalization is not None and rec.normalization.std == (0.25, 0.25, 0.25)
    assert [s.name for s in rec.sources] == [str(calibrated.parent / "id.npz"), "noise"]
    import pandas as pd

    grid = pd.read_csv(calibrated / "grid.csv")
    assert len(grid) == 4 and grid["chosen"].sum() == 1
    best = grid[grid["chosen"]].iloc[0]
    assert (best["temperature"], best["epsilon"]) == (rec.temperature, rec.epsilon)


def test_calibrate_json_output(workdir):
    res = invoke(
        [
            "--json",
            "calibrate",
            "--model",
            FACTORY,
            "--id-val",
            str(workdir / "id.npz"),
            "--normalization",
            "none",
            "--temperatures",
            "1",
            "--epsilons",
            "0",
            "--out",
            str(workdir / "calib-json"),
            "--device",
            "cpu",
        ]
    )
    assert res.exit_code == 0
    payload = json.loads(res.stdout)
    assert payload["record"]["temperature"] == 1.0
    assert payload["record"]["sources"][1]["synthetic"] is True


def test_normalisation_must_be_explicit(workdir):
    res = CliRunner().invoke(
        main,
        [
            "calibrate",
            "--model",
            FACTORY,
            "--id-val",
            str(workdir / "id.npz"),
            "--out",
            "x",
        ],
    )
    assert res.exit_code == 2
    assert "normalisation must be explicit" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperatures", "1,abc"], "comma-separated numbers"),
        (["--epsilons", "-1"], ">= 0"),
        (["--image-size", "big"], "HxW"),
    ],
)
def test_bad_arguments_get_one_clear_line(workdir, tmp_path, args, message):
    res = run_calibrate(workdir / "id.npz", tmp_path / "o", *args)
    assert res.exit_code in (1, 2)
    assert message in res.output
    assert "Traceback" not in res.output


def test_bad_input_files(workdir, tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    res = run_calibrate(workdir / "id.npz", tmp_path / "o", "--weights", str(tmp_path / "evil.pt"))
    assert res.exit_code == 1
    assert "weights_only=True" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()

    (tmp_path / "notes.txt").write_text("hello")
    res = run_calibrate(tmp_path / "notes.txt", tmp_path / "o")
    assert res.exit_code == 1 and ".npz or .npy" in res.output

    res = run_calibrate(workdir / "id.npz", tmp_path / "o", model="no.such.module:f")
    assert res.exit_code == 1 and "Cannot import 'no.such.module'" in res.output
    res = run_calibrate(
        workdir / "id.npz", tmp_path / "o", model="no.such.module:f", flags=["--debug"]
    )
    assert res.exit_code == 1 and res.exc_info is not None  # --debug keeps the traceback


def test_log_register_score_report_monitor(calibrated, workdir, tmp_path):
    from mlflow import MlflowClient

    from odin_monitor.monitoring import ScoreLog

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    res = invoke(
        ["--json", "log", str(calibrated), "--register", "odin-cli", "--alias", "champion"], env
    )
    assert res.exit_code == 0, res.output
    logged = json.loads(res.stdout)
    assert logged["version"] == 1
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mv = MlflowClient().get_model_version_by_alias("odin-cli", "champion")
    rec = json.loads((calibrated / "record.json").read_text())
    assert float(mv.tags["odin.temperature"]) == rec["temperature"]
    assert float(mv.tags["odin.threshold"].split()[0]) == pytest.approx(rec["threshold"], 1e-5)
    # Every figure and table once, beside the record, under odin/<model name>/.
    client = MlflowClient()

    def files(path: str = "") -> list[str]:
        out = []
        for item in client.list_artifacts(logged["run_id"], path):
            out += files(item.path) if item.is_dir else [item.path]
        return out

    outside_model = [f for f in files() if not f.startswith("odin_detector/")]
    assert sorted(outside_model) == [
        "odin/odin_detector/calibration_record.json",
        "odin/odin_detector/grid.csv",
        "odin/odin_detector/grid.png",
        "odin/odin_detector/histograms.png",
        "odin/odin_detector/roc.png",
    ]

    monitor_dir = tmp_path / "mon"
    uri = "models:/odin-cli@champion"
    batch = workdir / "id.npz"
    res = invoke(
        ["--json", "score", str(batch), "--model-uri", uri, "--monitor-dir", str(monitor_dir)], env
    )
    first = json.loads(res.stdout)
    assert first["n_images"] == 120 and first["exit_code"] == res.exit_code
    # A JSON snapshot for every batch; the standalone HTML page only for one that alerts.
    stored = ScoreLog(monitor_dir / "scores.db").get_report(first["batch_id"])
    assert Path(stored["json_path"]).is_file()
    assert bool(first["alerts"]) == (first["html_report"] is not None) == (res.exit_code == 3)
    if first["html_report"] is not None:
        assert Path(first["html_report"]).is_file()
    res = invoke(
        ["--json", "score", str(batch), "--model-uri", uri, "--monitor-dir", str(monitor_dir)], env
    )
    assert json.loads(res.stdout)["duplicate"] is True
    assert len(ScoreLog(monitor_dir / "scores.db").batch_ids()) == 1

    # The same answer as scoring in-process with the registered detector.
    import mlflow_plugin
    from odin_monitor.data import load_images

    det = mlflow_plugin.load_model(uri)
    expected = det.predict(load_images(batch)).mean()
    assert first["ood_rate"] == pytest.approx(expected)

    res = invoke(["--json", "report", "--monitor-dir", str(monitor_dir)], env)
    assert res.exit_code == 0 and Path(json.loads(res.stdout)["html"]).is_file()

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    np.savez(inbox / "a.npz", images=np.load(workdir / "ood.npz")["images"])
    np.save(inbox / "broken.npy", np.full((2, 3, 6, 6), np.nan, dtype=np.float32))
    res = invoke(
        [
            "--json",
            "monitor",
            "--inbox",
            str(inbox),
            "--model-uri",
            uri,
            "--monitor-dir",
            str(monitor_dir),
            "--once",
        ],
        env,
    )
    assert res.exit_code == 3, res.output  # the noise batch fires an alert
    assert (monitor_dir / "quarantine").is_dir() and not (inbox / "broken.npy").exists()
    n = len(ScoreLog(monitor_dir / "scores.db").batch_ids())
    res = invoke(
        [
            "monitor",
            "--inbox",
            str(inbox),
            "--model-uri",
            uri,
            "--monitor-dir",
            str(monitor_dir),
            "--once",
        ],
        env,
    )
    assert len(ScoreLog(monitor_dir / "scores.db").batch_ids()) == n  # nothing scored twice
    assert (monitor_dir / "alerts.jsonl").read_text().count("\n") >= 1


def test_score_rejects_unknown_batch_kind(calibrated, tmp_path):
    (tmp_path / "batch.txt").write_text("x")
    res = CliRunner().invoke(
        main,
        [
            "score",
            str(tmp_path / "batch.txt"),
            "--model-uri",
            str(calibrated / "model"),
            "--monitor-dir",
            str(tmp_path / "m"),
        ],
    )
    assert res.exit_code == 2 and "expected a folder of images" in res.output


def test_every_command_help_shows_an_example():
    for cmd in ["calibrate", "log", "register", "score", "report", "monitor", "demo", "bench"]:
        res = CliRunner().invoke(main, [cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.output, cmd


def test_bench_subcommands_route_to_the_benchmarks(capsys):
    for sub in ["quality", "speed", "serve"]:
        res = CliRunner().invoke(main, ["bench", sub, "--help"])
        assert res.exit_code == 0
        assert f"usage: odin-monitor bench {sub}" in res.output and "example:" in res.output
    res = CliRunner().invoke(main, ["bench", "speed", "--precisions", "fp64"])
    assert res.exit_code == 2 and "invalid choice" in res.output


def test_monitor_skips_strays_hashes_folders_and_resolves_latest(calibrated, workdir, tmp_path):
    from PIL import Image

    from odin_monitor.monitoring import ScoreLog

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    assert invoke(["-q", "log", str(calibrated), "--register", "odin-latest"], env).exit_code == 0
    inbox, monitor_dir = tmp_path / "inbox", tmp_path / "mon"
    inbox.mkdir()
    (inbox / "notes.txt").write_text("not a batch")
    (inbox / "half.npz.part").write_bytes(b"still being written")
    folder = inbox / "day1"
    folder.mkdir()
    raw = np.load(workdir / "id.npz")["images"]
    for i in range(3):
        Image.fromarray(raw[i]).save(folder / f"{i}.png")
    args = [
        "monitor",
        "--inbox",
        str(inbox),
        "--model-uri",
        "models:/odin-latest/latest",
        "--monitor-dir",
        str(monitor_dir),
        "--once",
    ]
    res = CliRunner().invoke(main, args, env=env)
    assert res.exit_code in (0, 3), res.output
    assert "skipping notes.txt" in res.output
    log = ScoreLog(monitor_dir / "scores.db")
    assert len(log.batch_ids()) == 1 and log.get_batch(log.batch_ids()[0]).n_images == 3
    assert (inbox / "notes.txt").exists() and (inbox / "half.npz.part").exists()
    # New images in the same folder make a new batch; nothing new, nothing scored.
    Image.fromarray(raw[3]).save(folder / "3.png")
    CliRunner().invoke(main, args, env=env)
    CliRunner().invoke(main, args, env=env)
    ids = log.batch_ids()
    assert len(ids) == 2 and log.get_batch(ids[1]).n_images == 4
    assert log.get_batch(ids[1]).model.version == "1"


# ------------------------------------------------------ nothing lost, nothing blocked (CLI)
def _monitor_args(inbox: Path, model_dir: Path, monitor_dir: Path) -> list[str]:
    return [
        "monitor",
        "--inbox",
        str(inbox),
        "--model-uri",
        str(model_dir),
        "--monitor-dir",
        str(monitor_dir),
        "--once",
    ]


def test_score_refuses_a_reused_batch_id_with_other_content(calibrated, workdir, tmp_path):
    import pandas as pd

    from odin_monitor.monitoring import ScoreLog

    mon = tmp_path / "mon"
    base = ["--json", "score", "--model-uri", str(calibrated / "model"), "--monitor-dir", str(mon)]
    first = CliRunner().invoke(main, [*base, "--batch-id", "daily-X", str(workdir / "id.npz")])
    assert first.exit_code in (0, 3), first.output
    spike = tmp_path / "spike.csv"
    pd.DataFrame({"odin_score": np.full(50, 0.2)}).to_csv(spike, index=False)  # = 1/K: OOD
    res = CliRunner().invoke(main, [*base, "--batch-id", "daily-X", str(spike)])
    # Before: exit 0 and the spike silently dropped as a "duplicate".
    assert res.exit_code == 1, res.output
    assert "different content" in res.output and "new --batch-id" in res.output
    assert "Traceback" not in res.output
    log = ScoreLog(mon / "scores.db")
    assert log.batch_ids() == ["daily-X"] and log.get_batch("daily-X").n_images == 120
    again = CliRunner().invoke(main, [*base, "--batch-id", "daily-X", str(workdir / "id.npz")])
    assert json.loads(again.stdout)["duplicate"] is True


def test_monitor_revisits_a_known_batch_whose_alerts_or_report_are_missing(
    calibrated, workdir, tmp_path
):
    import sqlite3

    from odin_monitor.monitoring import ScoreLog

    inbox, mon = tmp_path / "inbox", tmp_path / "mon"
    inbox.mkdir()
    np.savez(inbox / "noise.npz", images=np.load(workdir / "ood.npz")["images"])
    args = _monitor_args(inbox, calibrated / "model", mon)
    assert CliRunner().invoke(main, args).exit_code == 3  # the noise batch fires an alert
    log = ScoreLog(mon / "scores.db")
    (bid,) = log.batch_ids()
    html = Path(log.get_report(bid)["html_path"])
    # What a kill -9 after the commit left with earlier versions: batch committed, its
    # alerts never stored, no report.
    con = sqlite3.connect(mon / "scores.db")
    con.execute("UPDATE batches SET rules_checked_at = NULL")
    con.execute("DELETE FROM outbox")
    con.execute("DELETE FROM alerts")
    con.commit()
    con.close()
    html.unlink()
    (mon / "alerts.jsonl").unlink()
    res = CliRunner().invoke(main, args)
    # Before: the known batch id was skipped, exit 0, the alert never fired.
    assert res.exit_code == 3, res.output
    sent = (mon / "alerts.jsonl").read_text()
    assert {r.rule for r in map(_alert, sent.splitlines())} == {"binomial_spike", "cusum"}
    assert {r.batch_ids for r in map(_alert, sent.splitlines())} == {(bid,)}
    assert html.is_file() and log.batch_ids() == [bid]
    res = CliRunner().invoke(main, args)  # complete now: skipped, nothing sent twice
    assert res.exit_code == 0 and (mon / "alerts.jsonl").read_text() == sent


def test_monitor_quarantine_rows_carry_paths_and_vanished_batches_are_skipped(
    calibrated, tmp_path, monkeypatch
):
    from odin_monitor.monitoring import ScoreLog
    from odin_monitor.monitoring import inbox as inbox_mod

    inbox, mon = tmp_path / "inbox", tmp_path / "mon"
    inbox.mkdir()
    np.save(inbox / "broken.npy", np.full((2, 3, 6, 6), np.nan, dtype=np.float32))
    (inbox / "torn.npz").write_bytes(b"PK not really a zip")
    real = inbox_mod.batch_candidates

    def listed_then_moved(folder):  # another monitor moved these between listing and reading
        return [*real(folder), folder / "gone.npz", folder / "gone-folder"]

    monkeypatch.setattr(inbox_mod, "batch_candidates", listed_then_moved)
    res = CliRunner().invoke(main, _monitor_args(inbox, calibrated / "model", mon))
    assert res.exit_code == 4, res.output
    assert "skipping gone.npz" in res.output and "skipping gone-folder" in res.output
    rows = ScoreLog(mon / "scores.db").quarantined()
    assert sorted(Path(r["source_path"]).name for r in rows) == ["broken.npy", "torn.npz"]
    for row in rows:  # both paths recorded; the batch is where the row says
        assert Path(row["quarantined_path"]).is_file()
        assert Path(row["quarantined_path"]).parent == mon / "quarantine"
        assert not Path(row["source_path"]).exists()


def test_a_second_monitor_on_the_same_inbox_waits_its_turn(calibrated, workdir, tmp_path):
    from odin_monitor.monitoring.inbox import inbox_lock

    inbox, mon = tmp_path / "inbox", tmp_path / "mon"
    inbox.mkdir()
    np.savez(inbox / "a.npz", images=np.load(workdir / "id.npz")["images"][:10])
    with inbox_lock(inbox) as mine:
        assert mine
        with inbox_lock(inbox) as other:
            assert not other  # flock: exclusive even within one process (new open file)
        res = CliRunner().invoke(main, _monitor_args(inbox, calibrated / "model", mon))
        assert res.exit_code == 0 and "another monitor is scanning" in res.output
        assert not (mon / "scores.db").exists() or not _ids(mon)
    res = CliRunner().invoke(main, _monitor_args(inbox, calibrated / "model", mon))
    assert res.exit_code in (0, 3) and len(_ids(mon)) == 1


def _alert(line: str):
    from odin_monitor.monitoring import Alert

    return Alert.from_dict(json.loads(line))


def _ids(mon: Path) -> list[str]:
    from odin_monitor.monitoring import ScoreLog

    return ScoreLog(mon / "scores.db").batch_ids()


def test_folders_are_decoded_and_resized_by_the_spec_stored_in_the_record(tmp_path):
    from PIL import Image

    from odin_monitor.data import load_folder
    from odin_monitor.record import CalibrationRecord

    torch.save(make_smooth_net(seed=3).state_dict(), tmp_path / "w.pt")
    rng = np.random.default_rng(5)
    id_dir, batch = tmp_path / "id", tmp_path / "batch"
    id_dir.mkdir()
    batch.mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), np.uint8)).save(id_dir / f"{i}.png")
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 9, 3), np.uint8)).save(batch / f"{i}.png")
    args = ["--model", FACTORY, "--weights", str(tmp_path / "w.pt"), "--id-val", str(id_dir)]
    args += ["--normalization", "none", "--image-size", "6x6", "--interpolation", "bicubic"]
    args += ["--temperatures", "1,10", "--epsilons", "0,0.001", "--out", str(tmp_path / "c")]
    res = CliRunner().invoke(main, ["calibrate", *args])
    assert res.exit_code == 0, res.output
    assert "resized 40 of 40 images" in res.stderr and "to 6x6 (from 10x10: 40)" in res.stderr
    assert "preprocessing of image files: RGB, exact resize to 6x6 (bicubic" in res.stdout
    record = CalibrationRecord.from_json((tmp_path / "c" / "record.json").read_text())
    assert record.preprocessing is not None and record.preprocessing.interpolation == "bicubic"

    # score: the batch folder goes through the same spec as the record's (and says so).
    mon = tmp_path / "mon"
    model_dir = str(tmp_path / "c" / "model")
    res = CliRunner().invoke(
        main, ["score", str(batch), "--model-uri", model_dir, "--monitor-dir", str(mon)]
    )
    assert res.exit_code in (0, 3), res.output
    assert "resized 6 of 6 images" in res.stderr and "(from 12x9: 6)" in res.stderr
    from odin_monitor.monitoring import ScoreLog

    logged = ScoreLog(mon / "scores.db")
    (bid,) = logged.batch_ids()
    import mlflow_plugin

    det = mlflow_plugin.load_model(model_dir, device="cpu")
    want = det.score_samples(load_folder(batch, preprocessing=record.preprocessing))
    np.testing.assert_allclose(logged.read_scores(bid)["odin_score"], want, rtol=0, atol=1e-9)


def test_a_shipped_factory_brings_its_own_normalisation(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "digits.npz", images=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8))
    res = CliRunner().invoke(
        main,
        ["calibrate", "--model", "odin_monitor.models:small_cnn_digits", "--id-val",
         str(tmp_path / "digits.npz"), "--temperatures", "1", "--epsilons", "0",
         "--out", str(tmp_path / "c")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "normalisation from the model factory: none (raw pixels)" in res.stderr
    assert "preprocessing of image files: L, exact resize to 8x8" in res.stdout


def test_calibrate_names_its_rule_and_prints_its_checks(workdir, tmp_path):
    labels = np.random.default_rng(1).integers(0, 5, 120)  # unrelated labels: near chance
    x = np.load(workdir / "id.npz")["images"]
    np.savez(tmp_path / "id.npz", images=x, labels=labels)
    res = run_calibrate(tmp_path / "id.npz", tmp_path / "c", "--temperatures", "1,10,1000",
                        "--epsilons", "0,0.001,0.002", flags=())  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "chosen by jigsaw" in res.stdout and "vs MSP" in res.stdout
    assert "classifier accuracy on the validation images" in res.stdout
    assert "warning: the classifier classifies" in res.stderr
    res = run_calibrate(tmp_path / "id.npz", tmp_path / "n", "--strategy", "noise",
                        "--temperatures", "1,10", "--epsilons", "0,0.001")  # fmt: skip
    assert res.exit_code == 0 and "chosen by noise" in res.stdout
    res = run_calibrate(tmp_path / "id.npz", tmp_path / "x", "--strategy", "noise",
                        "--ood-val", str(workdir / "ood.npz"))  # fmt: skip
    assert res.exit_code == 2 and "--strategy chooses without OOD data" in res.output


# --- the grid search's flags ------------------------------------------------------------

# 120 blobs against 120 noise images: subsets of ceil(0.6 · 120) = 72 >= 64, so halving
# halves; a margin of 0.5 SE finishes 6 of the 18 pairs (4 SE would finish all).
SEARCH_EPSILONS = (0.0, 0.001, 0.002, 0.004, 0.01, 0.03)


@pytest.mark.parametrize(
    ("search", "images_scored"),
    [("full", 240), ("halving", 240 + 144), ("coarse-to-fine", 240)],  # all 6 ε are coarse
)
def test_search_flags_choose_as_calibrate_does(
    workdir, tmp_path, monkeypatch, search, images_scored
):
    import contextlib

    import odin_monitor.cli.calibrate_cmd as calibrate_cmd
    from odin_monitor import calibrate

    noise = np.random.default_rng(1).integers(0, 256, (120, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", images=noise)
    bars = []

    @contextlib.contextmanager
    def counting_progress(total, label):
        done = []
        bars.append((total, done))
        yield done.append

    monkeypatch.setattr(calibrate_cmd, "progress", counting_progress)
    res = run_calibrate(workdir / "id.npz", tmp_path / "c", "--search", search,
                        "--subset-fraction", "0.6", "--margin-z", "0.5",
                        "--weights", str(workdir / "weights.pt"),
                        "--ood-val", f"noise={tmp_path / 'noise.npz'}",
                        "--temperatures", "1,10,1000",
                        "--epsilons", ",".join(map(str, SEARCH_EPSILONS)),
                        "--device", "cpu")  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "c" / "record.json").read_text())

    net = make_smooth_net()
    net.load_state_dict(torch.load(workdir / "weights.pt", weights_only=True))

    def pixels(images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255

    direct = calibrate(net.eval(), pixels(np.load(workdir / "id.npz")["images"]),
                       pixels(noise), normalization=None, temperatures=[1, 10, 1000],
                       epsilons=SEARCH_EPSILONS, search=search, subset_fraction=0.6,
                       margin_z=0.5, device="cpu")  # fmt: skip
    assert direct.chosen != (1.0, 0.0)  # not merely the tie-break's first pair
    assert (rec["temperature"], rec["epsilon"]) == direct.chosen
    assert rec["threshold"] == pytest.approx(direct.record.threshold, abs=1e-6)
    assert rec["search"] == direct.record.search == search
    finished = int(direct.search.finished.sum())
    if search == "halving":
        assert finished < 18  # --margin-z reached the search: 4 SE would finish all 18
        assert f"halving search: {finished} of 18 pairs finished on every image" in res.stdout
    elif search == "coarse-to-fine":
        # No two of the ε lie within 0.001 of a third: all coarse, all finished, one pass.
        assert finished == 18
        assert "coarse-to-fine search: 18 of 18 pairs finished on every image" in res.stdout
    else:
        assert finished == 18 and "full search;" in res.stdout
    # The bar's total is what the search scored: each set once, the subsets twice.
    [(total, done)] = bars
    assert total == sum(done) == images_scored


def test_halving_on_sets_too_small_says_it_ran_in_full(workdir, tmp_path):
    res = run_calibrate(workdir / "id.npz", tmp_path / "c", "--temperatures", "1,10",
                        "--epsilons", "0,0.002", "--device", "cpu",
                        "--search", "halving")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "full search (the sets are too small to halve)" in res.stdout
    assert json.loads((tmp_path / "c" / "record.json").read_text())["search"] == "full"


@pytest.mark.parametrize(
    ("args", "flag", "expected", "got"),
    [
        (["--subset-fraction", "1.5"], "--subset-fraction", "in (0, 1)", "1.5"),
        (["--subset-fraction", "nan"], "--subset-fraction", "in (0, 1)", "nan"),
        (["--margin-z", "-1"], "--margin-z", ">= 0", "-1"),
        (["--search", "foo"], "--search", "'halving', 'full'", "'foo'"),
    ],
)
def test_bad_search_flags_are_usage_errors(workdir, tmp_path, args, flag, expected, got):
    res = run_calibrate(workdir / "id.npz", tmp_path / "o", *args)
    assert res.exit_code == 2, res.output
    assert f"Invalid value for '{flag}'" in res.output
    assert expected in res.output and got in res.output
    assert "Traceback" not in res.output and not (tmp_path / "o").exists()


def test_calibrate_help_states_the_search_defaults():
    from odin_monitor.search import DEFAULT_MARGIN_Z, DEFAULT_SUBSET_FRACTION, SEARCHES

    text = " ".join(invoke(["calibrate", "--help"]).output.split())
    assert f"--search [{'|'.join(SEARCHES)}]" in text and "[default: coarse-to-fine]" in text
    assert f"(default {DEFAULT_SUBSET_FRACTION:g})" in text
    assert f"(default {DEFAULT_MARGIN_Z:g})" in text
