"""The grammars of the strings torch's export deserializer evaluates or turns into code.

Each check takes one string of a ``.pt2`` graph and raises ``ValueError`` (with what is
wrong) unless it matches its field's grammar: a whitelisted Python AST for ``expr_str``
(``sympy.sympify`` evaluates it) and ``guards_code`` (``exec``-ed by
``ExportedProgram.module()``), JSON of plain tree specs for ``in_spec``/``out_spec``,
identifiers for names, and inert one-line text elsewhere. Used by
:mod:`mlflow_plugin.pt2_schema`; see :mod:`mlflow_plugin.pt2_check` for why.

Example:
    >>> check_sympy_expr("Symbol('s77', positive=True, integer=True)")
    >>> check_sympy_expr("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: calls '__import__'
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "CONTROL",
    "FQN",
    "MAX_INT",
    "MAX_STACK_TRACE",
    "NAME",
    "SYMBOL",
    "check_guard",
    "check_source_fn_stack",
    "check_sympy_expr",
    "check_treespec",
    "inert_text",
    "match",
]

_MAX_STRING = 4096
MAX_STACK_TRACE = 64 * 1024
_MAX_EXPR = 2000
_MAX_DEPTH = 64
MAX_INT = 2**63
_MAX_POW = 64


# -- grammars of strings -------------------------------------------------------------

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
NAME = re.compile(rf"{_IDENT}")
FQN = re.compile(rf"(?:(?:{_IDENT}|[0-9]+)(?:\.(?:{_IDENT}|[0-9]+))*)?")
SYMBOL = re.compile(r"[a-z]{1,4}[0-9]{1,9}")
# Anything Python's tokenizer or a terminal could treat as a line break or control.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def match(pattern: re.Pattern[str], limit: int = _MAX_STRING) -> Callable[[str], None]:
    """A check that ``value`` fully matches ``pattern`` and is at most ``limit`` long."""

    def check(value: str) -> None:
        if len(value) > limit or not pattern.fullmatch(value):
            raise ValueError(f"does not match {pattern.pattern!r}")

    return check


def inert_text(limit: int) -> Callable[[str], None]:
    """A check for text that can never break out of a comment: no control characters."""

    def check(value: str) -> None:
        if len(value) > limit:
            raise ValueError(f"is longer than {limit} characters")
        if CONTROL.search(value):
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
        and abs(node.value) <= MAX_INT
    )


def _check_sympy_node(node: ast.AST, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("is nested too deeply")
    if isinstance(node, ast.Constant):
        if not _small_number(node) and type(node.value) is not bool:
            raise ValueError(f"holds the constant {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id not in _SYMPY_NAMES and not SYMBOL.fullmatch(node.id):
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
            SYMBOL.fullmatch(name.value)
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


def check_sympy_expr(value: str) -> None:
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
        and bool(NAME.fullmatch(base.slice.value))
    )


def _check_guard_node(node: ast.AST, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("is nested too deeply")
    if _is_input_size(node):
        return
    if isinstance(node, ast.Constant):
        if not (type(node.value) is int and abs(node.value) <= MAX_INT):
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


def check_guard(value: str) -> None:
    """``guards_code``: a one-line comparison of input sizes (it is ``exec``-ed)."""
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
            isinstance(keys, list) and all(isinstance(k, str) and NAME.fullmatch(k) for k in keys)
        ):
            raise ValueError(f"has the context {context!r}")
    children = spec["children_spec"]
    if not isinstance(children, list):
        raise ValueError("has children_spec that is not a list")
    for child in children:
        _check_treespec_node(child, depth + 1)


def check_treespec(value: str) -> None:
    """``in_spec``/``out_spec``: JSON of tuples, lists, dicts and leaves only."""
    if len(value) > 64 * 1024:
        raise ValueError("is too long")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError("is not JSON") from None
    if not (isinstance(parsed, list) and len(parsed) == 2 and parsed[0] == 1):
        raise ValueError("is not [1, spec]")
    _check_treespec_node(parsed[1], 0)


def check_source_fn_stack(value: str) -> None:
    """``source_fn_stack``: ``name,dotted.target`` entries (resolved with getattr)."""
    for item in value.split(";"):
        name, _, target = item.partition(",")
        if not NAME.fullmatch(name) or not FQN.fullmatch(target) or len(item) > 256:
            raise ValueError(f"has the entry {item[:80]!r}")
