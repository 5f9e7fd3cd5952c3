"""The real `mlflow models serve` on 127.0.0.1: scores equal in-process, 400 on bad input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from odin_mlflow_testing import images

import mlflow_plugin
from mlflow_plugin.serving import running_server

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


def test_serve_champion_over_http(tracking: str, result, tmp_path: Path) -> None:
    info = mlflow_plugin.log_model(
        result, "detector", registered_model_name="odin-serve", input_kind="tensor"
    )
    mlflow_plugin.set_alias("odin-serve", "champion", info.registered_model_version)
    log = tmp_path / "server.log"
    with running_server(
        "models:/odin-serve@champion", tracking_uri=tracking, log_file=log, timeout=120
    ) as server:
        base = server.url
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
    assert server.proc.poll() is not None


def test_a_model_logged_before_images_serves_unchanged(tmp_path: Path) -> None:
    """The tensor-signature fixture model answers {"inputs": floats} as it always did."""
    import shutil

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    folder = shutil.copytree(fixtures / "odin_model_v1", tmp_path / "m")
    x = np.load(fixtures / "odin_model_v1_images.npy")
    want = pd.read_csv(fixtures / "odin_model_v1_scores.csv")
    with running_server(folder, log_file=tmp_path / "server.log", timeout=120) as server:
        status, body = post(f"{server.url}/invocations", {"inputs": x.tolist()})
    assert status == 200, body
    got = pd.DataFrame(json.loads(body)["predictions"])
    np.testing.assert_allclose(got["odin_score"], want["odin_score"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["is_ood"], want["is_ood"])
