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

import ast
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odin_monitor.errors import ModelLoadError

__all__ = ["MAX_JSON_RECORD_BYTES", "check_pt2_archive"]

#: Largest JSON record accepted (the graph of ResNet-56 is well under 1 MiB).
MAX_JSON_RECORD_BYTES = 64 * 2**20
_MAX_TEXT_RECORD_BYTES = 64
_MAX_STRING = 4096
_MAX_STACK_TRACE = 64 * 1024
_MAX_EXPR = 2000
_MAX_DEPTH = 64
_MAX_INT = 2**63
_MAX_POW = 64

_FIX = (
    "Only archives written by mlflow_plugin.save_model (torch.export of a plain "
    "classifier) are loaded; re-save the detector from trusted code."
)

# -- grammars of strings -------------------------------------------------------------

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = re.compile(rf"{_IDENT}")
_FQN = re.compile(rf"(?:(?:{_IDENT}|[0-9]+)(?:\.(?:{_IDENT}|[0-9]+))*)?")
_SYMBOL = re.compile(r"[a-z]{1,4}[0-9]{1,9}")
_TARGET = re.compile(
    rf"torch\.ops\.(?:aten|prims)\.{_IDENT}\.{_IDENT}|_operator\.[a-z_]+|math\.[a-z_]+"
    r"|torch\.sym_[a-z_]+"
)
_DEVICE = re.compile(r"[a-z]{1,16}")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,64}")
_VERIFIER = re.compile(r"[A-Z_]{1,32}")
_SHORT_STRING = re.compile(r"[A-Za-z0-9_. -]{0,64}")
_MODULE_STACK = re.compile(r"[A-Za-z0-9_.,;:\[\]'() <>-]*")
_TORCH_FN = re.compile(r"[A-Za-z0-9_.;<>]*")
_TEXT_CONTENT = re.compile(rb"[A-Za-z0-9._-]{1,64}\n?")
# Anything Python's tokenizer or a terminal could treat as a line break or control.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


class _Refused(ValueError):
    """A field of the archive is outside the allowlist (message: where and why)."""


def _where(path: tuple[str, ...]) -> str:
    return "/".join(path) or "<root>"


def _match(pattern: re.Pattern[str], limit: int = _MAX_STRING) -> Callable[[str], None]:
    def check(value: str) -> None:
        if len(value) > limit or not pattern.fullmatch(value):
            raise ValueError(f"does not match {pattern.pattern!r}")

    return check


def _inert_text(limit: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        if len(value) > limit:
            raise ValueError(f"is longer than {limit} characters")
        if _CONTROL.search(value):
            raise ValueError("holds a control character or a line break other than \\n")

    return check


# -- the sympy expressions of SymInt / SymFloat / SymBool ------------------------------

# What torch's serializer writes (sympy.srepr of shape expressions): constructors of
# integer symbols, integer constants and the shape functions torch registers.
_SYMPY_CALLS = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs",
        "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan",
        "LessThan", "StrictGreaterThan", "GreaterThan", "And", "Or", "Not",
        "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv",
        "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural",
        "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt",
        "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
    }
)  # fmt: skip
_SYMPY_NAMES = frozenset({"true", "false", "oo", "zoo", "True", "False"})
_SYMBOL_ASSUMPTIONS = frozenset(
    {"positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite"}
)
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_CMPOPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _small_number(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and type(node.value) is not bool
        and abs(node.value) <= _MAX_INT
    )


