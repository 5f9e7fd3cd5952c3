"""A new user's natural mistakes with a model URI: errors name the store and the way out."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner

import mlflow_plugin
from mlflow_plugin.lookup import check_model_uri
from odin_monitor import ModelLoadError
from odin_monitor.cli import main


def score(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    batch = cwd / "batch.npy"
    np.save(batch, np.full((2, 3, 8, 8), 0.5, np.float32))
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=cwd):
        return runner.invoke(main, ["score", str(batch), *args], env=env or {})


def test_reading_from_another_folder_creates_no_store_and_says_where_it_looked(tmp_path):
    res = score(["--model-uri", "models:/odin-resnet20@champion"], tmp_path,
                env={"MLFLOW_TRACKING_URI": ""})  # fmt: skip
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert "mlflow.db does not exist (nothing was created)" in line
    assert "odin-monitor log DIR --register NAME" in line
    assert not list(tmp_path.rglob("mlflow.db"))
    assert "CREATE TABLE" not in res.output and "alembic" not in res.output.lower()


def test_unknown_model_lists_what_the_store_holds(tracking: str, result, tmp_path):
    mlflow_plugin.log_model(result, "detector", registered_model_name="odin-lookup")
    with pytest.raises(ModelLoadError, match=r"registered model 'odin-lokup' .* odin-lookup"):
        check_model_uri("models:/odin-lokup@champion", tracking)


def test_alias_typo_lists_the_aliases_that_exist(tracking: str, result):
    info = mlflow_plugin.log_model(result, "detector", registered_model_name="odin-alias")
    mlflow_plugin.set_alias("odin-alias", "champion", info.registered_model_version)
    with pytest.raises(ModelLoadError, match=r"alias 'champoin' .* aliases: @champion"):
        check_model_uri("models:/odin-alias@champoin", tracking)
    with pytest.raises(ModelLoadError, match=r"version 7 of 'odin-alias' .* versions: 1"):
        check_model_uri("models:/odin-alias/7", tracking)
    check_model_uri("models:/odin-alias@champion", tracking)  # the right one passes
    check_model_uri("models:/odin-alias/1", tracking)


def test_uri_without_scheme_suggests_the_right_form(tmp_path):
    res = score(["--model-uri", "odin-resnet20@champion"], tmp_path)
    assert res.exit_code == 1
    assert "Did you mean models:/odin-resnet20@champion?" in res.output
    assert "Traceback" not in res.output


def test_folder_without_mlmodel_is_named(tmp_path):
    (tmp_path / "calib").mkdir()
    with pytest.raises(ModelLoadError, match="no MLmodel"):
        check_model_uri(str(tmp_path / "calib"), "sqlite:///x.db")


def test_empty_store_says_how_to_fill_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # an empty, existing store
    with pytest.raises(ModelLoadError, match=r"no registered models\. Fill a store with"):
        check_model_uri("models:/odin-resnet20@champion", uri)
