"""Calibrate ODIN on a classifier, log it to MLflow as the `odin` flavour, register it.

Runs in seconds on CPU with a small stand-in classifier and synthetic images; replace
`make_classifier` and `load_validation_images` with your own (see the comments).

    .venv/bin/python examples/log_your_classifier.py

It writes to MLFLOW_TRACKING_URI (default: sqlite:///mlflow.db, artifacts in ./mlruns),
registers a new version of `odin-demo`, and points the alias `champion` at it.
"""

from __future__ import annotations

import argparse
import os

import mlflow
import numpy as np
import torch
from torch import nn

import mlflow_plugin
from odin_monitor import Normalization, calibrate

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def make_classifier() -> nn.Module:
    """Your trained classifier goes here: (N, 3, 32, 32) in → logits (N, K) out.

    E.g. `odin_monitor.modelref.model_from_reference("odin_monitor.models:resnet20",
    "../shared/data/cifar10_resnet20.pt")` with CIFAR-10 images.
    """
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


def load_validation_images(n: int, seed: int) -> np.ndarray:
    """Held-out in-distribution images, float32 (N, 3, 32, 32) in [0, 1].

    Stand-in: smooth random images (blurred noise). Use your validation split instead,
    e.g. `odin_monitor.data.load_images("../shared/data/cifar10_test_lossless.npz")`.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.2, 0.8, (n, 3, 8, 8)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="odin-demo", help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias to point at the new version")
    parser.add_argument("--n-val", type=int, default=256, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation images")
    args = parser.parse_args()

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment("odin-demo")

    model = make_classifier()
    x_val = load_validation_images(args.n_val, args.seed)
    # Choose T and ε on validation data (OOD default: the paper's Gaussian + Uniform noise),
    # then set δ so that 95% of in-distribution validation images are kept.
    result = calibrate(
        model,
        x_val,
        normalization=Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        temperatures=[1, 10, 100, 1000],
        epsilons=[0.0, 0.0005, 0.001, 0.002, 0.004],
        batch_size=128,
    )
    rec = result.record
    print(f"calibrated: T={rec.temperature:g} ε={rec.epsilon:g} δ={rec.threshold:.6g}")

    with mlflow.start_run(run_name="calibrate-odin") as run:
        info = mlflow_plugin.log_model(
            result,
            "odin_detector",
            registered_model_name=args.name,
            input_example=x_val[:2],
        )
    version = info.registered_model_version
    mlflow_plugin.set_alias(args.name, args.alias, version)  # only because we ask for it
    print(f"run {run.info.run_id}: logged {info.model_uri}")
    print(f"registered models:/{args.name}/{version}; alias {args.alias} -> version {version}")

    detector = mlflow_plugin.load_model(f"models:/{args.name}@{args.alias}", device="cpu")
    scores = detector.score_batch(load_validation_images(4, seed=123)).to_frame()
    print(scores.to_string(index=False))


if __name__ == "__main__":
    main()
