"""A hostile .pt2 archive runs no code: every field torch's deserializer evaluates is checked.

Each code-execution case proves itself with a marker file: torch alone creates it (the
payload is live), the library's loaders refuse the archive and the marker never appears.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mlflow_plugin
from mlflow_plugin import pt2_check
from mlflow_plugin.export import export_classifier, load_exported
from mlflow_plugin.pt2_check import check_pt2_archive
from odin_monitor import ModelLoadError
from odin_monitor.cli import main

Records = list[tuple[str, bytes]]
SYMBOL = "Symbol('s77', positive=True, integer=True)"


def read_records(archive: Path) -> Records:
    with zipfile.ZipFile(archive) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def write_records(archive: Path, records: Records, compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(archive, "w", compression=compression) as z:
        for name, content in records:
            z.writestr(name, content)


def edit_json(records: Records, suffix: str, edit: Callable[[Any], Any]) -> Records:
    out = []
    for name, content in records:
        if name.endswith(suffix):
            data = json.loads(content)
            content = json.dumps(edit(data) or data).encode()
        out.append((name, content))
    return out


def batch_symbol(graph: dict[str, Any]) -> str:
    """The expr_str torch wrote for the dynamic batch dimension."""
    text = json.dumps(graph)
    start = text.index("Symbol(")
    return text[start : text.index(")", start) + 1]


def replace_text(data: Any, old: str, new: str) -> Any:
    return json.loads(json.dumps(data).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1]))


def torch_load_creates(archive: Path, marker: Path) -> bool:
    """Load with torch alone (no check), in a subprocess, and call the module."""
    code = (
        "import torch, sys\n"
        "ep = torch.export.load(sys.argv[1])\n"
        "m = ep.module()\n"
        "m(torch.rand(2, 3, 8, 8))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(archive)], capture_output=True, timeout=300)
    return marker.exists()


@pytest.fixture()
def archive(model_copy: Path) -> Path:
    return model_copy / "data" / "model.pt2"


def sympify_payload(marker: Path) -> Callable[[Any], Any]:
    def edit(graph: Any) -> Any:
        symbol = batch_symbol(graph)
        evil = f"(__import__('os').system('touch {marker}') and 0) + {symbol}"
        return replace_text(graph, symbol, evil)

    return edit


def test_sympify_payload_is_refused_by_every_loader(
    model_copy: Path, archive: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "sympify-marker"
    write_records(
        archive, edit_json(read_records(archive), "models/model.json", sympify_payload(marker))
    )

    # The payload is live: torch.export.load alone runs it.
    probe = tmp_path / "probe.pt2"
    probe.write_bytes(archive.read_bytes())
    assert torch_load_creates(probe, marker), "torch no longer evaluates expr_str?"
    marker.unlink()

    with pytest.raises(ModelLoadError, match=r"expr_str = .* uses Python syntax"):
        check_pt2_archive(archive)
    with pytest.raises(ModelLoadError, match=r"Refusing to load model\.pt2"):
        mlflow_plugin.load_model(str(model_copy))
    import mlflow

    with pytest.raises(ModelLoadError, match=r"Refusing to load model\.pt2"):
        mlflow.pyfunc.load_model(str(model_copy))
    assert not marker.exists()


def test_sympify_payload_is_refused_through_the_cli(
    model_copy: Path, archive: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "cli-marker"
    write_records(
        archive, edit_json(read_records(archive), "models/model.json", sympify_payload(marker))
    )
    batch = tmp_path / "batch.npy"
    np.save(batch, np.random.default_rng(0).uniform(0, 1, (4, 3, 8, 8)).astype(np.float32))
    res = CliRunner().invoke(
        main,
        ["score", str(batch), "--model-uri", str(model_copy), "--monitor-dir", str(tmp_path / "m")],
    )
    assert res.exit_code == 1, res.output
    assert "Refusing to load model.pt2" in res.output
    assert "Traceback" not in res.output
    assert not marker.exists()


def test_case_variant_decoy_is_refused(model_copy: Path, archive: Path, tmp_path: Path) -> None:
    """torch's reader finds names case-insensitively: a decoy config can be the one it reads."""
    marker = tmp_path / "decoy-marker"

    class Touch:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    records = read_records(archive)
    config_name = next(n for n, _ in records if n.endswith("model_weights_config.json"))
    config = json.loads(dict(records)[config_name])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    weight = f"{config_name.rsplit('/', 1)[0]}/{first['path_name']}"
    records = [(n, pickle.dumps(Touch()) if n == weight else c) for n, c in records]
    decoy = (config_name.replace("config.json", "CONFIG.json"), json.dumps(config).encode())
    # Find a position at which torch's own reader returns the decoy for the real name.
    for position in range(len(records) + 1):
        write_records(archive, [*records[:position], decoy, *records[position:]])
        read = torch._C.PyTorchFileReader(str(archive)).get_record(
            config_name[config_name.index("/") + 1 :]
        )
        if b'"use_pickle": true' in bytes(read):
            break
    else:
        pytest.fail("torch's reader never picked the decoy: it may be case-sensitive now")
    probe = tmp_path / "probe.pt2"
    probe.write_bytes(archive.read_bytes())
    assert torch_load_creates(probe, marker), "the decoy's pickle did not run under torch alone"
    marker.unlink()

    with pytest.raises(ModelLoadError, match="more than once when case is ignored"):
        mlflow_plugin.load_model(str(model_copy))
    assert not marker.exists()


