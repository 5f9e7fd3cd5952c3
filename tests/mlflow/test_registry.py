"""Registry: version tags, aliases on request, recalibration."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from odin_mlflow_testing import images, make_net

import mlflow_plugin
from mlflow_plugin.tags import calibration_tags
from odin_monitor import calibrate


def test_register_tags_versions_and_sets_no_alias(tracking: str, result) -> None:
    info = mlflow_plugin.log_model(result, "detector", registered_model_name="odin-test")
    client = MlflowClient()
    mv = client.get_model_version("odin-test", str(info.registered_model_version))
    rec = result.record
    tags = {k: v for k, v in mv.tags.items() if k.startswith("odin.")}
    assert float(tags["odin.temperature"]) == rec.temperature
    assert float(tags["odin.epsilon"]) == rec.epsilon
    assert float(tags["odin.threshold"].split()[0]) == pytest.approx(rec.threshold, rel=1e-5)
    assert f"spread {rec.threshold_spread:.4g}" in tags["odin.threshold"]
    assert float(tags["odin.tpr_target"]) == rec.tpr_target
    assert tags["odin.calibration_sha256"] == rec.sha256()
    m = rec.metrics
    assert tags["odin.val_fpr"] == (
        f"{100 * m['fpr_at_tpr']:.1f}% (MSP {100 * m['msp_fpr_at_tpr']:.1f}%)"
    )
    assert tags["odin.val_auroc"].startswith(f"{100 * m['auroc']:.1f}% (MSP ")
    assert tags["odin.selection"].startswith("jigsaw (no OOD data")
    assert len(tags) <= 10, sorted(tags)  # a short set a person reads; the rest is in the record
    # The description is written from the record.
    assert mv.description.startswith(f"ODIN detector calibrated {rec.created_at}: T=")
    assert "OOD validation: jigsaw" in mv.description and rec.sha256() in mv.description
    assert client.get_registered_model("odin-test").aliases == {}
    # The registered model says what it is; the logging run carries the version's summary.
    model_text = client.get_registered_model("odin-test").description
    assert model_text.startswith("ODIN out-of-distribution detector")
    assert "models:/odin-test@champion" in model_text
    run = client.get_run(mv.run_id)
    assert run.data.tags["mlflow.note.content"] == mv.description
    # A description the user wrote is kept when another version is registered.
    client.update_registered_model("odin-test", description="ours: do not touch")
    mlflow_plugin.log_model(result, "detector", registered_model_name="odin-test")
    assert client.get_registered_model("odin-test").description == "ours: do not touch"
    mlflow_plugin.set_alias("odin-test", "champion", mv.version)
    det = mlflow_plugin.load_by_alias("odin-test", "champion", device="cpu")
    x = images(8, seed=2)
    np.testing.assert_allclose(det.score_samples(x), result.detector.score_samples(x), atol=1e-6)


def test_recalibration_makes_a_new_version_and_keeps_the_old(tracking: str, result) -> None:
    with mlflow.start_run():
        info1 = mlflow_plugin.log_model(result, "detector", input_kind="tensor")
    v1 = mlflow_plugin.register_detector(info1.model_uri, "odin-recal")
    mlflow_plugin.set_alias("odin-recal", "champion", v1.version)
    x = images(10, seed=21)
    before = mlflow.pyfunc.load_model("models:/odin-recal/1").predict(x.numpy())

    # Same classifier, new validation data and a different tpr_target.
    result2 = calibrate(
        make_net(),
        images(80, seed=99),
        normalization=None,
        temperatures=[1.0, 1000.0],
        epsilons=[0.0, 0.002],
        tpr_target=0.9,
    )
    with mlflow.start_run():
        info2 = mlflow_plugin.log_model(result2, "detector", input_kind="tensor")
    v2 = mlflow_plugin.register_detector(info2.model_uri, "odin-recal")
    assert (str(v1.version), str(v2.version)) == ("1", "2")
    assert v2.tags == {**v2.tags, **calibration_tags(result2.record)}
    assert v1.tags["odin.calibration_sha256"] != v2.tags["odin.calibration_sha256"]
    # The alias did not move; version 1 still loads and scores exactly as before.
    assert str(MlflowClient().get_model_version_by_alias("odin-recal", "champion").version) == "1"
    after = mlflow.pyfunc.load_model("models:/odin-recal@champion").predict(x.numpy())
    assert before.equals(after)
    diff = mlflow_plugin.compare_calibrations("odin-recal", 1, 2)
    assert list(diff.columns) == ["v1", "v2", "equal"]
    assert not diff.loc["tpr_target", "equal"] and diff.loc["tpr_target", "v2"] == 0.9
    assert not diff.loc["calibration_sha256", "equal"]
    assert diff.loc["input_shape", "equal"]
    mlflow_plugin.set_alias("odin-recal", "champion", 2)
    assert mlflow_plugin.load_by_alias("odin-recal").tpr_target == 0.9
    assert mlflow_plugin.compare_calibrations("odin-recal", 1, "champion").shape == diff.shape
