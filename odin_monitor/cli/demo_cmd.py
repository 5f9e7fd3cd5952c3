"""``odin-monitor demo``: the whole product end to end on embedded defaults.

Train (or load) a classifier → calibrate ODIN against synthetic noise and real
photos → log and register it in a sqlite MLflow store → stream batches with an
injected OOD spike through the score log, Evidently reports and alert rules →
print where everything is. Nothing is downloaded; no server is started.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np

from odin_monitor.cli._common import EXIT_ERROR, emit, info, progress
from odin_monitor.demo_data import (
    QUICK_EPSILONS,
    QUICK_TEMPERATURES,
    DemoData,
    calibrate_demo,
    digits_demo,
    stream,
)


def _digits(seed: int) -> DemoData:
    with progress(15, "training a small CNN on scikit-learn's digits") as advance:
        return digits_demo(seed, progress=advance)


def _cifar10(data_dir: Path, weights: Path | None, model_ref: str, seed: int) -> DemoData:
    from odin_monitor.data import load_images, load_torchvision
    from odin_monitor.demo_data import photo_crops
    from odin_monitor.modelref import model_from_reference
    from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
    from odin_monitor.synthetic import gaussian_noise, uniform_noise

    if weights is None:
        raise click.UsageError("--dataset cifar10 needs --weights FILE (a state_dict for --model)")
    notes = []
    if (data_dir / "cifar10_test_lossless.npz").is_file():
        x = load_images(data_dir / "cifar10_test_lossless.npz")
        notes.append("CIFAR-10: the 1,000 lossless test images of cifar10_test_lossless.npz")
    elif (data_dir / "cifar10_test.npz").is_file():
        x = load_images(data_dir / "cifar10_test.npz", limit=2000)
        notes.append(
            "CIFAR-10: 2,000 JPEG-degraded test images of cifar10_test.npz (pipeline only)"
        )
    else:
        x, _ = load_torchvision("CIFAR10", data_dir, train=False, limit=2000)
        notes.append("CIFAR-10: 2,000 test images from the torchvision folder layout")
    order = np.random.default_rng(seed).permutation(len(x))
    x = x[order]
    half = len(x) // 2
    shape = (3, 32, 32)
    spike_file = data_dir / "ood_tinyimagenet_crop.npz"
    if spike_file.is_file():
        spike = load_images(spike_file, limit=1000)
        source = "Tiny ImageNet (crop), ood_tinyimagenet_crop.npz"
    else:
        spike = photo_crops(1000, (32, 32), 3, seed=seed + 1000, scale=2)
        source = "crops of scikit-learn's sample photos"
    return DemoData(
        name="odin-cifar10",
        model=model_from_reference(model_ref, weights),
        model_ref=model_ref,
        normalization=CIFAR_RESNET_NORMALIZATION,
        x_val=x[:half],
        x_prod=x[half:],
        ood_val={
            "gaussian": gaussian_noise(150, shape, seed),
            "uniform": uniform_noise(150, shape, seed + 1),
            "photos": photo_crops(300, (32, 32), 3, seed=seed + 2, scale=2),
        },
        ood_spike=spike,
        spike_source=source,
        notes=notes,
    )


@click.command("demo")
@click.option(
    "--out",
    default="odin-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for everything the demo writes.",
)
@click.option(
    "--dataset", type=click.Choice(["digits", "cifar10"]), default="digits", show_default=True
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="cifar10: torchvision's folder layout or the .npz files of ../shared/data.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="cifar10: the classifier's state_dict (e.g. cifar10_resnet20.pt).",
)
@click.option(
    "--model",
    "model_ref",
    default="odin_monitor.models:resnet20",
    show_default=True,
    help="cifar10: MODULE:FACTORY of the classifier.",
)
@click.option(
    "--batches", default=10, show_default=True, type=int, help="Production batches to stream."
)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option(
    "--spike-share",
    default=0.5,
    show_default=True,
    type=float,
    help="Share of OOD images injected into the last 3 batches.",
)
@click.option(
    "--full-grid", is_flag=True, help="The paper's 10x21 grid (default: a 4x5 grid, faster)."
)
@click.option("--seed", default=0, show_default=True, type=int)
def demo_command(
    out: Path,
    dataset: str,
    data_dir: Path | None,
    weights: Path | None,
    model_ref: str,
    batches: int,
    batch_size: int,
    spike_share: float,
    full_grid: bool,
    seed: int,
) -> None:
    """Run the product end to end on embedded defaults (digits: offline, ~1 minute on CPU).

    \b
    Example:
      odin-monitor demo
      odin-monitor demo --dataset cifar10 --data-dir ../shared/data \\
        --weights ../shared/data/cifar10_resnet20.pt --out odin-demo-cifar
    """
    if batches < 4:
        raise click.BadParameter(
            "need at least 4 batches (3 of them carry the spike)", param_hint="--batches"
        )
    if not 0.0 < spike_share <= 1.0:
        raise click.BadParameter("expected a share in (0, 1]", param_hint="--spike-share")
    if out.exists() and any(out.iterdir()):
        raise click.BadParameter(
            f"{out} exists and is not empty; remove it or pick another --out", param_hint="--out"
        )
    result = run_demo(
        out.resolve(),
        dataset=dataset,
        data_dir=data_dir,
        weights=weights,
        model_ref=model_ref,
        batches=batches,
        batch_size=batch_size,
        spike_share=spike_share,
        full_grid=full_grid,
        seed=seed,
    )
    emit(result, lambda: _human(result))
    if not result["alerts"]:
        info("warning: no alert fired; try a larger --spike-share")
        click.get_current_context().exit(EXIT_ERROR)


def run_demo(
    out: Path,
    *,
    dataset: str = "digits",
    data_dir: Path | None = None,
    weights: Path | None = None,
    model_ref: str = "odin_monitor.models:resnet20",
    batches: int = 10,
    batch_size: int = 64,
    spike_share: float = 0.5,
    full_grid: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """The demo as a function (the command prints what this returns)."""
    import mlflow

    import mlflow_plugin
    from odin_monitor.cli._results import human
    from odin_monitor.cli._wiring import (
        load_detector,
        monitor_config,
        use_tracking_uri,
        write_calibration,
    )

    if dataset == "cifar10":
        if data_dir is None:
            raise click.UsageError("--dataset cifar10 needs --data-dir")
        data = _cifar10(data_dir, weights, model_ref, seed)
    else:
        data = _digits(seed)
    for note in data.notes:
        info(note)

    grid = "10x21" if full_grid else f"{len(QUICK_TEMPERATURES)}x{len(QUICK_EPSILONS)}"
    n_ood = sum(len(v) for v in data.ood_val.values())
    from odin_monitor.grid import PAPER_EPSILONS
    from odin_monitor.search import DEFAULT_SEARCH, DEFAULT_SUBSET_FRACTION, progress_total

    total = progress_total(
        len(data.x_val),
        n_ood,
        DEFAULT_SEARCH,
        DEFAULT_SUBSET_FRACTION,
        PAPER_EPSILONS if full_grid else QUICK_EPSILONS,
    )
    with progress(total, f"calibrating ({grid} grid)") as advance:
        result = calibrate_demo(
            data, full_grid=full_grid, progress=advance, id_name=f"{dataset} validation"
        )
    rec = result.record
    info(
        f"chosen T={rec.temperature:g}, ε={rec.epsilon:g}, δ={rec.threshold:.6g}; validation "
        f"FPR@95%TPR {100 * rec.metrics['fpr_at_tpr']:.1f}% "
        f"(MSP {100 * rec.metrics.get('msp_fpr_at_tpr', float('nan')):.1f}%)"
    )
    calib_dir = out / "calibration"
    write_calibration(result, calib_dir, data.model_ref)

    tracking = use_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    experiment = "odin-demo"
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(out / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment)
    info("logging and registering the detector in MLflow")
    with mlflow.start_run(run_name="calibration"):
        model_info = mlflow_plugin.log_model(
            result, "odin_detector", registered_model_name=data.name
        )
        for p in calib_dir.glob("*.png"):
            mlflow.log_artifact(str(p), artifact_path="calibration")
    version = str(model_info.registered_model_version)
    mlflow_plugin.set_alias(data.name, "champion", version)
    model_uri = f"models:/{data.name}@champion"

    loaded = load_detector(model_uri, device=None)
    monitor_dir = out / "monitoring"
    config = monitor_config(monitor_dir, mlflow_metrics=True)
    inbox = out / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    spike_from = batches - 3
    results = []
    lines = []
    # Simulated arrival times, one batch a minute up to now, so dashboards show a series.
    start = datetime.now(timezone.utc) - timedelta(minutes=batches - 1)
    for b, images in enumerate(stream(data, batches, batch_size, spike_from, spike_share, seed)):
        path = inbox / f"batch-{b:04d}.npz"
        np.savez_compressed(path, images=images)
        stamp = (start + timedelta(minutes=b)).isoformat()
        # The batch id is the hash of the file, as for `odin-monitor score`: one identity.
        res = loaded.process(path, config, created_at=stamp)
        results.append(res)
        lines.append(human(res) + ("   <- OOD spike injected" if b >= spike_from else ""))
        info(lines[-1])
    alerts = [a for r in results for a in r.alerts]
    spike_reports = [r.html_path for r in results[spike_from:] if r.html_path]
    return {
        "out": str(out),
        "dataset": dataset,
        "registered_model": data.name,
        "version": version,
        "model_uri": model_uri,
        "tracking_uri": tracking,
        "calibration": {
            "temperature": rec.temperature,
            "epsilon": rec.epsilon,
            "threshold": rec.threshold,
            "metrics": dict(rec.metrics),
            "dir": str(calib_dir),
        },
        "batches": [
            {
                "batch_id": r.batch_id,
                "ood_rate": None if r.record is None else r.record.ood_rate,
                "spike": i >= spike_from,
                "alerts": len(r.alerts),
                "html": r.html_path,
            }
            for i, r in enumerate(results)
        ],
        "alerts": [a.to_dict() for a in alerts],
        "alerts_file": str(monitor_dir / "alerts.jsonl"),
        "report": spike_reports[-1] if spike_reports else None,
        "score_log": str(monitor_dir / "scores.db"),
        "workspace": str(monitor_dir / "workspace"),
        "spike_source": data.spike_source,
        "commands": [
            f"mlflow ui --backend-store-uri {tracking} --port 5000",
            f"evidently ui --workspace {monitor_dir / 'workspace'} --port 8000",
            f"odin-monitor score --tracking-uri {tracking} --model-uri {model_uri} "
            f"--monitor-dir {monitor_dir} {inbox / 'batch-0000.npz'}",
        ],
    }


def _human(r: dict[str, Any]) -> str:
    c = r["calibration"]
    lines = [
        "",
        f"Demo finished in {r['out']}",
        f"  detector      {r['model_uri']} (version {r['version']}): T={c['temperature']:g}, "
        f"ε={c['epsilon']:g}, δ={c['threshold']:.6g}",
        f"  calibration   {c['dir']} (grid.csv, grid.png, roc.png, histograms.png, record.json)",
        f"  score log     {r['score_log']}",
        f"  alerts        {len(r['alerts'])} fired; {r['alerts_file']}",
        f"  spike report  {r['report']}",
        f"  OOD spike     {r['spike_source']}",
        "",
        "Look at it:",
        *(f"  {cmd}" for cmd in r["commands"]),
    ]
    return "\n".join(lines)
