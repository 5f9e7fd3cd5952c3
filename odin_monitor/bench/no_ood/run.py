"""Running the no-OOD benchmark: score grids (cached), each rule's pair, test metrics.

Grids come from :func:`odin_monitor.scoring.grid_scores` (through
:class:`~odin_monitor.bench.no_ood.cache.ScoreCache`), grid choices are the library's
(:attr:`odin_monitor.grid.CalibrationGrid.best`), the jigsaw set is
:func:`odin_monitor.synthetic.jigsaw`, metrics :func:`odin_monitor.ood_metrics`; with
``verify_calibrate`` the first depth also runs :func:`odin_monitor.calibrate` with
``strategy="jigsaw"`` and checks it equals R4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from odin_monitor.bench.common import (
    DEPTHS,
    Log,
    Stopwatch,
    command_line,
    load_resnet,
    machine_info,
    resolve_data_dir,
)
from odin_monitor.bench.no_ood.cache import Pair, ScoreCache
from odin_monitor.bench.no_ood.config import (
    MSP,
    NO_OOD_RULES,
    REAL_SETS,
    REF,
    TEST_SETS,
    NoOodConfig,
    check_config,
)
from odin_monitor.bench.no_ood.data import NoOodData, load_data
from odin_monitor.bench.no_ood.results import CalibrateCheck, DepthNoOod, NoOodResult, RuleChoice
from odin_monitor.bench.no_ood.rules import grid_choice, mean_score_epsilon, meets_goal, select_rule
from odin_monitor.calibration import calibrate
from odin_monitor.metrics import ood_metrics
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION

__all__ = ["check_with_calibrate", "evaluate", "run_depth", "run_no_ood"]


def _pairs(cfg: NoOodConfig, data: NoOodData, cache: ScoreCache) -> dict[str, Pair]:
    """Each rule's ``(T, ε)``, from validation data only."""
    temps, eps = cfg.temperatures, cfg.epsilons
    val = data.val
    s_id = cache.grid("id_val", val["id_val"], temps, eps)
    choose = {
        REF: "crop_val",
        "R0": "noise_val",
        "R4": "jigsaw_val",
    }
    pairs: dict[str, Pair] = {MSP: (1.0, 0.0), "R1": cfg.paper_default}
    for rule, name in choose.items():
        s_ood = cache.grid(name, val[name], temps, eps)
        pairs[rule] = grid_choice(s_id, s_ood, temps, eps, cfg.tpr_target)
    s_r2 = cache.grid("id_val", val["id_val"], [cfg.r2_temperature], cfg.r2_epsilons)[0]
    pairs["R2"] = (cfg.r2_temperature, mean_score_epsilon(s_r2, cfg.r2_epsilons))
    return {r: pairs[r] for r in (REF, MSP, *NO_OOD_RULES)}


def run_depth(
    depth: int, model: nn.Module, data: NoOodData, cfg: NoOodConfig, log: Log
) -> DepthNoOod:
    """One depth: the rules' pairs on validation, then every rule on every test set."""
    clock = Stopwatch()
    cache = ScoreCache(model, depth, cfg.cache_dir, batch_size=cfg.batch_size, device=cfg.device)
    log(f"[{clock}] ResNet-{depth}: validation grids")
    pairs = _pairs(cfg, data, cache)
    log(f"[{clock}] ResNet-{depth}: pairs {pairs}; scoring the chosen pairs")
    wanted = sorted(set(pairs.values()))
    s_idv = cache.at("id_val", data.val["id_val"], wanted)
    s_crop = cache.at("crop_val", data.val["crop_val"], wanted)
    choices = {}
    for rule, p in pairs.items():
        m = ood_metrics(s_idv[p], s_crop[p], cfg.tpr_target)
        choices[rule] = RuleChoice(rule, p[0], p[1], m["fpr_at_tpr"], m["auroc"])
    s_idt = cache.at("id_test", data.test["id_test"], wanted)
    test: dict[str, dict[str, dict[str, float]]] = {r: {} for r in pairs}
    for name, key in TEST_SETS.items():
        s = cache.at(key, data.test[key], wanted)
        for rule, p in pairs.items():
            test[rule][name] = ood_metrics(s_idt[p], s[p], cfg.tpr_target)
    goal = {
        rule: tuple(
            name
            for name in REAL_SETS
            if not meets_goal(
                test[rule][name]["fpr_at_tpr"],
                test[REF][name]["fpr_at_tpr"],
                test[MSP][name]["fpr_at_tpr"],
            )
        )
        for rule in NO_OOD_RULES
    }
    log(f"[{clock}] ResNet-{depth}: done ({len(cache.computed)} blocks computed)")
    return DepthNoOod(depth, choices, test, goal, tuple(cache.computed), clock.seconds)


