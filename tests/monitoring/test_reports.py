from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from evidently import Report
from scipy import stats

from odin_monitor.errors import OdinError
from odin_monitor.monitoring.errors import ReportWriteError
from odin_monitor.monitoring.evidently_metrics import (
    WIDGET_MARKER,
    OdinOODRate,
    OdinOODRateByClass,
)
from odin_monitor.monitoring.reports import (
    build_report,
    drift_method_for,
    report_paths,
    save_report,
)
from tests.monitoring.helpers import make_scores


def _metric(snapshot, type_suffix):
    for result in snapshot.metric_results.values():
        if result.metric_value_location.metric.params["type"].endswith(type_suffix):
            return result
    raise AssertionError(type_suffix)


@pytest.fixture(scope="module")
def batch():
    from tests.monitoring.helpers import make_model

    model = make_model()
    return model, make_scores(300, 0.12, model, seed=5), make_scores(500, 0.05, model, seed=6)


def test_ood_rate_metric_equals_direct_count(batch):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, alpha=0.01, batch_id="b1")
    rate = _metric(snap, ":OdinOODRate")
    assert rate.value == cur["is_ood"].sum() / len(cur)
    by_class = _metric(snap, ":OdinOODRateByClass")
    direct = cur.groupby("predicted_class")["is_ood"].mean()
    assert {int(k): v.value for k, v in by_class.values.items()} == pytest.approx(direct.to_dict())


def test_binomial_test_in_report_matches_scipy(batch):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, alpha=0.01)
    (test,) = _metric(snap, ":OdinOODRate").tests
    x, n = int(cur["is_ood"].sum()), len(cur)
    p = stats.binomtest(x, n, 0.05, alternative="greater").pvalue
    assert test.test_config["p_value"] == pytest.approx(p)
    assert test.status.value == ("FAIL" if p <= 0.01 else "SUCCESS")
    assert test.status.value == "FAIL"  # 12% vs 5% on 300 images


def test_in_distribution_batch_passes(batch):
    model, _, ref = batch
    snap = build_report(make_scores(200, 0.05, model, seed=8), ref, model)
    assert _metric(snap, ":OdinOODRate").tests[0].status.value == "SUCCESS"


def test_drift_method_is_explicit_by_batch_size(batch):
    model, cur, ref = batch
    assert drift_method_for(1000) == "ks" and drift_method_for(1001) == "wasserstein"
    snap = build_report(cur, ref, model)
    drift = _metric(snap, ":ValueDrift")
    assert drift.metric_value_location.metric.params["method"] == "ks"
    big = make_scores(1200, 0.05, model, seed=2)
    snap = build_report(big, ref, model)
    assert (
        _metric(snap, ":ValueDrift").metric_value_location.metric.params["method"] == "wasserstein"
    )


def test_html_contains_widget_and_json_reloads_in_fresh_process(batch, tmp_path):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, batch_id="b/1")
    html, js = save_report(snap, tmp_path, model, "b/1")
    text = html.read_text(encoding="utf-8")
    assert WIDGET_MARKER in text and "OOD rate by predicted class" in text
    # reload with Evidently only: our package is never imported in that process
    code = (
        "import json, sys; from evidently.core.report import Snapshot;"
        f"s = Snapshot.load({str(js)!r});"
        "assert 'odin_monitor' not in sys.modules;"
        "print(json.dumps(s.dict()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reloaded = json.loads(out.stdout)
    names = [m["metric_name"] for m in reloaded["metrics"]]
    assert any(n.startswith("OdinOODRate(") for n in names)
    assert any(t["id"] == "odin_ood_rate_binomial" for t in reloaded["tests"])


def test_metrics_usable_directly_in_a_report(batch):
    _, cur, _ = batch
    from evidently import DataDefinition, Dataset

    dd = DataDefinition(numerical_columns=["spread_score"], categorical_columns=["is_ood"])
    snap = Report([OdinOODRate(expected_rate=0.05), OdinOODRateByClass()]).run(
        Dataset.from_pandas(cur, data_definition=dd), None
    )
    assert _metric(snap, ":OdinOODRate").tests == []  # include_tests=False


# --- Reports are written atomically (issue 9): a full disk leaves no truncated file.


@pytest.fixture
def file_size_limit():
    """Make writes past ``n`` bytes of any file fail for real (EFBIG), then restore."""
    import resource
    import signal

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(n: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, old_limit[1]))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_report_cut_short_by_the_disk_leaves_no_truncated_file(batch, tmp_path, file_size_limit):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, batch_id="b1")
    html_path, json_path = report_paths(tmp_path, model, "b1")
    html_path.parent.mkdir(parents=True)
    json_path.write_bytes(b'{"previous": "complete"}')
    file_size_limit(len(snap.get_html_str(as_iframe=False)) // 2)
    with pytest.raises(ReportWriteError, match=r"b1\.html.*File too large.*EFBIG"):
        save_report(snap, tmp_path, model, "b1")
    file_size_limit(-1)
    assert not html_path.exists()  # never written: absent, not half a page
    assert json_path.read_bytes() == b'{"previous": "complete"}'
    assert _leftovers(html_path.parent) == []
    # Once there is room again the report is written whole and reloads.
    html, js = save_report(snap, tmp_path, model, "b1")
    assert html.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert json.loads(js.read_text(encoding="utf-8"))["metadata"]["batch_id"] == "b1"
    assert _leftovers(html.parent) == []


def test_enospc_mid_write_keeps_the_previous_report(batch, tmp_path, monkeypatch):
    import errno

    from odin_monitor.monitoring import reports

    model, cur, ref = batch
    snap = build_report(cur, ref, model, batch_id="b2")
    html, js = save_report(snap, tmp_path, model, "b2")
    before = html.read_bytes(), js.read_bytes()

    def half_then_full(fd, data):
        os.write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(reports, "_write_all", half_then_full)
    with pytest.raises(ReportWriteError, match=r"No space left.*ENOSPC.*free some disk") as info:
        save_report(snap, tmp_path, model, "b2")
    assert isinstance(info.value, OSError) and isinstance(info.value, OdinError)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(html)
    assert (html.read_bytes(), js.read_bytes()) == before
    assert _leftovers(html.parent) == []


def test_unwritable_report_folder_is_a_report_write_error(batch, tmp_path):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, batch_id="b3")
    (tmp_path / "reports").write_text("a file where the folder should be")
    with pytest.raises(ReportWriteError, match=r"create the report folder.*reports"):
        save_report(snap, tmp_path / "reports", model, "b3")
