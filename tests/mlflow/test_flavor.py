"""Save/load round trips of the odin flavour (native and pyfunc), and the model folder."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.models import Model
from odin_mlflow_testing import images

import mlflow_plugin
from odin_monitor import CalibrationRecord, ModelLoadError, OdinDetector
from odin_monitor.detector import SCORE_COLUMNS


def assert_same_scores(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6) -> None:
    assert list(a.columns) == list(b.columns) == list(SCORE_COLUMNS)
    for col in ("odin_score", "spread_score", "msp"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=0, atol=atol)
    np.testing.assert_array_equal(a["predicted_class"].to_numpy(), b["predicted_class"].to_numpy())
    np.testing.assert_array_equal(a["is_ood"].to_numpy(), b["is_ood"].to_numpy())


def test_model_folder_layout_and_mlmodel_config(saved_model: Path, result) -> None:
    rec = result.record
    conf = Model.load(saved_model).flavors["odin"]
    assert conf["format"] == "pt2"
    assert (saved_model / conf["model_file"]).is_file()
    assert (conf["temperature"], conf["epsilon"], conf["threshold"]) == (
        rec.temperature,
        rec.epsilon,
        rec.threshold,
    )
    assert conf["tpr_target"] == rec.tpr_target
    assert conf["normalization"] is None
    assert conf["input_shape"] == [3, 8, 8]
    assert conf["n_classes"] == 5
    assert conf["calibration_sha256"] == rec.sha256()
    assert (saved_model / "code" / "odin_monitor" / "detector.py").is_file()
    assert (saved_model / "code" / "mlflow_plugin" / "flavor.py").is_file()
    assert not list(saved_model.rglob("__pycache__"))
    assert not list(saved_model.rglob("*.pkl"))
    reqs = (saved_model / "requirements.txt").read_text().split()
    assert any(r.startswith("torch==") for r in reqs) and any(r.startswith("mlflow") for r in reqs)
    # The tensor signature, the params with calibrated defaults, and an input example.
    meta = Model.load(saved_model)
    spec = meta.get_input_schema().inputs[0]
    assert spec.shape == (-1, 3, 8, 8) and spec.type == np.dtype("float32")
    defaults = {p.name: p.default for p in meta.get_params_schema().params}
    assert defaults == {"batch_size": result.detector.batch_size, "threshold": rec.threshold}
    assert meta.saved_input_example_info is not None
    grid = pd.read_csv(saved_model / "data" / "calibration_grid.csv")
    assert len(grid) == 9 and grid["chosen"].sum() == 1


def test_native_round_trip_equal_scores(saved_model: Path, result) -> None:
    x = images(20, seed=7)
    loaded = mlflow_plugin.load_model(str(saved_model), device="cpu")
    assert isinstance(loaded, OdinDetector)
    assert loaded.threshold_ == result.detector.threshold_
    assert loaded.input_shape_ == (3, 8, 8) and loaded.n_classes_ == 5
    # exported (loaded) vs eager (in memory) model, ODIN scores to 1e-6
    assert_same_scores(result.detector.score_batch(x).to_frame(), loaded.score_batch(x).to_frame())


def test_pyfunc_round_trip_equal_scores_under_no_grad(saved_model: Path, result) -> None:
    x = images(20, seed=8)
    expected = result.detector.score_batch(x).to_frame()
    pf = mlflow.pyfunc.load_model(str(saved_model), model_config={"device": "cpu"})
    assert isinstance(pf.get_raw_model(), OdinDetector)
    with torch.no_grad():
        assert_same_scores(expected, pf.predict(x.numpy()))
    with torch.inference_mode():
        assert_same_scores(expected, pf.predict(x.numpy()))
    # flattened images and a column of arrays are accepted too
    flat = x.numpy().reshape(20, -1)
    assert_same_scores(expected, pf.predict(pd.DataFrame({"image": list(flat)})))


def test_pyfunc_params_threshold_override_and_small_chunks(saved_model: Path, result) -> None:
    x = images(10, seed=9)
    pf = mlflow.pyfunc.load_model(str(saved_model))
    base = pf.predict(x.numpy())
    chunked = pf.predict(x.numpy(), params={"batch_size": 3})
    assert_same_scores(base, chunked)
    everything_ood = pf.predict(x.numpy(), params={"threshold": 2.0})
    assert everything_ood["is_ood"].all()
    np.testing.assert_array_equal(everything_ood["odin_score"], base["odin_score"])


def test_reference_and_record_loaders(saved_model: Path, result) -> None:
    record = mlflow_plugin.load_record(str(saved_model))
    assert isinstance(record, CalibrationRecord) and record == result.record
    ref = mlflow_plugin.load_reference(str(saved_model))
    assert list(ref.columns) == list(SCORE_COLUMNS)
    assert_same_scores(result.detector.reference_.to_frame(), ref, atol=0)


def test_record_edited_after_saving_is_refused(model_copy: Path) -> None:
    file = model_copy / "data" / "calibration_record.json"
    data = json.loads(file.read_text())
    data["threshold"] = 0.0
    file.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="changed after saving"):
        mlflow_plugin.load_model(str(model_copy))


def test_unknown_device_is_a_clear_error(saved_model: Path) -> None:
    with pytest.raises(mlflow.exceptions.MlflowException, match="device"):
        mlflow.pyfunc.load_model(str(saved_model), model_config={"device": "nonsense"})


def test_loads_and_scores_where_the_project_is_not_installed(saved_model: Path, tmp_path) -> None:
    """A subprocess hides the installed odin_monitor/mlflow_plugin; the model's code/ serves."""
    x = images(6, seed=11).numpy()
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.path = [p for p in sys.path if p not in ("", {str(Path.cwd())!r}) and
                    not p.rstrip("/").endswith("/work/main")]
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        for name in ("odin_monitor", "mlflow_plugin"):
            assert importlib.util.find_spec(name) is None, name
        import mlflow, numpy as np
        pf = mlflow.pyfunc.load_model({str(saved_model)!r})
        import odin_monitor
        assert odin_monitor.__file__.startswith({str(saved_model)!r}), odin_monitor.__file__
        pf.predict(np.load({str(tmp_path / "x.npy")!r})).to_csv({str(tmp_path / "out.csv")!r},
                                                                  index=False)
        """
    )
    root = Path(mlflow_plugin.__file__).resolve().parents[1]
    script = script.replace("/work/main", str(root))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
    out = pd.read_csv(tmp_path / "out.csv")
    pf = mlflow.pyfunc.load_model(str(saved_model))
    assert_same_scores(pf.predict(x), out)


def test_mlmodel_is_yaml_without_python_objects(saved_model: Path) -> None:
    yaml.safe_load((saved_model / "MLmodel").read_text())


def edit_mlmodel(folder: Path, edit) -> None:
    path = folder / "MLmodel"
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc))


def load_everywhere(folder: Path) -> tuple[str, str]:
    """Both loaders refuse the folder; their messages."""
    with pytest.raises(ModelLoadError) as native:
        mlflow_plugin.load_model(str(folder))
    with pytest.raises(ModelLoadError) as pyfunc:
        mlflow.pyfunc.load_model(str(folder))
    return str(native.value), str(pyfunc.value)


def test_mlmodel_without_the_record_hash_is_refused(model_copy: Path) -> None:
    edit_mlmodel(model_copy, lambda doc: doc["flavors"]["odin"].pop("calibration_sha256"))
    for message in load_everywhere(model_copy):
        assert "calibration_sha256" in message and "Re-log the detector" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("threshold", 0.0), ("temperature", 777.0), ("epsilon", 0.5), ("tpr_target", 0.5)],
)
def test_mlmodel_flavour_values_must_match_the_record(model_copy: Path, key, value) -> None:
    conf = yaml.safe_load((model_copy / "MLmodel").read_text())["flavors"]["odin"]
    assert conf[key] != value  # the edit changes the value
    edit_mlmodel(model_copy, lambda doc: doc["flavors"]["odin"].__setitem__(key, value))
    for message in load_everywhere(model_copy):
        assert f"{key}: MLmodel {value!r}" in message


def test_signature_threshold_default_must_be_the_records(model_copy: Path, result) -> None:
    """MLflow applies a param's signature default on every call: an edited one would move δ."""

    def lower_default(doc) -> None:
        params = json.loads(doc["signature"]["params"])
        for p in params:
            if p["name"] == "threshold":
                p["default"] = 0.0
        doc["signature"]["params"] = json.dumps(params)

    edit_mlmodel(model_copy, lower_default)
    with pytest.raises(
        ModelLoadError, match=r"signature gives the threshold param the default 0\.0"
    ):
        mlflow.pyfunc.load_model(str(model_copy))


