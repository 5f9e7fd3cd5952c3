"""Spark benchmark: 20 real files through binaryFile + spark_udf score like in-process.

Skips without pyspark, Java or the shared data folder (the reason is printed).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from odin_monitor.bench.spark import (
    SparkResult,
    SparkUnavailable,
    format_markdown,
    main,
    run_spark,
    spark_unavailable,
)
from odin_monitor.bench.spark.run import compare_scores


def _scores(names: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(names)
    return pd.DataFrame(
        {
            "name": names,
            "odin_score": rng.random(n),
            "spread_score": rng.random(n),
            "msp": rng.random(n),
            "predicted_class": rng.integers(0, 10, n),
            "is_ood": rng.random(n) < 0.5,
        }
    )


def test_compare_matches_files_by_name_not_by_row_order() -> None:
    local = _scores(["a.png", "b.png", "c.png"], seed=0)
    spark = local.iloc[[2, 0, 1]].reset_index(drop=True)
    assert compare_scores(spark, local) == (0.0, True)
    spark.loc[spark["name"] == "b.png", "msp"] += 0.5
    assert compare_scores(spark, local) == (pytest.approx(0.5), True)
    other = spark.assign(name=["a.png", "b.png", "x.png"])
    diff, labels = compare_scores(other, local)
    assert np.isnan(diff) and labels is False


def test_no_data_folder_is_a_clear_skip(tmp_path: Path) -> None:
    with pytest.raises(SparkUnavailable, match=r"pyspark|Java|no data folder"):
        run_spark(data_dir=tmp_path, n_images=5)


@pytest.fixture(scope="module")
def result(shared_data: Path) -> SparkResult:
    reason = spark_unavailable()
    if reason is not None:
        pytest.skip(reason)
    return run_spark(data_dir=shared_data, n_images=20, passes=1)


@pytest.mark.slow
def test_spark_scores_equal_in_process_scores(result: SparkResult) -> None:
    assert result.n_images == 20 and len(result.spark_pass_s) == 1
    assert result.scores_match and result.score_max_abs_diff <= 1e-6
    assert result.spark_images_per_s > 0 and result.inprocess_images_per_s > 0


@pytest.mark.slow
def test_report_numbers_parse_back(result: SparkResult) -> None:
    text = format_markdown(result)
    row = next(line for line in text.splitlines() if line.startswith("| Spark pass 1"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[1]) == 20
    assert float(cells[2]) == pytest.approx(result.spark_pass_s[0], abs=0.01)
    assert float(cells[3].replace(",", "")) == pytest.approx(20 / result.spark_pass_s[0], abs=0.1)
    gap = re.search(r"max \|Spark - in-process\|.*?= ([0-9.e+-]+)", text)
    assert gap and float(gap.group(1)) == pytest.approx(result.score_max_abs_diff)
    assert "→ equal" in text


def test_cli_help_and_route(capsys: pytest.CaptureFixture[str]) -> None:
    from odin_monitor.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m odin_monitor.bench.spark")
    for sub in ("spark", "decode"):
        res = CliRunner().invoke(cli_main, ["bench", sub, "--help"])
        assert res.exit_code == 0 and f"usage: odin-monitor bench {sub}" in res.output
