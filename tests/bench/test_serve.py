"""Serving benchmark: its HTTP load against a counting stub server, and one real run.

The stub (``http.server`` on 127.0.0.1) records what it received, so the load and the
error counts are checked against what happened rather than against the benchmark's own
arithmetic; the smoke run serves a tiny model with the real `mlflow models serve`.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import mlflow_plugin
from odin_monitor import OdinDetector
from odin_monitor.bench.files import encode_images, noise_uint8
from odin_monitor.bench.serve import ServeResult, SizeResult, format_markdown, main, run_serve
from odin_monitor.bench.serve.bodies import files_from_image_body, float_body, image_body
from odin_monitor.bench.serve.client import batches, compare, load
from odin_monitor.data import to_float_nchw
from odin_monitor.preprocess import Preprocessing, preprocess_images


class _Stub(http.server.ThreadingHTTPServer):
    """Answers POSTs after ``delay`` seconds; every ``fail_every``-th request gets a 500."""

    daemon_threads = True

    def __init__(self, delay: float, fail_every: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay, self.fail_every = delay, fail_every
        self.lock = threading.Lock()
        self.received: list[bytes] = []
        self.in_flight = self.most_in_flight = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Stub

    def do_POST(self) -> None:
        stub = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with stub.lock:
            stub.received.append(body)
            n = len(stub.received)
            stub.in_flight += 1
            stub.most_in_flight = max(stub.most_in_flight, stub.in_flight)
        time.sleep(stub.delay)
        with stub.lock:
            stub.in_flight -= 1
        failed = stub.fail_every and n % stub.fail_every == 0
        self.send_response(500 if failed else 200)
        self.end_headers()
        self.wfile.write(b'{"predictions": []}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def stub() -> Iterator[_Stub]:
    server = _Stub(delay=0.2, fail_every=4)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_load_sends_each_request_once_within_the_concurrency_bound(stub: _Stub) -> None:
    bodies = [b"a", b"b", b"c"]
    port = stub.server_address[1]
    outcomes, _, stopped = load(port, bodies, 10, 3, duration_limit_s=60.0, timeout=10.0)
    assert not stopped and len(outcomes) == 10 and len(stub.received) == 10
    # Bodies are cycled in order; the threads never exceed the bound, and do overlap.
    assert sorted(stub.received) == sorted([bodies[i % 3] for i in range(10)])
    assert 1 < stub.most_in_flight <= 3
    # Requests 4 and 8 were answered 500: counted as errors with their status.
    errors = [o.error for o in outcomes if o.error is not None]
    assert len(errors) == 2 and all(e.startswith("HTTP 500") for e in errors)


def test_load_stops_starting_requests_at_the_duration_limit(stub: _Stub) -> None:
    port = stub.server_address[1]
    outcomes, _, stopped = load(port, [b"x"], 1000, 1, duration_limit_s=0.3, timeout=10.0)
    assert stopped and len(outcomes) == len(stub.received) < 1000


def test_a_closed_port_is_an_error_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        outcomes, _, _ = load(port, [b"x"], 2, 1, duration_limit_s=10.0, timeout=2.0)
    assert [o.status for o in outcomes] == [0, 0]
    assert all(o.error and "Error" in o.error for o in outcomes)


def test_batches_cycle_through_the_pool() -> None:
    pool = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
    got = [b.ravel().tolist() for b in batches(pool, 3, 3)]
    assert got == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]


def test_compare_reports_the_largest_score_gap_and_label_changes() -> None:
    expected = pd.DataFrame(
        {
            "odin_score": [0.5, 0.6],
            "spread_score": [1.0, 2.0],
            "msp": [0.9, 0.8],
            "predicted_class": [1, 2],
            "is_ood": [False, True],
        }
    )
    served = expected.copy()
    served.loc[1, "spread_score"] = 2.25
    assert compare(served, expected) == (pytest.approx(0.25), True)
    served.loc[0, "is_ood"] = True
    assert compare(served, expected)[1] is False
    diff, labels = compare(served.iloc[:1], expected)  # a short answer never matches
    assert np.isnan(diff) and labels is False


@pytest.fixture(scope="module")
def tiny_detector() -> OdinDetector:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).eval()
    det = OdinDetector(net, temperature=1000.0, epsilon=0.0014, normalization=None, batch_size=16)
    return det.fit(torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(5)))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_detector: OdinDetector) -> Path:
    path = tmp_path_factory.mktemp("bench-serve") / "model"
    mlflow_plugin.save_model(tiny_detector, path, input_kind="tensor")
    return path


@pytest.fixture(scope="module")
def result(tiny_model: Path) -> ServeResult:
    return run_serve(
        model_uri=str(tiny_model),
        batch_sizes=(1, 4),
        concurrency=2,
        requests_per_size=6,
        duration_limit_s=30.0,
    )


@pytest.mark.slow
def test_real_server_answers_every_request_with_in_process_scores(result: ServeResult) -> None:
    assert result.errors == 0, [s.error_samples for s in result.sizes]
    assert [s.batch_size for s in result.sizes] == [1, 4]
    for s in result.sizes:
        assert s.requests == s.planned == 6 and not s.stopped_by_time
        assert 0 < s.p50_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
        assert s.scores_match and s.score_max_abs_diff <= 1e-6
    assert result.ok
    assert "seeded uniform noise" in result.images_source


@pytest.mark.slow
def test_server_is_stopped_after_the_run(result: ServeResult) -> None:
    port = int(result.server_command.split("--port ")[1].split()[0])
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def _table(text: str, first: str, n: int) -> list[dict[str, str]]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith(first))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    return [
        dict(zip(names, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[header + 2 : header + 2 + n]
    ]


def _number(cell: str) -> float:
    return float("nan") if cell == "—" else float(cell.replace(",", ""))


def _check_markdown(result: ServeResult) -> None:
    text = format_markdown(result)
    rows = _table(text, "| batch |", len(result.sizes))
    for row, s in zip(rows, result.sizes, strict=True):
        assert int(row["batch"]) == s.batch_size and int(row["errors"]) == s.errors
        assert row["request"] == s.format
        for column, value, digits in [
            ("p50 ms", s.p50_ms, 1),
            ("p99 ms", s.p99_ms, 1),
            ("req/s", s.requests_per_s, 2),
            ("images/s", s.images_per_s, 1),
            ("body MiB", s.body_mib, 3),
            ("HTTP/in-process", s.http_over_inprocess, 2),
            ("in-process + decode images/s", s.inprocess_decode_images_per_s, 1),
            ("HTTP/in-process + decode", s.http_over_inprocess_decode, 2),
        ]:
            assert _number(row[column]) == pytest.approx(value, abs=10**-digits, nan_ok=True)
    served = re.findall(r"max \|served - in-process\|.*?= ([0-9.e+-]+)", text)
    assert [float(v) for v in served] == pytest.approx([s.score_max_abs_diff for s in result.sizes])
    goals = _table(text, "| goal |", len(result.goals())) if result.goals() else []
    assert ("| goal |" in text) == bool(result.goals())
    for row, g in zip(goals, result.goals(), strict=True):
        assert row["goal"] == g.name and row["met"] == ("yes" if g.met else "**no**")
        assert float(row["measured"]) == pytest.approx(g.measured, abs=0.01)
    back = json.loads(json.dumps(result.to_dict()))
    assert back["sizes"][-1]["p50_ms"] == result.sizes[-1].p50_ms
    assert [g["name"] for g in back["goals"]] == [g.name for g in result.goals()]


@pytest.mark.slow
def test_markdown_table_holds_the_result_numbers(result: ServeResult) -> None:
    _check_markdown(result)


def test_image_body_carries_the_files_that_decode_to_the_float_body_images() -> None:
    pixels = noise_uint8(4, (3, 8, 8), seed=3)
    files = encode_images(pixels, "PNG")
    body = image_body(files)
    assert json.loads(body)["dataframe_split"]["columns"] == ["image"]
    assert files_from_image_body(body) == files
    # PNG is lossless: what the server decodes is what the float request carries.
    decoded, _ = preprocess_images(files_from_image_body(body), Preprocessing(size=(8, 8)))
    floats = np.asarray(json.loads(float_body(to_float_nchw(pixels)))["inputs"], np.float32)
    np.testing.assert_array_equal(decoded, floats)


def _size(fmt: str, batch: int, images_per_s: float, with_decode: float) -> SizeResult:
    return SizeResult(
        batch_size=batch, planned=1, requests=1, errors=0, error_samples=(), p50_ms=1.0,
        p95_ms=1.0, p99_ms=1.0, mean_ms=1.0, max_ms=1.0, wall_s=1.0, requests_per_s=1.0,
        images_per_s=images_per_s, inprocess_images_per_s=500.0, inprocess_median_s=0.5,
        inprocess_repeats=3, http_over_inprocess=images_per_s / 500.0, score_max_abs_diff=0.0,
        labels_match=True, body_mib=1.0, distinct_bodies=1, stopped_by_time=False, format=fmt,
        inprocess_decode_images_per_s=with_decode,
        http_over_inprocess_decode=images_per_s / with_decode,
    )  # fmt: skip


def test_goals_are_read_at_the_largest_batch_with_both_kinds() -> None:
    sizes = (
        _size("float", 1, 40.0, float("nan")),
        _size("image", 1, 50.0, 400.0),
        _size("float", 256, 100.0, float("nan")),
        _size("image", 256, 350.0, 500.0),
    )
    result = ServeResult(
        command="c", server_command="s", machine={}, model="m", model_uri="u", pretrained=True,
        images_source="i", concurrency=1, workers=1, requests_per_size=1, duration_limit_s=1.0,
        server_start_s=1.0, sizes=sizes, formats=("float", "image"),
    )  # fmt: skip
    goals = result.goals()
    assert [g.measured for g in goals] == pytest.approx([3.5, 0.7, 0.0])
    assert [g.met for g in goals] == [True, True, True]
    assert "batch 256" in goals[0].name
    _check_markdown(result)


def test_bad_arguments_are_refused_before_serving(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="Expected batch sizes >= 1"):
        run_serve(model_uri=str(tiny_model), batch_sizes=(0,))
    with pytest.raises(ValueError, match="Expected concurrency >= 1"):
        run_serve(model_uri=str(tiny_model), concurrency=0)
    with pytest.raises(ValueError, match="Expected formats among"):
        run_serve(model_uri=str(tiny_model), formats=("yaml",))


@pytest.fixture(scope="module")
def image_result(
    tmp_path_factory: pytest.TempPathFactory, tiny_detector: OdinDetector
) -> ServeResult:
    path = tmp_path_factory.mktemp("bench-serve-image") / "model"
    mlflow_plugin.save_model(tiny_detector, path, input_kind="image")
    return run_serve(
        model_uri=str(path), batch_sizes=(1, 4), concurrency=2, requests_per_size=4,
        duration_limit_s=30.0,
    )  # fmt: skip


@pytest.mark.slow
def test_image_requests_are_served_with_in_process_scores(image_result: ServeResult) -> None:
    r = image_result
    assert r.ok and r.formats == ("image",) and r.file_format == "PNG"
    assert [(s.format, s.batch_size) for s in r.sizes] == [("image", 1), ("image", 4)]
    for s in r.sizes:
        assert s.decode_ms_per_image > 0 and s.inprocess_decode_images_per_s > 0
        assert s.body_mib < 0.01  # a few small PNGs, not floats
    assert any("takes image requests only" in n for n in r.notes)
    assert [g.name.split(",")[0] for g in r.goals()] == [
        "image served / in-process incl. decode",
        "failed requests (all kinds",
    ]
    _check_markdown(r)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m odin_monitor.bench.serve")
    for option in ("--batch-sizes", "--concurrency", "--requests-per-size", "--markdown", "--json"):
        assert option in out