def check_with_calibrate(
    depth: int, model: nn.Module, data: NoOodData, cfg: NoOodConfig
) -> CalibrateCheck:
    """Run ``calibrate(strategy="jigsaw")`` fresh and compare it with the run's R4 cubes.

    The cubes come from the cache where it holds them, so this also verifies a cache
    seeded from elsewhere.
    """
    x_id = data.val["id_val"]
    res = calibrate(
        model,
        x_id,
        normalization=CIFAR_RESNET_NORMALIZATION,
        temperatures=cfg.temperatures,
        epsilons=cfg.epsilons,
        tpr_target=cfg.tpr_target,
        batch_size=cfg.batch_size,
        device=cfg.device,
        n_synthetic=cfg.n_jigsaw,
        strategy="jigsaw",
    )
    cache = ScoreCache(model, depth, cfg.cache_dir, batch_size=cfg.batch_size, device=cfg.device)
    s_id = cache.grid("id_val", x_id, cfg.temperatures, cfg.epsilons)
    s_jig = cache.grid("jigsaw_val", data.val["jigsaw_val"], cfg.temperatures, cfg.epsilons)
    return CalibrateCheck(
        depth=depth,
        max_abs_diff_id=float(np.abs(res.grid.id_scores - s_id).max()),
        max_abs_diff_jigsaw=float(np.abs(res.grid.ood_scores - s_jig).max()),
        calibrate_pair=res.chosen,
        r4_pair=grid_choice(s_id, s_jig, cfg.temperatures, cfg.epsilons, cfg.tpr_target),
    )


def evaluate(
    models: Mapping[int, nn.Module],
    data: NoOodData,
    cfg: NoOodConfig,
    *,
    verify_calibrate: bool = False,
    log: Log | None = None,
) -> NoOodResult:
    """Run the protocol on given models and data (the file-free core of :func:`run_no_ood`)."""
    check_config(cfg)
    sink: Log = log or (lambda _line: None)
    check = None
    if verify_calibrate:
        first = cfg.depths[0]
        sink(f"ResNet-{first}: calibrate(strategy='jigsaw') vs the run's R4 cubes")
        check = check_with_calibrate(first, models[first], data, cfg)
        sink(f"  {check}")
    depths = tuple(run_depth(d, models[d], data, cfg, sink) for d in cfg.depths)
    val = {r: {d.depth: d.choices[r].val_fpr for d in depths} for r in NO_OOD_RULES}
    winner, ranking = select_rule(
        val,
        {d.depth: d.choices[REF].val_fpr for d in depths},
        {d.depth: d.choices[MSP].val_fpr for d in depths},
    )
    return NoOodResult(
        config=cfg,
        depths=depths,
        winner=winner,
        ranking=ranking,
        calibrate_check=check,
        machine=machine_info(cfg.device),
        command=command_line(),
    )


def run_no_ood(
    *,
    data_dir: str | Path | None = None,
    depths: Sequence[int] = DEPTHS,
    cache_dir: str | Path | None = None,
    verify_calibrate: bool = False,
    log: Log | None = None,
    **sizes: int,
) -> NoOodResult:
    """Run the no-OOD benchmark on the shared data folder.

    Args:
        data_dir: The shared data folder (default: ``$ODIN_SHARED_DATA`` or ``../shared/data``).
        depths: ResNet depths (20, 32, 44, 56).
        cache_dir: Folder of cached score grids, read and written (``None``: none).
        verify_calibrate: Also run ``calibrate(strategy="jigsaw")`` at the first depth
            and compare it with the run's R4 (and the cache's cubes).
        log: Called with one line per step.
        **sizes: Sample sizes and other :class:`NoOodConfig` fields (``n_id_val``, ...).

    Raises:
        DataLoadError: The data folder or a file in it is missing.

    Returns:
        :class:`NoOodResult`; render it with
        :func:`~odin_monitor.bench.no_ood.report.format_markdown`.
    """
    folder = resolve_data_dir(data_dir)
    cfg = NoOodConfig(
        data_dir=folder,
        depths=tuple(int(d) for d in depths),
        cache_dir=None if cache_dir is None else Path(cache_dir),
        **sizes,  # type: ignore[arg-type]
    )
    check_config(cfg)
    data = load_data(cfg, folder)
    models = {d: load_resnet(d, folder, cfg.device) for d in cfg.depths}
    return evaluate(models, data, cfg, verify_calibrate=verify_calibrate, log=log)
