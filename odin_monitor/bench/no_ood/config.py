"""What determines a no-OOD run: the protocol (stated before any test result), its grids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from odin_monitor.bench.common import DEPTHS
from odin_monitor.errors import InputValidationError

__all__ = [
    "GOAL_FACTOR",
    "GOAL_SLACK",
    "MSP",
    "NO_OOD_RULES",
    "PAPER_DEFAULT",
    "PROTOCOL",
    "REAL_SETS",
    "REF",
    "RULE_NAMES",
    "STUDY_EPSILONS",
    "STUDY_R2_EPSILONS",
    "STUDY_TEMPERATURES",
    "TEST_SETS",
    "NoOodConfig",
    "check_config",
]

#: The study's grid G_ref: the paper's T without 200 and 500, ε in steps of 0.0004.
STUDY_TEMPERATURES: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0)
STUDY_EPSILONS: tuple[float, ...] = tuple(round(0.0004 * i, 6) for i in range(11))
#: R2's ε range E_ext: {0, 0.0005, ..., 0.01} ∪ {0.011, ..., 0.03} (41 values).
STUDY_R2_EPSILONS: tuple[float, ...] = tuple(
    sorted(
        {round(0.0005 * i, 6) for i in range(21)} | {round(0.011 + 0.001 * i, 6) for i in range(20)}
    )
)
PAPER_DEFAULT = (1000.0, 0.0014)

REF, MSP = "REF", "MSP"
#: The no-OOD rules, in the order of the protocol's simplicity tie-break (R1 < R2 < R4 < R0).
NO_OOD_RULES: tuple[str, ...] = ("R1", "R2", "R4", "R0")
RULE_NAMES: dict[str, str] = {
    REF: "OOD-tuned (TIN crop validation)",
    MSP: "MSP (T=1, ε=0)",
    "R0": "noise (Gaussian+Uniform validation)",
    "R1": "paper default (T=1000, ε=0.0014)",
    "R2": "mean ID score (T=1000, ε search)",
    "R4": "jigsaw (library default)",
}
#: Test sets: display name -> key of the data; the first three are the real OOD sets.
TEST_SETS: dict[str, str] = {
    "TIN crop": "crop_test",
    "TIN resize (Pillow)": "resize_test",
    "TIN resize (ODIN authors')": "resize_odin_test",
    "Gaussian": "gauss_test",
    "Uniform": "unif_test",
}
REAL_SETS: tuple[str, ...] = tuple(TEST_SETS)[:3]
#: The goal (issue 12): FPR <= GOAL_FACTOR x FPR_REF + GOAL_SLACK, and below MSP.
GOAL_FACTOR, GOAL_SLACK = 1.15, 0.02

PROTOCOL = """\
Written before any test-split result was computed or looked at (the study of issue 12).

* **Data.** ID = `cifar10_test_lossless.npz` (1,000 images), permuted by
  `RandomState(0)`: the first 500 are ID validation, the next 500 ID test. Tiny ImageNet rows
  permuted by `RandomState(12)`: rows[:1000] = TIN-crop *validation* (crop file only),
  rows[1000:2500] = the test rows of all three TIN files (crop, Pillow resize, the ODIN
  authors' resize): no source image is in both validation and test. Noise test: the data
  README's recipe with `RandomState(0)` (500 Gaussian, then 500 Uniform, ×255 rounded to
  uint8); noise validation (R0 only): the same recipe with `RandomState(1)`, 150 + 150.
  Jigsaw pseudo-OOD (R4): the first 400 ID-validation images, 4×4 patches of 8×8 px
  shuffled per image (`odin_monitor.synthetic.jigsaw`, `RandomState(3)`).
* **Scoring.** `odin_monitor.scoring.grid_scores`, ImageNet mean/std normalisation.
  Grid G_ref: T ∈ {1, 2, 5, 10, 20, 50, 100, 1000} × ε ∈ {0, 0.0004, …, 0.004} (11).
  E_ext = {0, 0.0005, …, 0.01} ∪ {0.011, …, 0.03} (41 values) for R2.