def _set(path: list[Any], value: Any) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return data

    return edit


def _rename_input(new: str) -> Callable[[Any], Any]:
    """Rename the user input (the forward's parameter in the generated code) everywhere."""

    def edit(data: Any) -> Any:
        specs = data["graph_module"]["signature"]["input_specs"]
        old = next(s["user_input"]["arg"]["as_tensor"]["name"] for s in specs if "user_input" in s)
        return json.loads(json.dumps(data).replace(json.dumps(old), json.dumps(new)))

    return edit


def _first_node(key: str, value: Any) -> Callable[[Any], Any]:
    return _set(["graph_module", "graph", "nodes", 0, key], value)


def _node_metadata(key: str, value: str) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        data["graph_module"]["graph"]["nodes"][0]["metadata"][key] = value
        return data

    return edit


def _expr(new: str) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        return replace_text(data, batch_symbol(data), new)

    return edit


def _in_spec(spec_type: str) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        sig = data["graph_module"]["module_call_graph"][0]["signature"]
        spec = json.loads(sig["in_spec"])
        spec[1]["type"] = spec_type
        sig["in_spec"] = json.dumps(spec)
        return data

    return edit


def _argument_kind(kind: str, value: Any) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        data["graph_module"]["graph"]["nodes"][0]["inputs"][0]["arg"] = {kind: value}
        return data

    return edit


HOSTILE_GRAPHS = {
    "expr_str attribute access": (_expr("Symbol('s77').__class__"), "Attribute"),
    "expr_str symbol not like s0": (_expr("Symbol('__import__')"), "Symbol whose name"),
    "expr_str string constant": (_expr("Integer('1')"), "constant"),
    "expr_str lambda": (_expr("(lambda: 1)()"), "Lambda|Call"),
    "expr_str huge power": (_expr("Pow(Integer(10), Integer(1000000000))"), "power"),
    "expr_str unknown function": (_expr("exec('1')"), "calls 'exec'"),
    "guards_code exec": (
        _set(["guards_code"], ["__import__('os').system('true') == 0"]),
        "guards_code",
    ),
    "guards_code attribute": (_set(["guards_code"], ["L['x'].__class__ == 1"]), "guards_code"),
    "placeholder name is code": (_rename_input("x=__import__('os').getcwd()"), "does not match"),
    "node name is code": (_first_node("name", "a;b"), "does not match"),
    "target outside aten": (_first_node("target", "builtins.eval"), "target"),
    "subgraph argument": (_argument_kind("as_graph", {"name": "g", "graph": {}}), "as_graph"),
    "custom object argument": (
        _argument_kind("as_custom_obj", {"name": "o", "class_fqn": "os.system"}),
        "as_custom_obj",
    ),
    "operator argument": (_argument_kind("as_operator", "builtins.exec"), "as_operator"),
    "unknown top-level field": (_set(["aoti"], {}), "unknown field 'aoti'"),
    "custom node metadata": (_node_metadata("custom", '{"a": 1}'), "metadata entry 'custom'"),
    "stack trace with carriage return": (
        _node_metadata("stack_trace", 'File "a\rimport os", line 1, in f\n  x'),
        "control character",
    ),
    "tree spec of a foreign type": (_in_spec("os.system"), "in_spec"),
    "custom object values": (
        _set(["graph_module", "graph", "custom_obj_values"], {"o": {}}),
        "must be empty",
    ),
    "range constraint on a non-symbol": (
        _set(["range_constraints", "__import__"], {"min_val": 1, "max_val": None}),
        "range_constraints",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_GRAPHS))
