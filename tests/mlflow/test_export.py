"""No pickle on load: refused archives and weights, and the state_dict fallback."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from odin_mlflow_testing import images, make_branchy

import mlflow_plugin
from mlflow_plugin.export import check_pt2_archive, export_classifier, load_exported
from odin_monitor import ModelLoadError, OdinDetector


class WritesMarker:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(WritesMarker(marker))


def test_pickle_in_place_of_the_archive_is_refused(model_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    (model_copy / "data" / "model.pt2").write_bytes(evil_pickle(marker))
    with pytest.raises(ModelLoadError, match="not a zip file"):
        mlflow_plugin.load_model(str(model_copy))
    with pytest.raises(ModelLoadError, match=r"Refusing to load model\.pt2"):
        mlflow.pyfunc.load_model(str(model_copy))
    assert not marker.exists()


def test_pickle_inside_the_archive_is_refused(model_copy: Path, tmp_path: Path) -> None:
    """A valid archive whose sample inputs (which torch.export.load unpickles) are a pickle."""
    marker = tmp_path / "marker.txt"
    archive = model_copy / "data" / "model.pt2"
    with zipfile.ZipFile(archive) as src:
        records = {info.filename: src.read(info) for info in src.infolist()}
    name = next(n for n in records if n.endswith("data/sample_inputs/model.pt"))
    records[name] = evil_pickle(marker)
    with zipfile.ZipFile(archive, "w") as dst:
        for n, content in records.items():
            dst.writestr(n, content)
    with pytest.raises(ModelLoadError, match=r"sample_inputs/model\.pt"):
        mlflow_plugin.load_model(str(model_copy))
    assert not marker.exists()


def test_pickled_weight_entry_is_refused(model_copy: Path, tmp_path: Path) -> None:
    archive = model_copy / "data" / "model.pt2"
    with zipfile.ZipFile(archive) as src:
        records = {info.filename: src.read(info) for info in src.infolist()}
    name = next(n for n in records if n.endswith("model_weights_config.json"))
    records[name] = records[name].replace(b'"use_pickle": false', b'"use_pickle": true')
    with zipfile.ZipFile(archive, "w") as dst:
        for n, content in records.items():
            dst.writestr(n, content)
    with pytest.raises(ModelLoadError, match="stored with pickle"):
        check_pt2_archive(archive)


def test_export_failure_names_cause_and_fallback(tmp_path: Path) -> None:
    det = OdinDetector(make_branchy(), temperature=10.0, epsilon=0.001, normalization=None)
    det.fit(images(32))
    with pytest.raises(mlflow_plugin.ModelExportError) as info:
        mlflow_plugin.save_model(det, tmp_path / "m")
    message = str(info.value)
    assert "torch.export cannot capture BranchyNet" in message
    assert "model_factory='package.module:factory'" in message
    assert "weights_only=True" in message


def test_state_dict_fallback_round_trip_and_pickle_refusal(tmp_path: Path) -> None:
    det = OdinDetector(make_branchy(), temperature=10.0, epsilon=0.001, normalization=None)
    det.fit(images(32))
    path = tmp_path / "m"
    mlflow_plugin.save_model(
        det, path, model_factory="odin_mlflow_testing:make_branchy", input_kind="tensor"
    )
    conf = mlflow.models.Model.load(path).flavors["odin"]
    assert conf["format"] == "state_dict"
    assert conf["model_factory"] == "odin_mlflow_testing:make_branchy"
    x = images(10, seed=5)
    loaded = mlflow_plugin.load_model(str(path), device="cpu")
    np.testing.assert_allclose(loaded.score_samples(x), det.score_samples(x), rtol=0, atol=1e-6)
    pf = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_allclose(
        pf.predict(x.numpy())["odin_score"], det.score_samples(x), rtol=0, atol=1e-6
    )
    # Replace the weights by a pickle of an arbitrary object: refused, nothing runs.
    marker = tmp_path / "marker.txt"
    (path / conf["model_file"]).write_bytes(evil_pickle(marker))
    with pytest.raises(ModelLoadError, match="weights_only=True"):
        mlflow_plugin.load_model(str(path))
    assert not marker.exists()


def test_wrong_factory_is_caught_when_saving(tmp_path: Path) -> None:
    det = OdinDetector(make_branchy(), temperature=10.0, epsilon=0.001, normalization=None)
    det.fit(images(16))
    with pytest.raises(ModelLoadError, match="do not fit"):
        mlflow_plugin.save_model(det, tmp_path / "m", model_factory="odin_monitor.models:resnet20")


def test_exported_module_refuses_eval_and_keeps_input_gradients(tmp_path: Path) -> None:
    from odin_mlflow_testing import make_net

    net = make_net()
    path = export_classifier(net, (3, 8, 8), tmp_path / "m.pt2")
    module = load_exported(path)
    with pytest.raises(NotImplementedError):
        module.eval()
    x = images(5).requires_grad_(True)
    module(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for n in (1, 7):  # dynamic batch
        xb = images(n, seed=n)
        torch.testing.assert_close(module(xb), net(xb), rtol=0, atol=1e-6)


def test_a_loaded_archive_exports_again(tmp_path: Path) -> None:
    """`odin-monitor log` re-saves the module loaded from calibrate's archive."""
    from odin_mlflow_testing import make_net

    net = make_net()
    loaded = load_exported(export_classifier(net, (3, 8, 8), tmp_path / "a.pt2"))
    again = load_exported(export_classifier(loaded, (3, 8, 8), tmp_path / "b.pt2"))
    xb = images(4, seed=2)
    torch.testing.assert_close(again(xb), net(xb), rtol=0, atol=1e-6)


