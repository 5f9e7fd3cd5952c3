"""Score a Spark DataFrame of flattened images with mlflow.pyfunc.spark_udf (local mode).

    .venv/bin/pip install -e '.[spark]'   # pyspark; Spark also needs Java 17+
    .venv/bin/python examples/spark_batch_scoring.py

Uses models:/odin-demo@champion from MLFLOW_TRACKING_URI (default sqlite:///mlflow.db),
running examples/log_your_classifier.py first if that alias does not exist yet.
Workers run this environment's python (PYSPARK_PYTHON), and the scores are checked
against in-process scoring.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers need this environment
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable

RESULT_TYPE = (
    "odin_score double, spread_score double, msp double, predicted_class long, is_ood boolean"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="odin-demo")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--n", type=int, default=64, help="images to score")
    args = parser.parse_args()
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SystemExit("pyspark is not installed: .venv/bin/pip install -e '.[spark]'") from None

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    try:
        MlflowClient().get_model_version_by_alias(args.name, args.alias)
    except MlflowException:
        script = Path(__file__).with_name("log_your_classifier.py")
        subprocess.run([sys.executable, str(script), "--name", args.name], check=True)
    model_uri = f"models:/{args.name}@{args.alias}"
    shape = tuple(mlflow.models.get_model_info(model_uri).signature.inputs.inputs[0].shape[1:])

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("odin-batch-scoring")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (args.n, *shape)).astype(np.float32)
        rows = [(i, img.reshape(-1).tolist()) for i, img in enumerate(x)]
        df = spark.createDataFrame(rows, "id long, image array<float>")
        print(
            f"{df.count()} images of {math.prod(shape)} floats each, "
            f"{df.rdd.getNumPartitions()} partitions"
        )
        odin = mlflow.pyfunc.spark_udf(
            spark, model_uri, result_type=RESULT_TYPE, env_manager="local"
        )
        scored = df.withColumn("odin", odin("image")).select("id", "odin.*")
        out = scored.toPandas().sort_values("id").reset_index(drop=True)
    finally:
        spark.stop()
    print(out.head().to_string(index=False))
    local = mlflow.pyfunc.load_model(model_uri).predict(x)
    gap = float(np.abs(out["odin_score"] - local["odin_score"]).max())
    print(f"OOD rate {out['is_ood'].mean():.1%}; max |spark - in-process| odin_score: {gap:.2e}")
    if gap > 1e-6:
        raise SystemExit("Spark scores differ from in-process scores")


if __name__ == "__main__":
    main()
