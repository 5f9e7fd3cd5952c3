"""The strict schema a ``.pt2`` graph must follow: a subset of torch's export schema.

The fields a plain classifier's ``torch.export`` uses, each typed, every string checked
against its field's grammar (:mod:`mlflow_plugin.pt2_grammar`), every unknown field
refused. Refused on purpose: subgraph, custom-object and operator arguments, custom
node metadata, custom-object values. See :mod:`mlflow_plugin.pt2_check` for why.

Example:
    >>> validate({"major": 8, "minor": 1}, EXPORTED_PROGRAM.fields["schema_version"], ("v",))
    >>> validate({"major": "8"}, EXPORTED_PROGRAM.fields["schema_version"], ("v",))
    Traceback (most recent call last):
    ...
    mlflow_plugin.pt2_schema.Refused: v/major has an unexpected value of type str
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_plugin.pt2_grammar import (
    FQN,
    NAME,
    SYMBOL,
    check_guard,
    check_source_fn_stack,
    check_sympy_expr,
    check_treespec,
    inert_text,
    match,
)
from mlflow_plugin.pt2_grammar import MAX_INT as _MAX_INT
from mlflow_plugin.pt2_grammar import MAX_STACK_TRACE as _MAX_STACK_TRACE

__all__ = [
    "CONSTANTS_CONFIG",
    "EXPORTED_PROGRAM",
    "WEIGHTS_CONFIG",
    "Refused",
    "run_check",
    "strict_json",
    "validate",
]


# Grammars of the fields only the schema names.
_TARGET = re.compile(
    r"torch\.ops\.(?:aten|prims)\.[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*"
    r"|_operator\.[a-z_]+|math\.[a-z_]+"
    r"|torch\.sym_[a-z_]+"
)
_DEVICE = re.compile(r"[a-z]{1,16}")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,64}")
_VERIFIER = re.compile(r"[A-Z_]{1,32}")
_SHORT_STRING = re.compile(r"[A-Za-z0-9_. -]{0,64}")
_MODULE_STACK = re.compile(r"[A-Za-z0-9_.,;:\[\]'() <>-]*")
_TORCH_FN = re.compile(r"[A-Za-z0-9_.;<>]*")


class Refused(ValueError):
    """A field of the archive is outside the allowlist (message: where and why)."""


def _where(path: tuple[str, ...]) -> str:
    return "/".join(path) or "<root>"


# -- a strict schema: the subset of torch's export schema a classifier uses -----------


@dataclass(frozen=True)
class _Struct:
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class _Union:
    tags: Mapping[str, Any]


@dataclass(frozen=True)
class _List:
    item: Any


@dataclass(frozen=True)
class _Map:
    key: Callable[[str], None]
    value: Any
    max_len: int | None = None


@dataclass(frozen=True)
class _Str:
    check: Callable[[str], None]


@dataclass(frozen=True)
class _Opt:
    inner: Any


_INT, _BOOL, _FLOAT = "int", "bool", "float"
_NAME_S = _Str(match(NAME, 256))
_FQN_S = _Str(match(FQN, 512))

_SYM_EXPR = _Struct(
    {
        "expr_str": _Str(check_sympy_expr),
        "hint": _Opt(_Union({"as_int": _INT, "as_bool": _BOOL, "as_float": _FLOAT})),
    }
)
_SYM_INT = _Union({"as_expr": _SYM_EXPR, "as_int": _INT})
_SYM_FLOAT = _Union({"as_expr": _SYM_EXPR, "as_float": _FLOAT})
_SYM_BOOL = _Union({"as_expr": _SYM_EXPR, "as_bool": _BOOL})
_DEVICE_S = _Struct({"type": _Str(match(_DEVICE)), "index": _Opt(_INT)})
_TENSOR_META = _Struct(
    {
        "dtype": _INT,
        "sizes": _List(_SYM_INT),
        "requires_grad": _BOOL,
        "device": _DEVICE_S,
        "strides": _List(_SYM_INT),
        "storage_offset": _SYM_INT,
        "layout": _INT,
    }
)
_TENSOR_ARG = _Struct({"name": _NAME_S})
_SYM_INT_ARG = _Union({"as_name": _NAME_S, "as_int": _INT})
_SYM_FLOAT_ARG = _Union({"as_name": _NAME_S, "as_float": _FLOAT})
_SYM_BOOL_ARG = _Union({"as_name": _NAME_S, "as_bool": _BOOL})
_OPT_TENSOR = _Union({"as_tensor": _TENSOR_ARG, "as_none": _BOOL})
_SHORT_S = _Str(match(_SHORT_STRING))
# Refused on purpose: as_graph (subgraphs), as_custom_obj (pickled objects),
# as_operator and as_string_to_argument (operator lookups by name).
_ARGUMENT = _Union(
    {
        "as_none": _BOOL,
        "as_tensor": _TENSOR_ARG,
        "as_tensors": _List(_TENSOR_ARG),
        "as_int": _INT,
        "as_ints": _List(_INT),
        "as_float": _FLOAT,
        "as_floats": _List(_FLOAT),
        "as_string": _SHORT_S,
        "as_strings": _List(_SHORT_S),
        "as_sym_int": _SYM_INT_ARG,
        "as_sym_ints": _List(_SYM_INT_ARG),
        "as_scalar_type": _INT,
        "as_memory_format": _INT,
        "as_layout": _INT,
        "as_device": _DEVICE_S,
        "as_bool": _BOOL,
        "as_bools": _List(_BOOL),
        "as_sym_bool": _SYM_BOOL_ARG,
        "as_sym_bools": _List(_SYM_BOOL_ARG),
        "as_optional_tensors": _List(_OPT_TENSOR),
        "as_sym_float": _SYM_FLOAT_ARG,
        "as_sym_floats": _List(_SYM_FLOAT_ARG),
        "as_optional_tensor": _OPT_TENSOR,
        "as_complex": _Struct({"real": _FLOAT, "imag": _FLOAT}),
        "as_nested_tensors": _List(_List(_TENSOR_ARG)),
        "as_int_lists": _List(_List(_INT)),
        "as_float_lists": _List(_List(_FLOAT)),
    }
)
_NODE_METADATA = {
    "stack_trace": inert_text(_MAX_STACK_TRACE),
    "nn_module_stack": match(_MODULE_STACK, 16 * 1024),
    "source_fn_stack": check_source_fn_stack,
    "torch_fn": match(_TORCH_FN, 1024),
}
_NODE = _Struct(
    {
        "target": _Str(match(_TARGET, 256)),
        "inputs": _List(_Struct({"name": _NAME_S, "arg": _ARGUMENT, "kind": _Opt(_INT)})),
        "outputs": _List(_ARGUMENT),
        "metadata": "node_metadata",
        "is_hop_single_tensor_return": _Opt(_BOOL),
        "name": _Opt(_NAME_S),
    }
)
_NAME_KEY = match(NAME, 256)
_GRAPH = _Struct(
    {
        "inputs": _List(_ARGUMENT),
        "outputs": _List(_ARGUMENT),
        "nodes": _List(_NODE),
        "tensor_values": _Map(_NAME_KEY, _TENSOR_META),
        "sym_int_values": _Map(_NAME_KEY, _SYM_INT),
        "sym_bool_values": _Map(_NAME_KEY, _SYM_BOOL),
        "sym_float_values": _Map(_NAME_KEY, _SYM_FLOAT),
        "is_single_tensor_return": _BOOL,
        "custom_obj_values": _Map(_NAME_KEY, None, max_len=0),
    }
)
_CONSTANT_VALUE = _Union(
    {"as_none": _BOOL, "as_int": _INT, "as_float": _FLOAT, "as_string": _SHORT_S, "as_bool": _BOOL}
)
_TOKEN = _Struct({"name": _NAME_S})
_INPUT_SPEC = _Union(
    {
        "user_input": _Struct({"arg": _ARGUMENT}),
        "parameter": _Struct({"arg": _TENSOR_ARG, "parameter_name": _FQN_S}),
        "buffer": _Struct({"arg": _TENSOR_ARG, "buffer_name": _FQN_S, "persistent": _BOOL}),
        "tensor_constant": _Struct({"arg": _TENSOR_ARG, "tensor_constant_name": _FQN_S}),
        "constant_input": _Struct({"name": _NAME_S, "value": _CONSTANT_VALUE}),
        "token": _Struct({"arg": _TOKEN}),
    }
)
_OUTPUT_SPEC = _Union(
    {
        "user_output": _Struct({"arg": _ARGUMENT}),
        "loss_output": _Struct({"arg": _TENSOR_ARG}),
        "buffer_mutation": _Struct({"arg": _TENSOR_ARG, "buffer_name": _FQN_S}),
        "parameter_mutation": _Struct({"arg": _TENSOR_ARG, "parameter_name": _FQN_S}),
        "gradient_to_parameter": _Struct({"arg": _TENSOR_ARG, "parameter_name": _FQN_S}),
        "gradient_to_user_input": _Struct({"arg": _TENSOR_ARG, "user_input_name": _NAME_S}),
        "user_input_mutation": _Struct({"arg": _TENSOR_ARG, "user_input_name": _NAME_S}),
        "token": _Struct({"arg": _TOKEN}),
    }
)
_TREESPEC_S = _Str(check_treespec)
_MODULE_CALL = _Struct(
    {
        "fqn": _FQN_S,
        "signature": _Opt(
            _Struct(
                {
                    "inputs": _List(_ARGUMENT),
                    "outputs": _List(_ARGUMENT),
                    "in_spec": _TREESPEC_S,
                    "out_spec": _TREESPEC_S,
                    "forward_arg_names": _Opt(_List(_NAME_S)),
                }
            )
        ),
    }
)
EXPORTED_PROGRAM = _Struct(
    {
        "graph_module": _Struct(
            {
                "graph": _GRAPH,
                "signature": _Struct(
                    {"input_specs": _List(_INPUT_SPEC), "output_specs": _List(_OUTPUT_SPEC)}
                ),
                "module_call_graph": _List(_MODULE_CALL),
                "metadata": _Map(_NAME_KEY, None, max_len=0),
                "treespec_namedtuple_fields": _Map(_NAME_KEY, None, max_len=0),
            }
        ),
        "opset_version": _Map(_NAME_KEY, _INT),
        "range_constraints": _Map(
            match(SYMBOL), _Struct({"min_val": _Opt(_INT), "max_val": _Opt(_INT)})
        ),
        "schema_version": _Struct({"major": _INT, "minor": _INT}),
        "verifiers": _List(_Str(match(_VERIFIER))),
        "torch_version": _Str(match(_VERSION)),
        "guards_code": _List(_Str(check_guard)),
    }
)


def _payload_config(prefix: str) -> _Struct:
    meta = _Struct(
        {
            "path_name": _Str(match(re.compile(rf"{prefix}_[0-9]{{1,9}}"))),
            "is_param": _BOOL,
            "use_pickle": "false",
            "tensor_meta": _TENSOR_META,
        }
    )
    return _Struct({"config": _Map(match(FQN, 512), meta)})


WEIGHTS_CONFIG = _payload_config("weight")
CONSTANTS_CONFIG = _payload_config("tensor")


def validate(value: Any, spec: Any, path: tuple[str, ...]) -> None:
    """Check ``value`` against ``spec`` (a schema node), naming ``path`` when refused."""
    if spec is None:
        raise Refused(f"{_where(path)} must be empty")
    if spec == _INT:
        ok = type(value) is int and abs(value) <= _MAX_INT
    elif spec == _BOOL:
        ok = type(value) is bool
    elif spec == _FLOAT:
        ok = type(value) in (int, float)
    elif spec == "false":
        if value is not False:
            raise Refused(f"{_where(path)} is {value!r}: the entry is stored with pickle")
        ok = True
    elif spec == "node_metadata":
        ok = isinstance(value, dict)
        for key, text in value.items() if ok else ():
            check = _NODE_METADATA.get(key)
            if check is None or not isinstance(text, str):
                raise Refused(f"{_where(path)} holds the metadata entry {key!r}")
            run_check(check, text, (*path, key))
    elif isinstance(spec, _Str):
        ok = isinstance(value, str)
        if ok:
            run_check(spec.check, value, path)
    elif isinstance(spec, _Opt):
        ok = True
        if value is not None:
            validate(value, spec.inner, path)
    elif isinstance(spec, _List):
        ok = isinstance(value, list)
        for i, item in enumerate(value if ok else ()):
            validate(item, spec.item, (*path, str(i)))
    elif isinstance(spec, _Map):
        ok = isinstance(value, dict)
        if ok and spec.max_len is not None and len(value) > spec.max_len:
            raise Refused(f"{_where(path)} must be empty, but holds {sorted(value)[:5]}")
        for key, item in value.items() if ok else ():
            run_check(spec.key, key, (*path, "<key>"))
            validate(item, spec.value, (*path, key))
    elif isinstance(spec, _Union):
        ok = isinstance(value, dict) and len(value) == 1
        if ok:
            (tag, inner), *_ = value.items()
            if tag not in spec.tags:
                raise Refused(f"{_where(path)} is of the refused kind {tag!r}")
            validate(inner, spec.tags[tag], (*path, tag))
    elif isinstance(spec, _Struct):
        ok = isinstance(value, dict)
        for key, item in value.items() if ok else ():
            if key not in spec.fields:
                raise Refused(f"{_where(path)} holds the unknown field {key!r}")
            validate(item, spec.fields[key], (*path, key))
    else:  # pragma: no cover - a bug in the schema above
        raise TypeError(f"unknown spec {spec!r}")
    if not ok:
        raise Refused(f"{_where(path)} has an unexpected value of type {type(value).__name__}")


def run_check(check: Callable[[str], None], value: str, path: tuple[str, ...]) -> None:
    """Apply a grammar check; its ``ValueError`` becomes :class:`Refused` with the path."""
    try:
        check(value)
    except ValueError as err:
        raise Refused(f"{_where(path)} = {value[:80]!r} {err}") from None


def strict_json(content: bytes, name: str) -> Any:
    """Parse a JSON record, refusing repeated keys and anything that is not JSON."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise Refused(
                f"{name} repeats a key ({sorted({k for k in keys if keys.count(k) > 1})})"
            )
        return dict(pairs)

    try:
        return json.loads(content.decode("utf-8"), object_pairs_hook=no_duplicates)
    except Refused:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Refused(f"{name} is not JSON ({type(err).__name__})") from None
