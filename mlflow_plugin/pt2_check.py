"""Refuse a ``.pt2`` archive unless loading it can run no code from it.

``torch.export.load`` is not a data-only reader. Reading torch's export
deserializer (``torch/_export/serde/serialize.py``, ``torch/export/pt2_archive/
_package.py``, ``torch/export/_unlift.py``, ``torch/fx/graph.py``) end to end, a
hostile archive reaches code execution through:

* **pickle**: a payload entry with ``use_pickle: true``, a legacy ``weights/model.pt``,
  pickled custom objects or opaque constants, a non-empty sample-inputs record, and the
  legacy top-level zip format (``torch.load(weights_only=False)`` fallbacks);
* **sympy**: every ``expr_str`` of a ``SymInt``/``SymFloat``/``SymBool`` goes to
  ``sympy.sympify``, which evaluates Python;
* **exec**: ``guards_code`` strings are pasted into a function body and ``exec``-ed by
  ``ExportedProgram.module()``;
* **code generation**: node, argument and placeholder names, operator targets and the
  tree specs become Python source of the generated ``forward`` (a placeholder name
  becomes a parameter name, so ``x=__import__('os')...`` would run);
* **lookup**: operator targets, ``source_fn_stack`` entries and tree-spec types are
  resolved with ``getattr`` walks and registries;
* **the zip reader**: torch's reader looks record names up case-insensitively, so a
  record that differs only in case from a checked one can be the one torch reads;
  a compressed record can expand without bound.

So the check is an allowlist, not a blocklist. At the zip level: every record stored
(uncompressed, so nothing expands), names unique even ignoring case, the same list as
torch's own reader sees, each name from a fixed set, JSON records under a size cap.
At the JSON level: the graph is validated against a strict schema (a subset of torch's
``schema.py``: the fields a plain classifier's export uses), every unknown field is
refused, and every string is matched against the grammar of its field: identifiers
for names, ``torch.ops.aten.*`` for targets, a whitelisted Python AST for ``expr_str``
(sympy constructors of integer symbols only) and for ``guards_code`` (comparisons of
input sizes), inert one-line text for metadata. The record contents checked are read
through torch's own reader, so the check sees the bytes torch will parse.

Example:
    >>> check_pt2_archive("model.pt2")  # doctest: +SKIP
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from mlflow_plugin.pt2_schema import (
    CONSTANTS_CONFIG,
    EXPORTED_PROGRAM,
    WEIGHTS_CONFIG,
    Refused,
    strict_json,
    validate,
)
from odin_monitor.errors import ModelLoadError

__all__ = ["MAX_JSON_RECORD_BYTES", "check_pt2_archive"]

MAX_JSON_RECORD_BYTES = 64 * 2**20
_MAX_TEXT_RECORD_BYTES = 64
_TEXT_CONTENT = re.compile(rb"[A-Za-z0-9._-]{1,64}\n?")

_FIX = (
    "Only archives written by mlflow_plugin.save_model (torch.export of a plain "
    "classifier) are loaded; re-save the detector from trusted code."
)

# -- the zip level ----------------------------------------------------------------------

_TEXT_RECORDS = frozenset(
    {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
)
_JSON_RECORDS: dict[str, Any] = {
    "models/model.json": EXPORTED_PROGRAM,
    "data/weights/model_weights_config.json": WEIGHTS_CONFIG,
    "data/constants/model_constants_config.json": CONSTANTS_CONFIG,
}
_SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_RAW_FOLDERS = {
    "data/weights/model_weights_config.json": "data/weights",
    "data/constants/model_constants_config.json": "data/constants",
}


def _zip_records(archive: zipfile.ZipFile) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    infos = [info for info in archive.infolist() if not info.is_dir()]
    folded = [info.filename.casefold() for info in infos]
    if len(folded) != len(set(folded)):
        # torch's zip reader finds names case-insensitively: a decoy that differs only
        # in case (or a repeated name) could be the copy torch reads.
        dup = sorted(
            {info.filename for info in infos if folded.count(info.filename.casefold()) > 1}
        )
        raise Refused(
            f"records {dup[:6]} appear more than once when case is ignored (torch's zip "
            "reader finds names case-insensitively)"
        )
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise Refused(
                f"record {info.filename!r} is compressed (a zip bomb could expand without bound); "
                "torch.export.save stores every record uncompressed"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]{1,512}", info.filename) or ".." in info.filename:
            raise Refused(f"record name {info.filename[:80]!r} is not a plain relative path")
    prefixes = {info.filename.split("/", 1)[0] for info in infos}
    if len(prefixes) != 1 or any("/" not in info.filename for info in infos):
        raise Refused("expected every record under one top-level folder")
    (prefix,) = prefixes
    return prefix, {info.filename.split("/", 1)[1]: info for info in infos}


def _raw_records(config: Any, folder: str) -> set[str]:
    return {f"{folder}/{meta['path_name']}" for meta in config.get("config", {}).values()}


def _torch_reader(p: Path, names: set[str]) -> Any:
    import torch

    try:
        reader = torch._C.PyTorchFileReader(str(p))
        seen = set(reader.get_all_records())
    except Exception as err:
        raise Refused(f"torch's zip reader cannot open it ({type(err).__name__})") from None
    if seen != names:
        raise Refused(
            f"torch's zip reader and Python's see different records ({sorted(seen ^ names)[:6]})"
        )
    return reader


def _check_contents(p: Path) -> None:
    with zipfile.ZipFile(p) as archive:
        _, records = _zip_records(archive)
    reader = _torch_reader(p, set(records))
    raw: set[str] = set()
    for name in _JSON_RECORDS:
        if name not in records:
            raise Refused(f"the record {name!r} is missing")
    for name, spec in _JSON_RECORDS.items():
        if records[name].file_size > MAX_JSON_RECORD_BYTES:
            raise Refused(
                f"record {name!r} declares {records[name].file_size} bytes, over the cap of "
                f"{MAX_JSON_RECORD_BYTES}"
            )
        content = bytes(reader.get_record(name))
        if len(content) != records[name].file_size:
            raise Refused(f"record {name!r} is not the size its header declares")
        data = strict_json(content, name)
        validate(data, spec, (name,))
        if name in _RAW_FOLDERS:
            raw |= _raw_records(data, _RAW_FOLDERS[name])
    for name, info in records.items():
        if name in _JSON_RECORDS or name in raw:
            continue
        if name == _SAMPLE_INPUTS and info.file_size == 0:
            continue
        if (
            name in _TEXT_RECORDS
            and info.file_size <= _MAX_TEXT_RECORD_BYTES
            and _TEXT_CONTENT.fullmatch(bytes(reader.get_record(name)))
        ):
            continue
        raise Refused(
            f"record {name!r} is not one of the graph, its payload configs, raw tensor bytes "
            "they declare, or short text (it could be a pickle, custom object, compiled "
            "library or extra file)"
        )


def check_pt2_archive(path: str | Path) -> None:
    """Refuse a ``.pt2`` file unless ``torch.export.load`` can run no code from it.

    See the module docstring for what is checked and why.

    Args:
        path: The archive.

    Raises:
        ModelLoadError: With the offending record or field, why it is refused, and
            how to fix it.

    Example:
        >>> try:
        ...     check_pt2_archive("not-there.pt2")
        ... except ModelLoadError as err:
        ...     print(err)
        Expected a torch.export archive at not-there.pt2, but there is none.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"Expected a torch.export archive at {p}, but there is none.")
    try:
        if not zipfile.is_zipfile(p):
            raise ModelLoadError(
                f"Refusing to load {p.name}: expected a torch.export archive (a zip of JSON "
                f"and raw tensor bytes), but it is not a zip file (maybe a pickle). {_FIX}"
            )
        _check_contents(p)
    except Refused as err:
        raise ModelLoadError(f"Refusing to load {p.name}: {err}. {_FIX}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ModelLoadError(
            f"Refusing to load {p.name}: the zip is unreadable ({type(err).__name__}: {err}). "
            f"{_FIX}"
        ) from None
