"""``odin-monitor calibrate``: choose T and ε, set δ, save the detector and its grid."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from odin_monitor.cli._common import compile_option, emit, info, parse_floats, progress
from odin_monitor.cli._wiring import NORMALIZATIONS, normalization_from_options, write_calibration


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise click.BadParameter(f"expected HxW such as 32x32, got {text!r}") from err
    return h, w


def _check_search_option(
    ctx: click.Context, param: click.Parameter, value: float | None
) -> float | None:
    """Validate ``--subset-fraction`` / ``--margin-z`` by :func:`~odin_monitor.search.check_search`.

    ``None`` (not given) passes untouched, and without importing the search (torch):
    ``calibrate --help`` stays light.
    """
    if value is None:
        return None
    from odin_monitor.errors import InputValidationError
    from odin_monitor.search import DEFAULT_MARGIN_Z, DEFAULT_SUBSET_FRACTION, check_search

    given = {"subset_fraction": DEFAULT_SUBSET_FRACTION, "margin_z": DEFAULT_MARGIN_Z}
    given[str(param.name)] = value
    try:
        check_search("halving", given["subset_fraction"], given["margin_z"])
    except InputValidationError as err:
        # check_search speaks Python; the advice it gives is a flag here.
        raise click.BadParameter(str(err).replace("search='full'", "--search full")) from err
    return value


def _search_summary(search: str | None, finished: np.ndarray | None, asked: str) -> str:
    """Which search ran and, when it spared pairs, how many it finished on every image.

    Example:
        >>> import numpy as np
        >>> _search_summary("halving", np.array([[True, False], [True, True]]), "halving")
        'halving search: 3 of 4 pairs finished on every image'
        >>> _search_summary("full", None, "halving")
        'full search (the sets are too small to halve)'
    """
    if search in ("halving", "coarse-to-fine") and finished is not None:
        return (
            f"{search} search: {int(finished.sum())} of {finished.size} pairs finished on "
            "every image"
        )
    if search == "full" and asked == "halving":
        return "full search (the sets are too small to halve)"
    return f"{search} search"


@click.command("calibrate")
@click.option(
    "--model",
    "model_ref",
    required=True,
    metavar="MODULE:FACTORY",
    help="Importable factory returning the classifier, e.g. odin_monitor.models:resnet20.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="state_dict file, loaded with torch.load(weights_only=True).",
)
@click.option(
    "--id-val",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="In-distribution validation images: .npz/.npy or a folder of images.",
)
@click.option(
    "--ood-val",
    multiple=True,
    metavar="[NAME=]PATH",
    help="OOD validation images (repeatable; never your test sets). "
    "Default: the paper's synthetic Gaussian + Uniform noise.",
)
@click.option(
    "--normalization",
    "preset",
    type=click.Choice(sorted(NORMALIZATIONS)),
    help="The model's input normalisation preset ('none' = raw [0,1] pixels); default: "
    "what the model factory says (shipped models carry it).",
)
@click.option("--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406 (with --std).")
@click.option("--std", help="Per-channel std, e.g. 0.229,0.224,0.225 (with --mean).")
@click.option(
    "--strategy",
    type=click.Choice(["jigsaw", "noise"]),
    help="Without --ood-val: the rule that chooses (T, ε) from in-distribution data only "
    "(default jigsaw: shuffled patches of the ID images stand in for OOD; noise: the "
    "paper's Gaussian + Uniform, which transfers poorly to natural images).",
)
@click.option("--temperatures", help="Comma-separated T grid (default: the paper's 10 values).")
@click.option("--epsilons", help="Comma-separated ε grid, pixel units (default: paper's 21).")
@click.option("--tpr-target", default=0.95, show_default=True, type=float)
@click.option(
    "--search",
    type=click.Choice(["coarse-to-fine", "halving", "full"]),
    default="coarse-to-fine",
    show_default=True,
    help="How the T x ε grid is searched: coarse-to-fine scores every T at ε 0.001 apart "
    "on every image, estimates the other ε from those logits and finishes only the pairs "
    "whose estimate could still win; halving scores every pair on a subset, then only the "
    "pairs near the subset's best on every image (falls back to full when a subset would "
    "hold under 64 images); full scores every pair on every image. Trade-off: "
    "coarse-to-fine cost about half of full on the paper's grid (0.17-0.20x a naive loop "
    "over the pairs, docs/RESULTS.md), halving about as much as full where many pairs lie "
    "within its subset's noise; either can miss full's pair when its estimates mislead.",
)
@click.option(
    "--subset-fraction",
    type=float,
    metavar="FLOAT",
    callback=_check_search_option,
    help="Halving: share of each validation set, in (0, 1), on which every pair is scored "
    "first (default 0.25). Trade-off: larger misses the best pair more rarely, at more "
    "cost.",
)
@click.option(
    "--margin-z",
    type=float,
    metavar="FLOAT",
    callback=_check_search_option,
    help="Halving: pairs whose subset FPR is within this many binomial standard errors "
    "(>= 0) of the subset's best are finished on every image (default 4). Trade-off: "
    "larger misses the best pair more rarely, and finishes more pairs.",
)
@click.option("--limit", type=int, help="Use only the first N images of each set.")
@click.option("--image-size", help="HxW for folders of images of other sizes, e.g. 32x32.")
@click.option(
    "--fit",
    type=click.Choice(["resize", "crop"]),
    default="resize",
    show_default=True,
    help="How OOD folder images of another size are fitted: the model's resize, or a "
    "random crop (the paper's two Tiny ImageNet variants).",
)
@click.option(
    "--resize",
    "resize_mode",
    type=click.Choice(["exact", "shorter-side-crop"]),
    default="exact",
    show_default=True,
    help="How the served model resizes an image file of another size (stored in the record).",
)
@click.option(
    "--interpolation",
    type=click.Choice(["bilinear", "bicubic", "nearest", "area"]),
    default="bilinear",
    show_default=True,
    help="Interpolation of that resize (antialiased where it applies).",
)
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available).")
@compile_option("false", "; the grid's forwards on perturbed inputs, the gradients stay eager")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of synthetic sets.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="New folder for model/, record.json, grid.csv and plots.",
)
def calibrate_command(
    model_ref: str,
    weights: Path | None,
    id_val: Path,
    ood_val: tuple[str, ...],
    preset: str | None,
    mean: str | None,
    std: str | None,
    strategy: str | None,
    temperatures: str | None,
    epsilons: str | None,
    tpr_target: float,
    search: str,
    subset_fraction: float | None,
    margin_z: float | None,
    limit: int | None,
    image_size: str | None,
    fit: str,
    resize_mode: str,
    interpolation: str,
    batch_size: int,
    device: str | None,
    compile_setting: str,
    seed: int,
    out: Path,
) -> None:
    """Calibrate ODIN for a classifier: choose T and ε on OOD validation data, set δ.

    Writes OUT/model (an MLflow `odin` model folder, ready for `odin-monitor log`),
    OUT/record.json, OUT/grid.csv and the plots grid.png, roc.png, histograms.png.

    \b
    Example:
      odin-monitor calibrate --model odin_monitor.models:resnet20 \\
        --weights ../shared/data/cifar10_resnet20.pt --normalization imagenet \\
        --id-val ../shared/data/cifar10_test_lossless.npz \\
        --ood-val tin_crop=../shared/data/ood_tinyimagenet_crop.npz --limit 500 \\
        --out calib-resnet20
    """
    import torch

    from odin_monitor import calibrate
    from odin_monitor.calibration import PAPER_EPSILONS, PAPER_TEMPERATURES
    from odin_monitor.data import load_images, load_labels
    from odin_monitor.modelref import model_from_reference, reference_config
    from odin_monitor.preprocess import Preprocessing

    factory = reference_config(model_ref)
    norm = normalization_from_options(
        preset, parse_floats(mean, "--mean"), parse_floats(std, "--std"), factory
    )
    temps = parse_floats(temperatures, "--temperatures") or PAPER_TEMPERATURES
    eps = parse_floats(epsilons, "--epsilons") or PAPER_EPSILONS
    if strategy is not None and ood_val:
        raise click.UsageError("--strategy chooses without OOD data: drop it or --ood-val")
    if out.exists() and any(out.iterdir()):
        raise click.BadParameter(
            f"{out} exists and is not empty; choose a new folder", param_hint="--out"
        )
    size = _parse_size(image_size)
    if size is None and factory is not None:
        size = (factory.input_shape[1], factory.input_shape[2])
    model = model_from_reference(model_ref, weights)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    channels = factory.input_shape[0] if factory is not None else 3

    def spec_for(hw: tuple[int, int], c: int) -> Preprocessing:
        return Preprocessing(
            size=hw,
            mode="RGB" if c == 3 else "L",
            resize="exact" if resize_mode == "exact" else "shorter_side_crop",
            interpolation=interpolation,  # type: ignore[arg-type]
        )

    spec = spec_for(size, channels) if size is not None and channels in (1, 3) else None
    x_id = load_images(id_val, size=size, limit=limit, preprocessing=spec, report=info)
    labels = load_labels(id_val, limit=limit)
    shape = (int(x_id.shape[2]), int(x_id.shape[3]))
    if spec is None and x_id.shape[1] in (1, 3):
        spec = spec_for(shape, int(x_id.shape[1]))
    oods = {}
    for item in ood_val:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (Path(item).stem, item)
        oods[name] = load_images(
            path,
            size=size or shape,
            fit="crop" if fit == "crop" else "resize",
            seed=seed,
            limit=limit,
            preprocessing=spec if fit == "resize" else None,
            report=info,
        )
    n_ood = sum(len(v) for v in oods.values()) if oods else len(x_id)
    info(
        f"calibrating on {len(x_id)} in-distribution and {n_ood} OOD validation images, "
        f"{len(temps)}x{len(eps)} grid, device {device}"
    )
    from odin_monitor.compiled import parse_compile_setting, resolve_compile
    from odin_monitor.search import DEFAULT_MARGIN_Z, DEFAULT_SUBSET_FRACTION, progress_total

    fraction = DEFAULT_SUBSET_FRACTION if subset_fraction is None else subset_fraction
    z = DEFAULT_MARGIN_Z if margin_z is None else margin_z
    total = progress_total(len(x_id), n_ood, search, fraction, eps)
    with progress(total, "calibrating") as advance:
        result = calibrate(
            model,
            x_id,
            oods or None,
            normalization=norm,
            temperatures=temps,
            epsilons=eps,
            tpr_target=tpr_target,
            batch_size=batch_size,
            device=device,
            seed=seed,
            id_name=str(id_val),
            progress=advance,
            preprocessing=spec,
            strategy=strategy if not oods else None,  # type: ignore[arg-type]
            y_id_val=labels,
            search=search,  # type: ignore[arg-type]
            subset_fraction=fraction,
            margin_z=z,
            compile=resolve_compile(parse_compile_setting(compile_setting), torch.device(device)),
        )
    write_calibration(result, out, model_ref)
    rec = result.record
    m = rec.metrics
    for warning in rec.warnings:
        click.echo(f"warning: {warning}", err=True)
    searched = _search_summary(
        rec.search, None if result.search is None else result.search.finished, search
    )
    msp_fpr, msp_auroc = m.get("msp_fpr_at_tpr", float("nan")), m.get("msp_auroc", float("nan"))
    emit(
        {"out": str(out), "record": rec.to_dict(), "calibration_sha256": rec.sha256()},
        lambda: (
            f"T={rec.temperature:g}  ε={rec.epsilon:g}  δ={rec.threshold:.6g}  "
            f"(chosen by {rec.strategy}, {searched}; validation FPR@{100 * rec.tpr_target:g}%TPR "
            f"{100 * m['fpr_at_tpr']:.2f}% vs MSP {100 * msp_fpr:.2f}%, "
            f"AUROC {100 * m['auroc']:.2f}% vs MSP {100 * msp_auroc:.2f}%)\n"
            + (
                f"classifier accuracy on the validation images: {100 * m['val_accuracy']:.1f}%\n"
                if "val_accuracy" in m
                else ""
            )
            + f"{len(rec.warnings)} warning(s) from the calibration's checks\n"
            f"preprocessing of image files: "
            f"{rec.preprocessing.describe() if rec.preprocessing else 'none (tensors only)'}\n"
            f"model folder: {out / 'model'}\nrecord: {out / 'record.json'}\n"
            f"grid: {out / 'grid.csv'}, {out / 'grid.png'}\n"
            f"next: odin-monitor log {out} --register NAME --alias champion"
        ),
    )
