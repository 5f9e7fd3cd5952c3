"""The real `mlflow models serve` on 127.0.0.1: scores equal in-process, 400 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from odin_mlflow_testing import free_port, images, stop_process_group

import mlflow_plugin

pytestmark = pytest.mark.slow


def post(url: str, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not ready after {timeout} s:\n{log.read_text()}")


def test_serve_champion_over_http(tracking: str, result, tmp_path: Path) -> None:
    info = mlflow_plugin.log_model(result, "detector", registered_model_name="odin-serve")
    mlflow_plugin.set_alias("odin-serve", "champion", info.registered_model_version)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    bin_dir = str(Path(sys.executable).parent)  # `mlflow models serve` runs `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
        str(Path(bin_dir) / "mlflow"),
        "models", "serve", "-m", "models:/odin-serve@champion",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_ready(base, proc, log)
        x = images(5, seed=41).numpy()
        expected = mlflow.pyfunc.load_model("models:/odin-serve@champion").predict(x)

        status, body = post(f"{base}/invocations", {"inputs": x.tolist()})
        assert status == 200, body
        got = pd.DataFrame(json.loads(body)["predictions"])
        for col in ("odin_score", "spread_score", "msp"):
            np.testing.assert_allclose(got[col], expected[col], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["predicted_class"], expected["predicted_class"])
        np.testing.assert_array_equal(got["is_ood"], expected["is_ood"])

        status, body = post(
            f"{base}/invocations", {"inputs": x.tolist(), "params": {"threshold": 2.0}}
        )
        assert status == 200, body
        assert all(row["is_ood"] for row in json.loads(body)["predictions"])

        status, body = post(f"{base}/invocations", {"inputs": (x * 255).tolist()})
        assert status == 400, body
        assert "Expected raw pixels in [0, 1]" in json.loads(body)["message"]

        status, body = post(f"{base}/invocations", {"inputs": x[:, :1].tolist()})
        assert status == 400, body
        assert "does not match expected shape" in json.loads(body)["message"]
    finally:
        stop_process_group(proc)
    assert proc.poll() is not None