def _check_sympy_node(node: ast.AST, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("is nested too deeply")
    if isinstance(node, ast.Constant):
        if not _small_number(node) and type(node.value) is not bool:
            raise ValueError(f"holds the constant {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id not in _SYMPY_NAMES and not _SYMBOL.fullmatch(node.id):
            raise ValueError(f"names {node.id!r}")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        _check_sympy_node(node.operand, depth + 1)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _BINOPS):
        if isinstance(node.op, ast.Pow) and not (
            _small_number(node.right) and abs(node.right.value) <= _MAX_POW  # type: ignore[attr-defined]
        ):
            raise ValueError(f"raises to a power other than a constant up to {_MAX_POW}")
        _check_sympy_node(node.left, depth + 1)
        _check_sympy_node(node.right, depth + 1)
    elif isinstance(node, ast.Compare) and all(isinstance(op, _CMPOPS) for op in node.ops):
        for child in (node.left, *node.comparators):
            _check_sympy_node(child, depth + 1)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        _check_sympy_call(node, node.func.id, depth)
    else:
        raise ValueError(f"uses Python syntax {type(node).__name__}")


def _check_sympy_call(node: ast.Call, func: str, depth: int) -> None:
    if func not in _SYMPY_CALLS:
        raise ValueError(f"calls {func!r}")
    if func == "Symbol":
        name = node.args[0] if len(node.args) == 1 else None
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)) or not (
            _SYMBOL.fullmatch(name.value)
        ):
            raise ValueError("declares a Symbol whose name is not like 's0'")
        for kw in node.keywords:
            if kw.arg not in _SYMBOL_ASSUMPTIONS or not (
                isinstance(kw.value, ast.Constant) and type(kw.value.value) is bool
            ):
                raise ValueError(f"gives Symbol the assumption {kw.arg!r}")
        return
    if node.keywords:
        raise ValueError(f"passes keywords to {func!r}")
    if func in ("Pow", "PowByNatural", "FloatPow") and not (
        len(node.args) == 2 and _small_exponent(node.args[1])
    ):
        raise ValueError(f"raises to a power other than a constant up to {_MAX_POW}")
    for arg in node.args:
        _check_sympy_node(arg, depth + 1)


def _small_exponent(node: ast.AST) -> bool:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("Integer", "Float")
        and len(node.args) == 1
    ):
        node = node.args[0]
    return _small_number(node) and abs(node.value) <= _MAX_POW  # type: ignore[attr-defined]