def imported_modules(folder: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for file in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return names


def test_model_ships_only_what_loading_needs(saved_model: Path) -> None:
    code = saved_model / "code"
    shipped = {p.relative_to(code).as_posix() for p in code.rglob("*.py")}
    assert "odin_monitor/scoring.py" in shipped and "mlflow_plugin/flavor.py" in shipped
    for left_out in ("cli", "monitoring", "bench", "demo_data.py", "plots.py", "data.py"):
        assert not any(p.startswith(f"odin_monitor/{left_out}") for p in shipped), left_out
    imports = imported_modules(code)
    assert not {m for m in imports if m.split(".")[0] == "click"}
    assert not {
        m for m in imports if any(p in m.split(".") for p in ("bench", "cli", "monitoring"))
    }


def test_shipped_copy_does_not_hide_the_installed_package(saved_model: Path, tmp_path) -> None:
    """Loading first puts code/ on sys.path; the rest of the installed package still imports."""
    script = textwrap.dedent(
        f"""
        import mlflow
        mlflow.pyfunc.load_model({str(saved_model)!r})
        import odin_monitor
        assert odin_monitor.__file__.startswith({str(saved_model)!r}), odin_monitor.__file__
        import odin_monitor.monitoring.scorelog, odin_monitor.cli, odin_monitor.plots
        print(odin_monitor.monitoring.scorelog.__file__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300, capture_output=True
    )
    assert not out.stdout.decode().strip().startswith(str(saved_model))


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_model_logged_before_images_loads_and_scores_unchanged(tmp_path) -> None:
    """tests/fixtures/odin_model_v1: saved by the code before the image route (tensor input)."""
    import shutil

    folder = Path(shutil.copytree(FIXTURES / "odin_model_v1", tmp_path / "m"))
    x = np.load(FIXTURES / "odin_model_v1_images.npy")
    want = pd.read_csv(FIXTURES / "odin_model_v1_scores.csv")
    pf = mlflow.pyfunc.load_model(str(folder))
    assert pf.metadata.get_input_schema().is_tensor_spec()
    assert_same_scores(pf.predict(x), want)
    det = mlflow_plugin.load_model(str(folder), device="cpu")
    np.testing.assert_allclose(det.score_samples(x), want["odin_score"], rtol=0, atol=1e-6)
    assert mlflow_plugin.load_record(str(folder)).preprocessing is None
