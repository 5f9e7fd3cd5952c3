"""Distributed batch scoring with mlflow.pyfunc.spark_udf in Spark local mode."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from odin_mlflow_testing import images, java_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None,
        reason="pyspark is not installed (pip install -e '.[spark]')",
    ),
    pytest.mark.skipif(not java_available(), reason="Java (needed by Spark) is not available"),
]


def test_spark_udf_scores_equal_in_process(saved_model: Path, monkeypatch) -> None:
    from pyspark.sql import SparkSession

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("odin-spark-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        x = images(12, seed=61).numpy()
        rows = [(i, x[i].reshape(-1).tolist()) for i in range(len(x))]
        df = spark.createDataFrame(rows, "id long, image array<float>").repartition(2)
        udf = mlflow.pyfunc.spark_udf(
            spark,
            str(saved_model),
            result_type=(
                "odin_score double, spread_score double, msp double, "
                "predicted_class long, is_ood boolean"
            ),
            env_manager="local",
        )
        out = (
            df.withColumn("s", udf("image"))
            .select("id", "s.*")
            .toPandas()
            .sort_values("id")
            .reset_index(drop=True)
        )
    finally:
        spark.stop()
    expected = mlflow.pyfunc.load_model(str(saved_model)).predict(x)
    for col in ("odin_score", "spread_score", "msp"):
        np.testing.assert_allclose(out[col], expected[col], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["predicted_class"], expected["predicted_class"])
    np.testing.assert_array_equal(out["is_ood"], expected["is_ood"])
    assert os.environ["PYSPARK_PYTHON"] == sys.executable