def _check_sympy_expr(value: str) -> None:
    """``expr_str``: goes to ``sympy.sympify`` (which evaluates Python)."""
    if len(value) > _MAX_EXPR:
        raise ValueError(f"is longer than {_MAX_EXPR} characters")
    try:
        tree = ast.parse(value, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise ValueError(f"is not an expression ({type(err).__name__})") from None
    _check_sympy_node(tree.body, 0)


# -- guards_code: exec-ed by ExportedProgram.module() ---------------------------------


def _is_input_size(node: ast.AST) -> bool:
    """``L['x'].size()[0]``, ``L['x'].stride()[1]`` or ``L['x'].storage_offset()``."""
    if isinstance(node, ast.Subscript):
        if not (isinstance(node.slice, ast.Constant) and type(node.slice.value) is int):
            return False
        node = node.value
        methods: tuple[str, ...] = ("size", "stride")
    else:
        methods = ("storage_offset",)
    if not (
        isinstance(node, ast.Call)
        and not node.args
        and not node.keywords
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in methods
    ):
        return False
    base = node.func.value
    return (
        isinstance(base, ast.Subscript)
        and isinstance(base.value, ast.Name)
        and base.value.id == "L"
        and isinstance(base.slice, ast.Constant)
        and isinstance(base.slice.value, str)
        and bool(_NAME.fullmatch(base.slice.value))
    )


def _check_guard_node(node: ast.AST, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("is nested too deeply")
    if _is_input_size(node):
        return
    if isinstance(node, ast.Constant):
        if not (type(node.value) is int and abs(node.value) <= _MAX_INT):
            raise ValueError(f"holds the constant {node.value!r}")
    elif isinstance(node, ast.BoolOp):
        for child in node.values:
            _check_guard_node(child, depth + 1)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        _check_guard_node(node.operand, depth + 1)
    elif isinstance(node, ast.BinOp) and isinstance(
        node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)
    ):
        _check_guard_node(node.left, depth + 1)
        _check_guard_node(node.right, depth + 1)
    elif isinstance(node, ast.Compare) and all(isinstance(op, _CMPOPS) for op in node.ops):
        for child in (node.left, *node.comparators):
            _check_guard_node(child, depth + 1)
    else:
        raise ValueError(f"uses Python syntax {type(node).__name__} outside input-size checks")


def _check_guard(value: str) -> None:
    if len(value) > _MAX_EXPR or "\n" in value or "\r" in value:
        raise ValueError(f"is not a one-line guard of at most {_MAX_EXPR} characters")
    try:
        tree = ast.parse(value, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise ValueError(f"is not an expression ({type(err).__name__})") from None
    _check_guard_node(tree.body, 0)


# -- tree specs (in_spec / out_spec): JSON inside a string -----------------------------

_SPEC_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict"})


def _check_treespec_node(spec: Any, depth: int) -> None:
    if depth > _MAX_DEPTH or not isinstance(spec, dict):
        raise ValueError("is not a tree of {type, context, children_spec}")
    if set(spec) != {"type", "context", "children_spec"} or spec["type"] not in _SPEC_TYPES:
        raise ValueError(f"has a node of type {spec.get('type')!r}")
    context = spec["context"]
    if context is not None:
        keys = json.loads(context) if isinstance(context, str) else object()
        if keys is not None and not (
            isinstance(keys, list) and all(isinstance(k, str) and _NAME.fullmatch(k) for k in keys)
        ):
            raise ValueError(f"has the context {context!r}")
    children = spec["children_spec"]
    if not isinstance(children, list):
        raise ValueError("has children_spec that is not a list")
    for child in children:
        _check_treespec_node(child, depth + 1)


def _check_treespec(value: str) -> None:
    if len(value) > 64 * 1024:
        raise ValueError("is too long")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError("is not JSON") from None
    if not (isinstance(parsed, list) and len(parsed) == 2 and parsed[0] == 1):
        raise ValueError("is not [1, spec]")
    _check_treespec_node(parsed[1], 0)


def _check_source_fn_stack(value: str) -> None:
    for item in value.split(";"):
        name, _, target = item.partition(",")
        if not _NAME.fullmatch(name) or not _FQN.fullmatch(target) or len(item) > 256:
            raise ValueError(f"has the entry {item[:80]!r}")


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
_NAME_S = _Str(_match(_NAME, 256))
_FQN_S = _Str(_match(_FQN, 512))

_SYM_EXPR = _Struct(
    {
        "expr_str": _Str(_check_sympy_expr),
        "hint": _Opt(_Union({"as_int": _INT, "as_bool": _BOOL, "as_float": _FLOAT})),
    }
)
_SYM_INT = _Union({"as_expr": _SYM_EXPR, "as_int": _INT})
_SYM_FLOAT = _Union({"as_expr": _SYM_EXPR, "as_float": _FLOAT})
_SYM_BOOL = _Union({"as_expr": _SYM_EXPR, "as_bool": _BOOL})
_DEVICE_S = _Struct({"type": _Str(_match(_DEVICE)), "index": _Opt(_INT)})
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
_SHORT_S = _Str(_match(_SHORT_STRING))
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
    "stack_trace": _inert_text(_MAX_STACK_TRACE),
    "nn_module_stack": _match(_MODULE_STACK, 16 * 1024),
    "source_fn_stack": _check_source_fn_stack,
    "torch_fn": _match(_TORCH_FN, 1024),
}
_NODE = _Struct(
    {
        "target": _Str(_match(_TARGET, 256)),
        "inputs": _List(_Struct({"name": _NAME_S, "arg": _ARGUMENT, "kind": _Opt(_INT)})),
        "outputs": _List(_ARGUMENT),
        "metadata": "node_metadata",
        "is_hop_single_tensor_return": _Opt(_BOOL),
        "name": _Opt(_NAME_S),
    }
)
_NAME_KEY = _match(_NAME, 256)
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
_TREESPEC_S = _Str(_check_treespec)
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
_EXPORTED_PROGRAM = _Struct(
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
            _match(_SYMBOL), _Struct({"min_val": _Opt(_INT), "max_val": _Opt(_INT)})
        ),
        "schema_version": _Struct({"major": _INT, "minor": _INT}),
        "verifiers": _List(_Str(_match(_VERIFIER))),
        "torch_version": _Str(_match(_VERSION)),
        "guards_code": _List(_Str(_check_guard)),
    }
)


def _payload_config(prefix: str) -> _Struct:
    meta = _Struct(
        {
            "path_name": _Str(_match(re.compile(rf"{prefix}_[0-9]{{1,9}}"))),
            "is_param": _BOOL,
            "use_pickle": "false",
            "tensor_meta": _TENSOR_META,
        }
    )
    return _Struct({"config": _Map(_match(_FQN, 512), meta)})


_WEIGHTS_CONFIG = _payload_config("weight")
_CONSTANTS_CONFIG = _payload_config("tensor")


