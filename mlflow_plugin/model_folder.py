"""What an ``odin`` model folder holds, and how its pieces are written and read.

The file layout (see :mod:`mlflow_plugin.flavor`), the code shipped with a model (only
what loading and scoring need), the input example, the record, reference scores and
grid, and the classifier read back from its ``.pt2`` archive or state_dict fallback.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from mlflow_plugin import _mlflow_compat as compat
from mlflow_plugin.export import load_exported, load_from_factory
from mlflow_plugin.pyfunc import IMAGE_COLUMN
from odin_monitor.columns import SCORE_COLUMNS
from odin_monitor.detector import BatchScores
from odin_monitor.errors import ModelLoadError

if TYPE_CHECKING:
    from torch import nn

    from odin_monitor.calibration import CalibrationResult
    from odin_monitor.detector import OdinDetector
    from odin_monitor.record import CalibrationRecord

__all__ = [
    "CODE_DIR",
    "GRID_FILE",
    "PT2_FILE",
    "RECORD_FILE",
    "REFERENCE_FILE",
    "SHIPPED_FILES",
    "STATE_DICT_FILE",
    "default_input_example",
    "load_classifier",
    "png_example",
    "read_reference",
    "ship_code",
    "write_data",
]

PT2_FILE = "data/model.pt2"
STATE_DICT_FILE = "data/state_dict.pt"
RECORD_FILE = "data/calibration_record.json"
REFERENCE_FILE = "data/reference_scores.npz"
GRID_FILE = "data/calibration_grid.csv"
CODE_DIR = "code"
# What loading and scoring a model need, per package (the CLI, monitoring, benchmarks
# and the demo stay out of the model folder). The packages' ``__init__`` extends their
# ``__path__``, so a model's partial copy never hides the rest of an installed copy.
SHIPPED_FILES: dict[str, tuple[str, ...]] = {
    "odin_monitor": (
        "__init__.py", "_version.py", "py.typed", "calibration.py", "columns.py", "compiled.py",
        "detector.py", "errors.py", "grid.py", "hyper.py", "inference_log.py", "metrics.py",
        "modelref.py", "normalization.py", "preprocess.py", "record.py", "scoring.py", "search.py",
        "synthetic.py", "validation.py",
        "models",
    ),
    "mlflow_plugin": (
        "__init__.py", "py.typed", "_mlflow_compat.py", "export.py", "flavor.py",
        "pt2_check.py", "pt2_grammar.py", "pt2_schema.py", "pyfunc.py", "registry.py",
        "tags.py", "errors.py", "model_folder.py", "integrity.py", "allocator.py",
        "scorer_thread.py",
    ),
}  # fmt: skip


def ship_code(path: str, code_paths: Sequence[str] | None) -> str:
    """Copy the user's ``code_paths`` and what loading needs of our packages to ``code/``."""
    compat.copy_code_paths(code_paths, path)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, names in SHIPPED_FILES.items():
        src = Path(__import__(package).__file__ or "").parent
        dst = Path(path, CODE_DIR, package)
        dst.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (src / name).is_dir():
                shutil.copytree(src / name, dst / name, ignore=ignore)
            else:
                shutil.copy2(src / name, dst / name)
    return CODE_DIR


def default_input_example(input_shape: tuple[int, ...]) -> np.ndarray:
    """Two seeded noise images ``(2, C, H, W)`` in [0, 1]."""
    rng = np.random.default_rng(0)
    return np.round(rng.uniform(0.0, 1.0, (2, *input_shape)), 3).astype(np.float32)


def png_example(images: np.ndarray) -> pd.DataFrame:
    """Float ``(n, C, H, W)`` images as an ``image`` column of PNG files."""
    import io

    from PIL import Image

    files = []
    for x in np.asarray(images, dtype=np.float32):
        pixels = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, "PNG")
        files.append(buf.getvalue())
    return pd.DataFrame({IMAGE_COLUMN: files})


def write_data(
    path: str, det: OdinDetector, record: CalibrationRecord, result: CalibrationResult | None
) -> tuple[str | None, str | None]:
    """Write the record, the reference scores and the grid; return their relative paths."""
    Path(path, RECORD_FILE).write_text(record.to_json())
    reference = None
    if getattr(det, "reference_", None) is not None:
        ref = det.reference_
        np.savez(Path(path, REFERENCE_FILE), **{c: getattr(ref, c) for c in SCORE_COLUMNS})
        reference = REFERENCE_FILE
    grid = None
    if result is not None:
        result.grid_frame().to_csv(Path(path, GRID_FILE), index=False)
        grid = GRID_FILE
    return reference, grid


def read_reference(model_path: str, conf: Mapping[str, Any]) -> BatchScores | None:
    """The saved in-distribution reference scores (read without pickle), if any."""
    name = conf.get("reference_file")
    if not name:
        return None
    file = Path(model_path, str(name))
    try:
        with np.load(file, allow_pickle=False) as data:
            return BatchScores(**{c: np.asarray(data[c]) for c in SCORE_COLUMNS})
    except (OSError, KeyError, ValueError) as err:
        raise ModelLoadError(
            f"Cannot read the reference scores {file.name} (an .npz of arrays {SCORE_COLUMNS}, "
            f"read without pickle): {err}."
        ) from err


def load_classifier(model_path: str, conf: Mapping[str, Any], device: torch.device) -> nn.Module:
    """The classifier of a model folder (checked ``.pt2``, or factory + weights) on ``device``."""
    fmt = conf.get("format")
    file = os.path.join(model_path, str(conf.get("model_file", "")))
    if fmt == "pt2":
        model = load_exported(file, device)
    elif fmt == "state_dict":
        compat.add_code_to_sys_path(model_path, dict(conf))
        model = load_from_factory(str(conf.get("model_factory")), file, device)
    else:
        raise ModelLoadError(
            f"Expected the odin flavour's format 'pt2' or 'state_dict', but MLmodel says {fmt!r}."
        )
    for p in model.parameters():
        p.requires_grad_(False)
    return model