def test_hostile_graph_fields_are_refused(archive: Path, case: str) -> None:
    edit, message = HOSTILE_GRAPHS[case]
    write_records(archive, edit_json(read_records(archive), "models/model.json", edit))
    with pytest.raises(ModelLoadError, match=message):
        check_pt2_archive(archive)


def test_duplicate_json_keys_are_refused(archive: Path) -> None:
    records = read_records(archive)
    records = [
        (n, c.replace(b'"guards_code": []', b'"guards_code": [], "guards_code": []'))
        if n.endswith("models/model.json")
        else (n, c)
        for n, c in records
    ]
    write_records(archive, records)
    with pytest.raises(ModelLoadError, match="repeats a key"):
        check_pt2_archive(archive)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("extra/notes.txt", b"hello", "is not one of"),
        ("models/second.json", b"{}", "is not one of"),
        ("data/weights/model.pt", b"\x80\x04N.", "is not one of"),
        ("data/constants/custom_obj_0", b"\x80\x04N.", "is not one of"),
        ("data/../escape.json", b"{}", "plain relative path"),
    ],
)
def test_records_outside_the_allowlist_are_refused(
    archive: Path, name: str, content: bytes, message: str
) -> None:
    records = read_records(archive)
    prefix = records[0][0].split("/", 1)[0]
    write_records(archive, [*records, (f"{prefix}/{name}", content)])
    with pytest.raises(ModelLoadError, match=message):
        check_pt2_archive(archive)


def test_constant_stored_as_a_custom_object_is_refused(archive: Path) -> None:
    def edit(config: Any) -> Any:
        config["config"]["c"] = {
            "path_name": "custom_obj_0",
            "is_param": False,
            "use_pickle": False,
            "tensor_meta": None,
        }
        return config

    write_records(archive, edit_json(read_records(archive), "model_constants_config.json", edit))
    with pytest.raises(ModelLoadError, match="path_name"):
        check_pt2_archive(archive)


def test_compressed_record_is_refused_without_being_read(archive: Path) -> None:
    """A zip bomb: 256 MiB of JSON whitespace deflated to a fraction of a MiB."""
    records = read_records(archive)
    bomb = b"{" + b" " * (256 * 2**20) + b"}"
    records = [(n, bomb) if n.endswith("models/model.json") else (n, c) for n, c in records]
    write_records(archive, records, compression=zipfile.ZIP_DEFLATED)
    del bomb, records
    assert archive.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ModelLoadError, match="compressed"):
            check_pt2_archive(archive)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"the check allocated {peak / 2**20:.0f} MiB"


def test_json_record_over_the_cap_is_refused_by_its_declared_size(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = dict(read_records(archive))
    graph_size = next(len(c) for n, c in size.items() if n.endswith("models/model.json"))
    monkeypatch.setattr(pt2_check, "MAX_JSON_RECORD_BYTES", graph_size - 1)
    with pytest.raises(ModelLoadError, match="over the cap"):
        check_pt2_archive(archive)


def test_unmodified_archives_pass(archive: Path, tmp_path: Path) -> None:
    check_pt2_archive(archive)
    from odin_monitor.models import resnet20

    path = export_classifier(resnet20(), (3, 32, 32), tmp_path / "r20.pt2")
    check_pt2_archive(path)
    module = load_exported(path)
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 10)
