"""`odin-monitor demo` end to end, as a newcomer runs it (CPU, offline)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from odin_monitor.cli import main


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["--json", "demo", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)

    # The registered version carries the calibration.
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(summary["tracking_uri"])
    mv = MlflowClient().get_model_version_by_alias("odin-digits", "champion")
    assert str(mv.version) == summary["version"] == "1"
    cal = summary["calibration"]
    assert float(mv.tags["odin.temperature"]) == cal["temperature"]
    assert float(mv.tags["odin.epsilon"]) == cal["epsilon"]
    assert float(mv.tags["odin.threshold"].split()[0]) == pytest.approx(cal["threshold"], 1e-5)
    assert len(mv.tags["odin.calibration_sha256"]) == 64

    # The spike is seen: higher OOD rates on the injected batches, and alerts on them.
    batches = summary["batches"]
    before = [b["ood_rate"] for b in batches if not b["spike"]]
    during = [b["ood_rate"] for b in batches if b["spike"]]
    assert min(during) > max(before)
    assert min(during) > 0.3
    alerted = {bid for a in summary["alerts"] for bid in a["batch_ids"]}
    assert alerted and alerted <= {b["batch_id"] for b in batches if b["spike"]}
    lines = (out / "monitoring" / "alerts.jsonl").read_text().splitlines()
    assert {json.loads(line)["alert_id"] for line in lines} == {
        a["alert_id"] for a in summary["alerts"]
    }

    # The Evidently report of a spike batch holds our OOD-rate widget.
    from odin_monitor.monitoring.evidently_metrics import WIDGET_MARKER

    html = (out / "monitoring" / "reports").rglob(f"{batches[-1]['batch_id']}.html")
    assert WIDGET_MARKER in next(html).read_text(encoding="utf-8")

    # One batch identity: the demo's own hint re-scores a batch, and nothing new is logged.
    from odin_monitor.monitoring import ScoreLog

    log = ScoreLog(out / "monitoring" / "scores.db")
    assert len(log.batch_ids()) == len(batches) == 10
    hint = next(c for c in summary["commands"] if c.startswith("odin-monitor score"))
    again = CliRunner().invoke(main, ["--json", *hint.split()[1:]], catch_exceptions=False)
    assert again.exit_code in (0, 3), again.output
    assert json.loads(again.stdout)["duplicate"] is True
    assert len(log.batch_ids()) == 10
    assert (out / "monitoring" / "workspace").is_dir()
    for name in ("grid.png", "roc.png", "histograms.png", "grid.csv", "record.json"):
        assert (out / "calibration" / name).is_file()


def test_demo_on_real_cifar10(tmp_path, shared_data):
    out = tmp_path / "demo-cifar"
    res = CliRunner().invoke(
        main,
        [
            "--json",
            "demo",
            "--out",
            str(out),
            "--dataset",
            "cifar10",
            "--data-dir",
            str(shared_data),
            "--weights",
            str(shared_data / "cifar10_resnet20.pt"),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["registered_model"] == "odin-cifar10"
    assert "Tiny ImageNet" in summary["spike_source"]
    spike = [b["ood_rate"] for b in summary["batches"] if b["spike"]]
    calm = [b["ood_rate"] for b in summary["batches"] if not b["spike"]]
    assert min(spike) > max(calm) and summary["alerts"]


def test_demo_refuses_cifar10_without_weights(tmp_path, shared_data):
    res = CliRunner().invoke(
        main,
        [
            "demo",
            "--out",
            str(tmp_path / "d"),
            "--dataset",
            "cifar10",
            "--data-dir",
            str(shared_data),
        ],
    )
    assert res.exit_code == 2 and "--weights" in res.output