* **REF (OOD-tuned).** The G_ref pair minimising FPR@95%TPR on ID validation vs TIN-crop
  validation (the library's tie-break: lower FPR, higher AUROC, smaller T, smaller ε).
  MSP = (T=1, ε=0).
* **No-OOD rules.** R0 noise: the G_ref pair minimising FPR vs the noise validation set
  (pooled). R1 paper default: T=1000, ε=0.0014. R2 (Generalized-ODIN's ε search): T=1000,
  the ε of E_ext maximising the mean ID-validation score (ties: smaller ε). R4 jigsaw: the
  G_ref pair minimising FPR vs the jigsaw set (what `odin_monitor.calibrate` does without
  OOD data).
* **Selection among the rules (validation splits only, never test).** Per rule and depth,
  on ID validation vs TIN-crop validation: excess = FPR_rule − (1.15·FPR_REF + 0.02). Rules
  with FPR_rule < FPR_MSP at every depth rank first; then the lowest worst-case (max over
  depths) excess; within 0.5 points of it the lower mean ratio FPR_rule/FPR_REF, then the
  simpler rule (R1 < R2 < R4 < R0). FPR_REF on crop validation is an in-sample optimum, so
  this is conservative for the rules.
* **Test report.** Per depth, rule (+REF, MSP) and test set (TIN crop, TIN resize Pillow,
  TIN resize ODIN, Gaussian, Uniform): FPR@95%TPR (δ = 5% quantile of the ID-test scores,
  `ood_metrics`), AUROC, the ratio to REF. Goal, on each real (TIN) set:
  FPR_rule ≤ 1.15·FPR_REF + 0.02 and FPR_rule < FPR_MSP.
"""


@dataclass(frozen=True)
class NoOodConfig:
    """Everything that determines a no-OOD run (printed with the results).

    Attributes:
        data_dir: The shared data folder.
        depths: ResNet depths.
        temperatures: G_ref's ``T`` (REF, R0, R4 choose on it; must hold 1 for MSP).
        epsilons: G_ref's ``ε`` (must hold 0 for MSP).
        r2_temperature: R2's fixed ``T``.
        r2_epsilons: R2's ``ε`` range (ascending).
        paper_default: R1's ``(T, ε)``.
        n_id_val: ID validation images (the rest, up to ``n_id_test``, is ID test).
        n_id_test: ID test images.
        n_tin_val: TIN-crop validation rows (REF only).
        n_tin_test: TIN test rows (each of the three files).
        n_noise_val: Noise validation images, half Gaussian, half Uniform (R0 only).
        n_noise_test: Test images per noise kind.
        n_jigsaw: ID validation images shuffled into the jigsaw set (R4).
        batch_size: Images per chunk.
        device: Torch device.
        tpr_target: TPR at which FPR is read.
        cache_dir: Folder of cached score grids (``None``: no cache).
    """

    data_dir: Path | None
    depths: tuple[int, ...] = DEPTHS
    temperatures: tuple[float, ...] = STUDY_TEMPERATURES
    epsilons: tuple[float, ...] = STUDY_EPSILONS
    r2_temperature: float = 1000.0
    r2_epsilons: tuple[float, ...] = STUDY_R2_EPSILONS
    paper_default: tuple[float, float] = PAPER_DEFAULT
    n_id_val: int = 500
    n_id_test: int = 500
    n_tin_val: int = 1000
    n_tin_test: int = 1500
    n_noise_val: int = 300
    n_noise_test: int = 500
    n_jigsaw: int = 400
    batch_size: int = 250
    device: str = "cpu"
    tpr_target: float = 0.95
    cache_dir: Path | None = None


def check_config(cfg: NoOodConfig) -> None:
    """Refuse a config the protocol cannot run.

    Raises:
        InputValidationError: What is wrong, and what was expected.
    """
    if not cfg.depths or any(d not in DEPTHS for d in cfg.depths):
        raise InputValidationError(f"Expected depths among {DEPTHS}, but got {cfg.depths}.")
    if 1.0 not in cfg.temperatures or 0.0 not in cfg.epsilons:
        raise InputValidationError(
            "Expected T = 1 and ε = 0 in the grid (the MSP baseline), but got "
            f"T={cfg.temperatures}, ε={cfg.epsilons}."
        )
    if list(cfg.r2_epsilons) != sorted(cfg.r2_epsilons):
        raise InputValidationError(f"Expected ascending r2_epsilons, got {cfg.r2_epsilons}.")
    sizes = ("n_id_val", "n_id_test", "n_tin_val", "n_tin_test", "n_noise_val", "n_noise_test")
    for name in (*sizes, "n_jigsaw", "batch_size"):
        if getattr(cfg, name) < 1:
            raise InputValidationError(f"Expected `{name}` >= 1, got {getattr(cfg, name)}.")
    if cfg.n_jigsaw > cfg.n_id_val:
        raise InputValidationError(
            f"Expected n_jigsaw <= n_id_val ({cfg.n_id_val}), got {cfg.n_jigsaw}."
        )
