"""Benchmark helpers, and where the benchmarks sit in the import graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from odin_monitor.bench.common import command_line, markdown_table, resolve_data_dir
from odin_monitor.errors import DataLoadError

REPO = Path(__file__).resolve().parents[2]


def test_markdown_table_rows_follow_the_header():
    assert markdown_table(["a", "b"], [[1, "x"], [2, "y"]]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | x |",
        "| 2 | y |",
    ]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["/r/odin_monitor/bench/quality/__main__.py", "--depths", "20"],
         "python -m odin_monitor.bench.quality --depths 20"),
        (["/r/odin_monitor/bench/speed/cli.py"], "python -m odin_monitor.bench.speed.cli"),
        (["/venv/bin/odin-monitor", "bench", "serve", "--markdown", "a b.md"],
         "odin-monitor bench serve --markdown 'a b.md'"),
    ],
)  # fmt: skip
def test_command_line_can_be_typed_again(argv, shown):
    assert command_line(argv) == shown


def test_an_explicit_missing_data_dir_says_how_to_fix_it(tmp_path):
    with pytest.raises(DataLoadError, match="--data-dir"):
        resolve_data_dir(tmp_path / "nope")


def _imports(folder: Path) -> dict[str, set[str]]:
    out = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        out[path.relative_to(REPO).as_posix()] = names
    return out


def test_neither_the_core_nor_the_mlflow_plugin_imports_the_benchmarks():
    found = {**_imports(REPO / "odin_monitor"), **_imports(REPO / "mlflow_plugin")}
    below = {
        path: sorted(m for m in names if m.startswith("odin_monitor.bench"))
        for path, names in found.items()
        if not path.startswith(("odin_monitor/bench/", "odin_monitor/cli/"))
    }
    assert {p: m for p, m in below.items() if m} == {}
    # The CLI reaches them only through `odin-monitor bench`, by module name at call time.
    assert all(
        not any(m.startswith("odin_monitor.bench") for m in names)
        for path, names in found.items()
        if path.startswith("odin_monitor/cli/")
    )


def test_quality_and_speed_import_neither_mlflow_nor_evidently():
    code = (
        "import sys; sys.modules['mlflow'] = None; sys.modules['evidently'] = None; "
        "sys.modules['torchvision'] = None; "
        "import odin_monitor.bench.quality, odin_monitor.bench.speed"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
