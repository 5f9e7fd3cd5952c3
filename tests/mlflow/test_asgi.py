"""The guarded server: MLflow's scoring app behind a body cap, with short error replies."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from odin_mlflow_testing import images

from mlflow_plugin.asgi import BodyCapMiddleware, guard, shorten_error
from mlflow_plugin.serving import HOST, running_server


def run_app(app, body: bytes, headers: list[tuple[bytes, bytes]], chunks: int = 1):
    """Drive an ASGI app with one request; return (status, body, bytes the inner app saw)."""
    parts = [body[i::chunks] for i in range(chunks)] if chunks > 1 else [body]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, out


def echo_app(status: int, reply: dict):
    seen: list[bytes] = []

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(body)
        data = json.dumps(reply).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app, seen


def test_body_over_the_cap_is_refused_before_the_app_sees_it() -> None:
    app, seen = echo_app(200, {"predictions": []})
    guarded = guard(app, max_body_bytes=1000)
    body = b"x" * 5000
    status, out = run_app(guarded, body, [(b"content-length", b"5000")])
    assert status == 413 and not seen
    assert "at most 1000 bytes, but got 5000" in json.loads(out)["message"]
    # No Content-Length (chunked): counted while streaming, still refused.
    status, _ = run_app(guarded, body, [], chunks=10)
    assert status == 413 and not seen
    # Under the cap: the app gets the whole body, in one piece, unchanged.
    status, _ = run_app(guarded, b"y" * 999, [], chunks=7)
    assert status == 200 and len(seen[0]) == 999


def test_error_reply_puts_the_reason_first_and_cuts_the_echo() -> None:
    echo = "[" + ", ".join(["0.5"] * 100_000) + "]"
    reply = {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": f"Failed to predict data '{echo}'. \nError: Expected raw pixels in [0, 1].",
    }
    app, _ = echo_app(400, reply)
    status, out = run_app(guard(app, max_error_chars=500), b"{}", [(b"content-length", b"2")])
    message = json.loads(out)["message"]
    assert status == 400
    assert message.startswith("Expected raw pixels in [0, 1].")
    assert len(message) <= 500
    assert "characters cut" in message


def test_shorten_error_leaves_short_messages_alone() -> None:
    assert shorten_error("Expected a finite threshold.") == "Expected a finite threshold."


def test_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="max_body_bytes >= 1"):
        BodyCapMiddleware(echo_app(200, {})[0], max_body_bytes=0)


def raw_post(port: int, body: bytes, declared: int | None = None) -> tuple[int, bytes]:
    """POST over a plain socket: may declare more bytes than it sends."""
    with socket.create_connection((HOST, port), timeout=60) as sock:
        head = (
            f"POST /invocations HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared if declared is not None else len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        if declared is not None:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


def post_json(port: int, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("POST", "/invocations", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn's worker)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().split()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if int(stat[4]) == pid or int(proc.name) == pid:  # same process group
            total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
    return total


@pytest.mark.slow
def test_guarded_server_scores_like_stock_and_refuses_big_bodies(
    saved_model: Path, tmp_path
) -> None:
    x = images(4, seed=11).numpy()
    expected = mlflow.pyfunc.load_model(str(saved_model)).predict(x)
    with running_server(
        saved_model,
        guarded=True,
        max_body_bytes=1_000_000,
        max_error_chars=600,
        log_file=tmp_path / "server.log",
        timeout=120,
    ) as server:
        status, body = post_json(server.port, {"inputs": x.tolist()})
        assert status == 200, body
        got = pd.DataFrame(body["predictions"])
        np.testing.assert_allclose(got["odin_score"], expected["odin_score"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["is_ood"], expected["is_ood"])

        # 16 MB declared, 1 KB sent: refused at once, the rest never read.
        before = rss_kib(server.proc.pid)
        status, payload = raw_post(server.port, b"[" * 1024, declared=16 * 2**20)
        assert status == 413, payload
        assert "at most 1000000 bytes" in json.loads(payload)["message"]
        assert rss_kib(server.proc.pid) - before < 50_000

        # A bad JSON body just under the cap: 400, the reason first, the echo cut.
        status, payload = raw_post(server.port, b"{" + b"7" * 900_000)
        assert status == 400
        message = json.loads(payload)["message"]
        assert "valid JSON" in message[:80] and len(message) <= 600

        # Out-of-range pixels: MLflow's echo of the input is cut, our reason leads.
        status, body = post_json(server.port, {"inputs": (x * 255).tolist()})
        assert status == 400
        assert body["message"].startswith("Expected raw pixels in [0, 1]"), body["message"][:200]
        assert len(body["message"]) <= 600
    assert server.proc.poll() is not None


@pytest.mark.slow
def test_odin_monitor_serve_takes_base64_files_and_is_stopped_by_pid(image_model: Path, tmp_path):
    import base64
    import io
    import subprocess
    import sys

    from PIL import Image

    from mlflow_plugin.serving import free_port, stop_server, wait_ready

    port = free_port()
    exe = Path(sys.executable).with_name("odin-monitor")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "--model-uri", str(image_model), "--port", str(port),
         "--max-body-mb", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_ready(port, proc, tmp_path / "serve.log", timeout=120)
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 12, 3), 128, np.uint8)).save(buf, "PNG")
        data = [[base64.b64encode(buf.getvalue()).decode()], [base64.b64encode(b"no").decode()]]
        status, body = post_json(port, {"dataframe_split": {"columns": ["image"], "data": data}})
        assert status == 400 and body["message"].startswith("1 of 2 images cannot be used")
        status, body = post_json(
            port, {"dataframe_split": {"columns": ["image"], "data": data[:1]}}
        )
        assert status == 200 and len(body["predictions"]) == 1
        status, _ = raw_post(port, b"{", declared=2 * 2**20)
        assert status == 413
    finally:
        stop_server(proc)
        log.close()
    assert proc.poll() is not None