def _validate(value: Any, spec: Any, path: tuple[str, ...]) -> None:
    if spec is None:
        raise _Refused(f"{_where(path)} must be empty")
    if spec == _INT:
        ok = type(value) is int and abs(value) <= _MAX_INT
    elif spec == _BOOL:
        ok = type(value) is bool
    elif spec == _FLOAT:
        ok = type(value) in (int, float)
    elif spec == "false":
        if value is not False:
            raise _Refused(f"{_where(path)} is {value!r}: the entry is stored with pickle")
        ok = True
    elif spec == "node_metadata":
        ok = isinstance(value, dict)
        for key, text in value.items() if ok else ():
            check = _NODE_METADATA.get(key)
            if check is None or not isinstance(text, str):
                raise _Refused(f"{_where(path)} holds the metadata entry {key!r}")
            _run_check(check, text, (*path, key))
    elif isinstance(spec, _Str):
        ok = isinstance(value, str)
        if ok:
            _run_check(spec.check, value, path)
    elif isinstance(spec, _Opt):
        ok = True
        if value is not None:
            _validate(value, spec.inner, path)
    elif isinstance(spec, _List):
        ok = isinstance(value, list)
        for i, item in enumerate(value if ok else ()):
            _validate(item, spec.item, (*path, str(i)))
    elif isinstance(spec, _Map):
        ok = isinstance(value, dict)
        if ok and spec.max_len is not None and len(value) > spec.max_len:
            raise _Refused(f"{_where(path)} must be empty, but holds {sorted(value)[:5]}")
        for key, item in value.items() if ok else ():
            _run_check(spec.key, key, (*path, "<key>"))
            _validate(item, spec.value, (*path, key))
    elif isinstance(spec, _Union):
        ok = isinstance(value, dict) and len(value) == 1
        if ok:
            (tag, inner), *_ = value.items()
            if tag not in spec.tags:
                raise _Refused(f"{_where(path)} is of the refused kind {tag!r}")
            _validate(inner, spec.tags[tag], (*path, tag))
    elif isinstance(spec, _Struct):
        ok = isinstance(value, dict)
        for key, item in value.items() if ok else ():
            if key not in spec.fields:
                raise _Refused(f"{_where(path)} holds the unknown field {key!r}")
            _validate(item, spec.fields[key], (*path, key))
    else:  # pragma: no cover - a bug in the schema above
        raise TypeError(f"unknown spec {spec!r}")
    if not ok:
        raise _Refused(f"{_where(path)} has an unexpected value of type {type(value).__name__}")


def _run_check(check: Callable[[str], None], value: str, path: tuple[str, ...]) -> None:
    try:
        check(value)
    except ValueError as err:
        raise _Refused(f"{_where(path)} = {value[:80]!r} {err}") from None


def _strict_json(content: bytes, name: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise _Refused(
                f"{name} repeats a key ({sorted({k for k in keys if keys.count(k) > 1})})"
            )
        return dict(pairs)

    try:
        return json.loads(content.decode("utf-8"), object_pairs_hook=no_duplicates)
    except _Refused:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _Refused(f"{name} is not JSON ({type(err).__name__})") from None


# -- the zip level ----------------------------------------------------------------------

_TEXT_RECORDS = frozenset(
    {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
)
_JSON_RECORDS: dict[str, Any] = {
    "models/model.json": _EXPORTED_PROGRAM,
    "data/weights/model_weights_config.json": _WEIGHTS_CONFIG,
    "data/constants/model_constants_config.json": _CONSTANTS_CONFIG,
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
        raise _Refused(
            f"records {dup[:6]} appear more than once when case is ignored (torch's zip "
            "reader finds names case-insensitively)"
        )
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise _Refused(
                f"record {info.filename!r} is compressed (a zip bomb could expand without bound); "
                "torch.export.save stores every record uncompressed"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]{1,512}", info.filename) or ".." in info.filename:
            raise _Refused(f"record name {info.filename[:80]!r} is not a plain relative path")
    prefixes = {info.filename.split("/", 1)[0] for info in infos}
    if len(prefixes) != 1 or any("/" not in info.filename for info in infos):
        raise _Refused("expected every record under one top-level folder")
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
        raise _Refused(f"torch's zip reader cannot open it ({type(err).__name__})") from None
    if seen != names:
        raise _Refused(
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
            raise _Refused(f"the record {name!r} is missing")
    for name, spec in _JSON_RECORDS.items():
        if records[name].file_size > MAX_JSON_RECORD_BYTES:
            raise _Refused(
                f"record {name!r} declares {records[name].file_size} bytes, over the cap of "
                f"{MAX_JSON_RECORD_BYTES}"
            )
        content = bytes(reader.get_record(name))
        if len(content) != records[name].file_size:
            raise _Refused(f"record {name!r} is not the size its header declares")
        data = _strict_json(content, name)
        _validate(data, spec, (name,))
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
        raise _Refused(
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
    except _Refused as err:
        raise ModelLoadError(f"Refusing to load {p.name}: {err}. {_FIX}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ModelLoadError(
            f"Refusing to load {p.name}: the zip is unreadable ({type(err).__name__}: {err}). "
            f"{_FIX}"
        ) from None