@pytest.mark.shared_data
def test_real_resnet20_exported_equals_eager(shared_data: Path, tmp_path: Path) -> None:
    from odin_monitor.modelref import model_from_reference
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

    weights = shared_data / "cifar10_resnet20.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    net = model_from_reference("odin_monitor.models:resnet20", weights)
    x = images(24, shape=(3, 32, 32))
    det = OdinDetector(
        net, temperature=1000.0, epsilon=0.0014, normalization=CIFAR_RESNET_NORMALIZATION
    ).fit(x)
    mlflow_plugin.save_model(det, tmp_path / "m")
    loaded = mlflow_plugin.load_model(str(tmp_path / "m"), device="cpu")
    xt = images(8, seed=3, shape=(3, 32, 32))
    a, b = det.score_batch(xt), loaded.score_batch(xt)
    np.testing.assert_allclose(a.odin_score, b.odin_score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.msp, b.msp, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a.predicted_class, b.predicted_class)


def test_repeated_record_cannot_hide_a_pickle(tmp_path: Path) -> None:
    """Readers disagree on which copy of a repeated zip name they use: refuse repeats."""
    import json

    marker = tmp_path / "pwned"
    good = export_classifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)),
        (3, 2, 2),
        tmp_path / "m.pt2",
    )
    with zipfile.ZipFile(good) as z:
        names = z.namelist()
        cfg_name = next(n for n in names if n.endswith("model_weights_config.json"))
        cfg = json.loads(z.read(cfg_name))
        contents = {n: z.read(n) for n in names}
    first = next(iter(cfg["config"]))
    evil = json.loads(json.dumps(cfg))
    evil["config"][first].update(use_pickle=True, path_name="weight_evil")
    decoy = json.loads(json.dumps(cfg))
    decoy["config"]["decoy"] = dict(cfg["config"][first], path_name="weight_evil")
    top = names[0].split("/")[0]
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as w:
        for n in names:
            if n == cfg_name:
                w.writestr(n, json.dumps(evil))  # torch's reader would take this one
                w.writestr(n, json.dumps(decoy))
            else:
                w.writestr(n, contents[n])
        w.writestr(f"{top}/data/weights/weight_evil", evil_pickle(marker))
    with pytest.raises(ModelLoadError, match="more than once"):
        load_exported(bad)
    assert not marker.exists()


def test_cli_log_keeps_the_state_dict_fallback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from odin_monitor.cli import main

    det = OdinDetector(make_branchy(), temperature=10.0, epsilon=0.001, normalization=None)
    det.fit(images(32))
    calib = tmp_path / "calib"
    mlflow_plugin.save_model(det, calib / "model", model_factory="odin_mlflow_testing:make_branchy")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    res = CliRunner().invoke(main, ["--json", "log", str(calib), "--register", "branchy"], env=env)
    assert res.exit_code == 0, res.output
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    logged = mlflow_plugin.load_model("models:/branchy/1", device="cpu")
    x = images(10, seed=7)
    np.testing.assert_allclose(logged.score_samples(x), det.score_samples(x), rtol=0, atol=1e-6)
