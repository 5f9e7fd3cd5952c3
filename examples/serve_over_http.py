"""Serve a registered ODIN detector with `mlflow models serve` and score over HTTP.

    .venv/bin/python examples/serve_over_http.py

Uses models:/odin-demo@champion from MLFLOW_TRACKING_URI (default sqlite:///mlflow.db),
running examples/log_your_classifier.py first if that alias does not exist yet. Starts
the real server on 127.0.0.1, posts image files as base64 (PNG and JPEG of different
sizes, resized by the model's own preprocessing; a threshold override; a request with
a file that is no image, which gets a 400 naming the row), checks the scores equal
in-process scoring, then stops the server by its process group.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

from mlflow_plugin.serving import running_server

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def ensure_model(name: str, alias: str) -> None:
    try:
        MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        script = Path(__file__).with_name("log_your_classifier.py")
        subprocess.run([sys.executable, str(script), "--name", name, "--alias", alias], check=True)


def post(url: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def example_files() -> list[bytes]:
    """Three small photos-to-be: a PNG and a JPEG of other sizes than the model's input."""
    rng = np.random.default_rng(7)
    files = []
    for size, fmt in (((40, 30), "PNG"), ((32, 32), "PNG"), ((64, 48), "JPEG")):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt)
        files.append(buf.getvalue())
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="odin-demo")
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args()
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    mlflow.set_tracking_uri(uri)
    ensure_model(args.name, args.alias)
    model_uri = f"models:/{args.name}@{args.alias}"

    # The real server on 127.0.0.1, stopped by its process group when the block ends.
    with running_server(model_uri, tracking_uri=uri, timeout=120) as server:
        base = server.url
        print("$", " ".join(server.command))
        files = example_files()
        request = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(f).decode()] for f in files],
            }
        }
        status, body = post(f"{base}/invocations", request)
        served = pd.DataFrame(body["predictions"])
        print(
            f"POST /invocations ({len(files)} files) -> {status}\n{served.to_string(index=False)}"
        )
        local = mlflow.pyfunc.load_model(model_uri).predict(pd.DataFrame({"image": files}))
        gap = float(np.abs(served["odin_score"] - local["odin_score"]).max())
        print(f"max |served - in-process| odin_score: {gap:.2e}")
        if gap > 1e-6 or not (served["is_ood"] == local["is_ood"]).all():
            raise SystemExit("served scores differ from in-process scores")

        status, body = post(f"{base}/invocations", {**request, "params": {"threshold": 1.0}})
        print(
            f"with params threshold=1.0 -> {status}, "
            f"is_ood={[row['is_ood'] for row in body['predictions']]}"
        )

        bad = {"dataframe_split": {"columns": ["image"], "data": [
            [base64.b64encode(files[0]).decode()], [base64.b64encode(b"not an image").decode()]
        ]}}  # fmt: skip
        status, body = post(f"{base}/invocations", bad)
        # Stock `mlflow models serve` echoes the input before the reason (odin-monitor serve
        # puts the reason first): show the reason.
        print(f"a file that is no image -> {status}: {body['message'].rsplit('Error: ', 1)[-1]}")
        if status != 400:
            raise SystemExit("expected a 400 for a file that is no image")
    print("server stopped")


if __name__ == "__main__":
    main()
