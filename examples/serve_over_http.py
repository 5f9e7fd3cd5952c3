"""Serve a registered ODIN detector with `mlflow models serve` and score over HTTP.

    .venv/bin/python examples/serve_over_http.py

Uses models:/odin-demo@champion from MLFLOW_TRACKING_URI (default sqlite:///mlflow.db),
running examples/log_your_classifier.py first if that alias does not exist yet. Starts
the real server on 127.0.0.1, posts images (and a threshold override, and a bad
request that gets a 400), checks the scores equal in-process scoring, then stops the
server by its process group.
"""

from __future__ import annotations

import argparse
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
        rng = np.random.default_rng(7)
        shape = tuple(mlflow.models.get_model_info(model_uri).signature.inputs.inputs[0].shape[1:])
        x = rng.uniform(0, 1, (3, *shape)).astype(np.float32)

        status, body = post(f"{base}/invocations", {"inputs": x.tolist()})
        served = pd.DataFrame(body["predictions"])
        print(f"POST /invocations -> {status}\n{served.to_string(index=False)}")
        local = mlflow.pyfunc.load_model(model_uri).predict(x)
        gap = float(np.abs(served["odin_score"] - local["odin_score"]).max())
        print(f"max |served - in-process| odin_score: {gap:.2e}")
        if gap > 1e-6 or not (served["is_ood"] == local["is_ood"]).all():
            raise SystemExit("served scores differ from in-process scores")

        status, body = post(
            f"{base}/invocations", {"inputs": x.tolist(), "params": {"threshold": 1.0}}
        )
        print(
            f"with params threshold=1.0 -> {status}, "
            f"is_ood={[row['is_ood'] for row in body['predictions']]}"
        )

        status, body = post(f"{base}/invocations", {"inputs": (x * 255).tolist()})
        print(f"pixels in [0, 255] -> {status}: {body['message'].splitlines()[-1]}")
        if status != 400:
            raise SystemExit("expected a 400 for out-of-range pixels")
    print("server stopped")


if __name__ == "__main__":
    main()
