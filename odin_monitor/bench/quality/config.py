"""What determines a quality run: the data files, the protocol's constants, the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from odin_monitor.bench.common import DEPTHS
from odin_monitor.errors import InputValidationError
from odin_monitor.grid import PAPER_EPSILONS, PAPER_TEMPERATURES

__all__ = [
    "ID_FILE",
    "IMAGE_SHAPE",
    "NO_OOD",
    "OOD_FILES",
    "PAPER_DEFAULT",
    "PLOT_SOURCE",
    "POOLED_SYNTHETIC",
    "QUALITY_QUICK_EPSILONS",
    "QUALITY_QUICK_TEMPERATURES",
    "SYNTHETIC",
    "QualityConfig",
    "check_config",
]

ID_FILE = "cifar10_test_lossless.npz"
#: Real OOD sources: display name -> file in the data folder.
OOD_FILES: dict[str, str] = {
    "TIN crop": "ood_tinyimagenet_crop.npz",
    "TIN resize (Pillow)": "ood_tinyimagenet_resize.npz",
    "TIN resize (ODIN authors')": "ood_tinyimagenet_resize_odin.npz",
}
SYNTHETIC = ("Gaussian", "Uniform")
POOLED_SYNTHETIC = "Gaussian+Uniform"
NO_OOD = "no OOD data (T=1000, ε=0.0014)"
PAPER_DEFAULT = (1000.0, 0.0014)
#: The set whose plots (ROC, histograms, grid heatmap) are drawn: the paper's own files.
PLOT_SOURCE = "TIN resize (ODIN authors')"
#: The ``--quick`` grid of this benchmark (the demo has its own).
QUALITY_QUICK_TEMPERATURES: tuple[float, ...] = (1, 10, 100, 1000)
QUALITY_QUICK_EPSILONS: tuple[float, ...] = (0.0, 0.0007, 0.0014, 0.0028)
IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class QualityConfig:
    """Everything that determines a quality run (all of it is printed with the results).

    Attributes:
        data_dir: The shared data folder.
        depths: ResNet depths to evaluate.
        temperatures: The ``T`` grid.
        epsilons: The ``ε`` grid (pixel units).
        n_id_val: In-distribution validation images (of the 1,000 lossless ones).
        n_id_test: In-distribution test images, disjoint from validation; ``None`` = the rest.
        n_ood_val: Validation images per OOD source.
        n_ood_test: Test images per OOD source.
        seed: Seed of every split and of the synthetic sets.
        batch_size: Images per chunk.
        device: Torch device.
        tpr_target: TPR at which FPR is read (0.95 in the paper).
        plots_dir: Where to write PNG plots; ``None`` = no plots.
    """

    data_dir: Path
    depths: tuple[int, ...] = DEPTHS
    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    epsilons: tuple[float, ...] = PAPER_EPSILONS
    n_id_val: int = 500
    n_id_test: int | None = None
    n_ood_val: int = 1000
    n_ood_test: int = 2000
    seed: int = 0
    batch_size: int = 256
    device: str = "cpu"
    tpr_target: float = 0.95
    plots_dir: Path | None = None


def check_config(cfg: QualityConfig) -> None:
    """Refuse a config the protocol cannot run (the MSP pair must be on the grid).

    Raises:
        InputValidationError: What is wrong, and what was expected.
    """
    if not cfg.depths:
        raise InputValidationError("Expected at least one ResNet depth.")
    bad = [d for d in cfg.depths if d not in DEPTHS]
    if bad:
        raise InputValidationError(f"Expected depths among {DEPTHS}, but got {bad}.")
    if 1.0 not in cfg.temperatures or 0.0 not in cfg.epsilons:
        raise InputValidationError(
            "Expected T = 1 and ε = 0 in the grid: they are the MSP baseline, "
            f"but got T={cfg.temperatures}, ε={cfg.epsilons}."
        )
    for name in ("n_id_val", "n_ood_val", "n_ood_test", "batch_size"):
        if getattr(cfg, name) < 1:
            raise InputValidationError(f"Expected `{name}` >= 1, got {getattr(cfg, name)}.")
