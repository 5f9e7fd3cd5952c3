"""Smoke run of the serving benchmark against the real `mlflow models serve` (tiny model)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from odin_mlflow_testing import images
from torch import nn

import mlflow_plugin
from mlflow_plugin.bench_serve import ServeResult, format_markdown, main, run_serve
from odin_monitor import OdinDetector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).eval()
    det = OdinDetector(net, temperature=1000.0, epsilon=0.0014, normalization=None, batch_size=16)
    det.fit(images(64, seed=5))
    path = tmp_path_factory.mktemp("bench-serve") / "model"
    mlflow_plugin.save_model(det, path)
    return path


@pytest.fixture(scope="module")
def result(tiny_model: Path) -> ServeResult:
    lines: list[str] = []
    res = run_serve(
        model_uri=str(tiny_model),
        batch_sizes=(1, 4),
        concurrency=2,
        requests_per_size=6,
        duration_limit_s=30.0,
        log=lines.append,
    )
    assert any("stopped" in line for line in lines), lines
    return res


def test_smoke_run_has_no_errors_and_sane_latencies(result: ServeResult) -> None:
    assert result.errors == 0, [s.error_samples for s in result.sizes]
    assert result.ok
    assert [s.batch_size for s in result.sizes] == [1, 4]
    for s in result.sizes:
        assert s.requests == s.planned == 6
        assert not s.stopped_by_time
        assert 0 < s.p50_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
        assert s.requests_per_s > 0 and s.images_per_s > 0 and s.inprocess_images_per_s > 0
        assert s.http_over_inprocess == pytest.approx(s.images_per_s / s.inprocess_images_per_s)
    assert "seeded uniform noise" in result.images_source


def test_served_scores_equal_in_process(result: ServeResult) -> None:
    for s in result.sizes:
        assert s.scores_match, s
        assert 0.0 <= s.score_max_abs_diff <= 1e-6
        assert s.labels_match


def test_server_is_stopped(result: ServeResult) -> None:
    port = int(result.server_command.split("--port ")[1].split()[0])
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_markdown_has_a_row_per_batch_size(result: ServeResult) -> None:
    text = format_markdown(result)
    assert "| batch | requests | errors | p50 ms | p95 ms | p99 ms | req/s | images/s |" in text
    rows = [line for line in text.splitlines() if line.startswith(("| 1 |", "| 4 |"))]
    assert len(rows) == 2, text
    assert "--workers 1" in text and "torch threads" in text
    assert json.loads(json.dumps(result.to_dict()))["errors"] == 0


def test_bad_arguments_are_refused_before_serving(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="Expected batch sizes >= 1"):
        run_serve(model_uri=str(tiny_model), batch_sizes=(0,))
    with pytest.raises(ValueError, match="Expected concurrency >= 1"):
        run_serve(model_uri=str(tiny_model), concurrency=0)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--batch-sizes", "--concurrency", "--requests-per-size", "--markdown", "--json"):
        assert option in out
