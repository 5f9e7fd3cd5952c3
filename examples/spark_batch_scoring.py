"""Score a folder of image files with Spark's binaryFile reader and mlflow.pyfunc.spark_udf.

    .venv/bin/pip install -e '.[spark]'   # pyspark; Spark also needs Java 17+
    .venv/bin/python examples/spark_batch_scoring.py

Uses models:/odin-demo@champion from MLFLOW_TRACKING_URI (default sqlite:///mlflow.db),
running examples/log_your_classifier.py first if that alias does not exist yet.
Writes --n PNG files into a temporary folder, reads them with
spark.read.format("binaryFile") (local mode), scores the `content` column with the
model's own decoding and resizing, and checks the scores against in-process scoring of
the same files. Workers run this environment's python (PYSPARK_PYTHON).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

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
        from pyspark.sql.functions import col
    except ImportError:
        raise SystemExit("pyspark is not installed: .venv/bin/pip install -e '.[spark]'") from None

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    try:
        MlflowClient().get_model_version_by_alias(args.name, args.alias)
    except MlflowException:
        script = Path(__file__).with_name("log_your_classifier.py")
        subprocess.run([sys.executable, str(script), "--name", args.name], check=True)
    model_uri = f"models:/{args.name}@{args.alias}"

    folder = Path(tempfile.mkdtemp(prefix="odin-spark-"))
    rng = np.random.default_rng(0)
    for i in range(args.n):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img-{i:05d}.png")

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("odin-batch-scoring")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        df = spark.read.format("binaryFile").option("pathGlobFilter", "*.png").load(str(folder))
        print(f"{df.count()} image files, {df.rdd.getNumPartitions()} partitions")
        odin = mlflow.pyfunc.spark_udf(
            spark, model_uri, result_type=RESULT_TYPE, env_manager="local"
        )
        scored = df.withColumn("odin", odin(col("content").alias("image")))
        out = scored.select("path", "odin.*").toPandas().sort_values("path")
    finally:
        spark.stop()
    print(out.drop(columns="path").head().to_string(index=False))
    files = sorted(folder.glob("*.png"))
    local = mlflow.pyfunc.load_model(model_uri).predict(
        pd.DataFrame({"image": [f.read_bytes() for f in files]})
    )
    gap = float(np.abs(out["odin_score"].to_numpy() - local["odin_score"].to_numpy()).max())
    print(f"OOD rate {out['is_ood'].mean():.1%}; max |spark - in-process| odin_score: {gap:.2e}")
    if gap > 1e-6:
        raise SystemExit("Spark scores differ from in-process scores")


if __name__ == "__main__":
    main()
