from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
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
    PANEL_TITLE,
    build_report,
    dashboard_panels,
    describe_project,
    drift_method_for,
    report_paths,
    save_report,
    upgraded_dashboard,
)
from tests.monitoring import helpers
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


# --- Evidently views (issue 14): the test as values, the batch size, δ named in both units.


def _critical_count(n: int, p0: float, alpha: float) -> int:
    """Smallest c with P(X >= c) <= alpha, X ~ Bin(n, p0), by scanning scipy's survival."""
    return next(c for c in range(n + 2) if stats.binom.sf(c - 1, n, p0) <= alpha)


@pytest.mark.parametrize(("rate", "seed"), [(0.12, 5), (0.05, 8)])
def test_binomial_test_values_match_scipy_and_the_report_test(batch, rate, seed):
    model, _, ref = batch
    cur = make_scores(300, rate, model, seed=seed)
    snap = build_report(cur, ref, model, alpha=0.01)
    values = {k: v.value for k, v in _metric(snap, ":OdinBinomialTest").values.items()}
    x, n = int(cur["is_ood"].sum()), len(cur)
    p = stats.binomtest(x, n, 0.05, alternative="greater").pvalue
    failed = p <= 0.01
    assert values["expected_rate"] == pytest.approx(1 - model.tpr_target)
    assert values["critical_rate"] == pytest.approx(_critical_count(n, 0.05, 0.01) / n)
    assert values["p_value"] == pytest.approx(p)
    assert (values["FAIL"], values["SUCCESS"]) == ((1.0, 0.0) if failed else (0.0, 1.0))
    (test,) = _metric(snap, ":OdinOODRate").tests
    assert test.status.value == ("FAIL" if values["FAIL"] else "SUCCESS")
    assert _metric(snap, ":RowCount").value == n
    assert _metric(snap, ":RowCount").tests == []  # no "same size as the reference" test


def test_delta_is_named_in_both_units_in_widgets_and_metric_names(batch, tmp_path):
    model, cur, ref = batch
    spread = helpers.T * np.log(helpers.K * model.threshold)  # independent of the model's field
    snap = build_report(cur, ref, model, batch_id="b1")
    html, _ = save_report(snap, tmp_path, model, "b1")
    text = html.read_text(encoding="utf-8")
    named = f"δ = {model.threshold:.6g} (ODIN score S) = {spread:.6g} (spread score T·log(K·S))"
    assert text.count(json.dumps(named)[1:-1]) >= 2  # histogram title and its δ line (JSON)
    names = [
        r.display_name for r in snap.metric_results.values() if r.display_name.startswith("ODIN")
    ]
    assert any(named in n for n in names)
    assert snap.report.metadata["delta"] == named


def test_html_only_when_asked_json_always(batch, tmp_path):
    model, cur, ref = batch
    snap = build_report(cur, ref, model, batch_id="quiet")
    html, js = save_report(snap, tmp_path, model, "quiet", html=False)
    assert html is None and js.is_file()
    assert sorted(p.name for p in js.parent.iterdir()) == ["quiet.json"]
    assert js.stat().st_size < 1_000_000  # the HTML page is several MB, the JSON is not


def _numbers_after(text: str, label: str) -> float:
    match = re.search(re.escape(label) + r"\s*=\s*([-+0-9.eE]+)", text)
    assert match, (label, text)
    return float(match.group(1))


def test_project_description_names_version_t_epsilon_and_both_deltas():
    m = replace(helpers.make_model(), epsilon=0.0014)
    text = describe_project(m)
    assert f"{m.name}, latest batch by version {m.version}:" in text
    assert _numbers_after(text, "T") == pytest.approx(helpers.T)
    assert _numbers_after(text, "ε") == pytest.approx(0.0014)
    delta = re.search(r"δ = ([0-9.eE+-]+) \(ODIN score S\) = ([0-9.eE+-]+) \(spread score", text)
    assert delta, text
    assert float(delta.group(1)) == pytest.approx(m.threshold, rel=1e-5)
    spread = helpers.T * np.log(helpers.K * float(delta.group(1)))
    assert float(delta.group(2)) == pytest.approx(spread, rel=1e-4)
    assert _numbers_after(text, "1 − tpr_target") == pytest.approx(1 - 0.95)
    unknown = describe_project(replace(m, temperature=None, epsilon=None))
    assert "T = unknown, ε = unknown" in unknown


def test_dashboard_upgrade_keeps_other_panels_and_is_idempotent():
    from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    legacy = line_plot_panel(  # what earlier versions added: the OOD rate alone
        title=PANEL_TITLE, values=[PanelMetric(legend="OOD rate", metric="OdinOODRate")]
    )
    mine = counter_panel(title="a user's panel", values=[PanelMetric(metric="RowCount")])
    old = DashboardModel(
        tabs=[
            DashboardTabModel(title="ODIN", panels=[legacy.id]),
            DashboardTabModel(title="Mine", panels=[mine.id]),
        ],
        panels=[legacy, mine],
    )
    wanted = dashboard_panels("model m v1")
    new = upgraded_dashboard(old, wanted)
    assert new is not None
    by_id = {p.id: p for p in new.panels}
    tabs = {t.title: [by_id[i].title for i in t.panels] for t in new.tabs}
    assert tabs == {"ODIN": [p.title for p in wanted], "Mine": ["a user's panel"]}
    assert len(new.panels) == len(wanted) + 1  # the legacy panel replaced, not kept beside
    line = next(p for p in new.panels if p.title == PANEL_TITLE)
    assert [(v.metric, v.metric_labels) for v in line.values] == [
        ("evidently:metric_v2:OdinOODRate", {}),
        ("evidently:metric_v2:OdinBinomialTest", {"label": "expected_rate"}),
        ("evidently:metric_v2:OdinBinomialTest", {"label": "critical_rate"}),
    ]
    assert upgraded_dashboard(new, dashboard_panels("model m v1")) is None
    # a new description (another model version) replaces the text panel only
    newer = upgraded_dashboard(new, dashboard_panels("model m v2"))
    assert newer is not None
    assert [p.subtitle for p in newer.panels if p.title == "Monitored model"] == ["model m v2"]
    assert len(newer.panels) == len(new.panels)
