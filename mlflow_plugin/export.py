"""Serialise the classifier without pickle, and load it back without running code.

Two formats:

* ``pt2`` (default): a ``torch.export`` archive with a dynamic batch dimension. The
  module that :meth:`torch.export.ExportedProgram.module` returns supports input
  gradients, so ODIN runs on it. ``torch.export.load`` can run code from an archive
  (pickled records, ``sympify`` of expression strings, ``exec`` of guards, code
  generation from names), so before loading, :func:`~mlflow_plugin.pt2_check.check_pt2_archive`
  validates every record and every field against an allowlist and refuses the rest.
  The same check runs right after saving, so a model that would be refused at load
  time is refused at save time instead.
* ``state_dict`` (fallback for models ``torch.export`` cannot capture): the weights,
  read back with ``torch.load(weights_only=True)``, plus an importable
  ``package.module:factory`` reference that rebuilds the architecture.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mlflow_plugin.errors import ModelExportError
from mlflow_plugin.pt2_check import check_pt2_archive
from odin_monitor.errors import ModelLoadError
from odin_monitor.modelref import load_state_dict_file, model_from_reference
from odin_monitor.scoring import model_device, scoring_mode

__all__ = [
    "ModelExportError",
    "check_pt2_archive",
    "export_classifier",
    "load_exported",
    "load_from_factory",
    "save_state_dict",
]

# Relative tolerance of the exported model's logits against the eager model's.
_EXPORT_RTOL, _EXPORT_ATOL = 1e-4, 1e-5


def _fallback_hint() -> str:
    return (
        "Fallback: pass model_factory='package.module:factory' (a zero-argument callable that "
        "returns the architecture, importable where the model is loaded; ship its code with "
        "code_paths=[...]). The weights are then stored as a state_dict and read back with "
        "torch.load(weights_only=True)."
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _example_batch(input_shape: tuple[int, ...], n: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(n)
    return torch.rand((n, *input_shape), generator=gen).to(device)


def _check_same_logits(reference: nn.Module, candidate: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        want = reference(x).float()
        got = candidate(x).float()
    if got.shape != want.shape or not torch.allclose(
        got, want, rtol=_EXPORT_RTOL, atol=_EXPORT_ATOL
    ):
        diff = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
        raise ModelExportError(
            f"The saved model does not reproduce the classifier's logits for a batch of "
            f"{x.shape[0]} (shapes {tuple(got.shape)} vs {tuple(want.shape)}, max abs diff "
            f"{diff:.3g})."
        )


@contextlib.contextmanager
def _cpu_eval_copy(model: nn.Module) -> Iterator[nn.Module]:
    """The model on CPU in eval mode with frozen parameters (a copy if it lives elsewhere)."""
    target = model if model_device(model).type == "cpu" else copy.deepcopy(model).cpu()
    with scoring_mode(target):
        yield target


def export_classifier(model: nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    """Capture ``model`` with ``torch.export`` (dynamic batch) and save it as ``.pt2``.

    The model is captured on CPU in eval mode; the archive holds no sample inputs.
    Before saving, the exported module must reproduce the eager logits for batches
    of 1 and 3.

    Args:
        model: The classifier, ``(N, *input_shape) -> (N, K)``. Not modified.
        input_shape: ``(C, H, W)``.
        path: Target file, ending in ``.pt2``.

    Returns:
        ``path``.

    Raises:
        ModelExportError: ``torch.export`` fails, or the capture is not faithful. The
            message names the cause and the ``model_factory`` fallback.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> export_classifier(net, (3, 2, 2), tmp / "model.pt2").name  # doctest: +SKIP
        'model.pt2'
    """
    path = Path(path)
    with _cpu_eval_copy(model) as cpu_model:
        try:
            program = torch.export.export(
                cpu_model,
                (_example_batch(input_shape, 2, torch.device("cpu")),),
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            )
        except Exception as err:
            raise ModelExportError(
                f"torch.export cannot capture {type(model).__name__} for input (N, "
                f"{', '.join(map(str, input_shape))}) with a dynamic batch dimension "
                f"({_first_line(err)}). {_fallback_hint()}"
            ) from err
        program.example_inputs = None  # no sample-input record to unpickle at load
        # Re-exporting a loaded archive's module (`odin-monitor log`) tags each node with
        # its trace history ("from_node"), debugging metadata the safe loader refuses.
        for node in program.graph.nodes:
            node.meta.pop("from_node", None)
        try:
            exported = program.module()
            for n in (1, 3):
                _check_same_logits(
                    cpu_model, exported, _example_batch(input_shape, n, torch.device("cpu"))
                )
        except Exception as err:
            raise ModelExportError(
                f"The torch.export capture of {type(model).__name__} is not faithful "
                f"({_first_line(err)}). {_fallback_hint()}"
            ) from err
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    try:
        check_pt2_archive(path)
    except ModelLoadError as err:
        path.unlink(missing_ok=True)
        raise ModelExportError(
            f"The torch.export archive of {type(model).__name__} uses a construct the safe "
            f"loader refuses ({err}). {_fallback_hint()}"
        ) from err
    return path


def load_exported(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Check and load a ``.pt2`` archive; return its module on ``device``.

    The returned module refuses ``.eval()``/``.train()``: it was captured in eval mode.

    Raises:
        ModelLoadError: The archive is refused by :func:`check_pt2_archive` or unreadable.
    """
    check_pt2_archive(path)
    try:
        program = torch.export.load(str(path))
        dev = torch.device(device)
        if dev.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, dev)
        return program.module()
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(
            f"Cannot load the torch.export archive {Path(path).name} ({_first_line(err)}). It "
            f"was written with torch {torch.__version__}? Load it with the torch version "
            "recorded in the model's MLmodel file."
        ) from err


def save_state_dict(
    model: nn.Module, factory: str, input_shape: tuple[int, ...], path: str | Path
) -> Path:
    """Save ``model``'s weights for the ``factory`` fallback, after checking they fit.

    ``factory()`` must rebuild the same architecture: the rebuilt model, with these
    weights loaded strictly, must reproduce the logits of ``model``.

    Raises:
        ModelLoadError: The factory cannot be imported or called, or the weights do not fit.
        ModelExportError: The rebuilt model gives different logits.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _cpu_eval_copy(model) as cpu_model:
        state = {k: v.detach().cpu().clone() for k, v in cpu_model.state_dict().items()}
        torch.save(state, path)
        rebuilt = model_from_reference(factory, path)
        try:
            _check_same_logits(
                cpu_model, rebuilt, _example_batch(input_shape, 3, torch.device("cpu"))
            )
        except ModelExportError as err:
            raise ModelExportError(
                f"{factory!r} does not rebuild the classifier: {err} Make the factory return "
                "the same architecture as the model being saved."
            ) from err
    return path


def load_from_factory(
    factory: str, path: str | Path, device: torch.device | str = "cpu"
) -> nn.Module:
    """Rebuild a classifier from ``factory`` and a state_dict read with ``weights_only=True``.

    Raises:
        ModelLoadError: The file is not a plain tensor state_dict (e.g. a pickle of an
            arbitrary object), or the factory cannot be imported, or the weights do not fit.
    """
    load_state_dict_file(path)  # refuse non-tensor pickles before importing anything
    return model_from_reference(factory, path).to(torch.device(device))
