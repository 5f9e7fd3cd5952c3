"""README.md runs as pasted: its bash and python blocks, in order, in a user's clone.

The clone is a temporary folder holding links to this checkout's files and to its virtual
environment (``.venv``, the one running the tests), beside ``../shared/data`` (a link to
the real data, when present). Each block runs there as a fresh process (bash with
``-euo pipefail``), in README order, so a block that uses what an earlier one made (a
registered model, a file) finds it. A block must leave no process behind. Blocks marked
``<!-- readme-test: skip, REASON -->`` are not run; ``serves URL`` blocks are started,
asked for URL and stopped. See tests/readme_blocks.py.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlflow_plugin.serving import group_alive
from tests.conftest import REPO, SHARED_DATA
from tests.readme_blocks import RUNNABLE, Block, command_table_entries, parse_blocks

README = REPO / "README.md"
# What a clone holds that README's blocks use (never generated files such as mlflow.db).
CLONE_ENTRIES = ("README.md", "pyproject.toml", "docs", "examples", "odin_monitor", "mlflow_plugin")
BLOCK_TIMEOUT_S = 600
SERVE_TIMEOUT_S = 120
LEFTOVER_GRACE_S = 30


def readme_blocks() -> list[Block]:
    return parse_blocks(README.read_text(encoding="utf-8"))


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = readme_blocks()
    problems = [p for b in blocks if (p := b.problem()) is not None]
    assert not problems, "\n".join(problems)
    # The test below must have something to run, and most of README is meant to run.
    runnable = [b for b in blocks if b.lang in RUNNABLE]
    run = [b for b in runnable if b.skip_reason is None]
    assert len(run) >= len(runnable) - 3, [b.line for b in runnable if b.skip_reason]


def test_markers_are_parsed_as_written() -> None:
    text = (
        "intro\n"
        "<!-- readme-test: skip, ~4 min -->\n"
        "```bash\nsleep 240\n```\n"
        "```\noutput\n```\n"
        "<!-- readme-test: serves http://127.0.0.1:8000 -->\n"
        "```bash\nserve\n```\n"
        "<!-- readme-test: skip -->\n"
        "```python\nx = 1\n```\n"
        "```sh\nls\n```\n"
    )
    blocks = parse_blocks(text)
    assert [(b.line, b.lang) for b in blocks] == [
        (3, "bash"),
        (6, ""),
        (10, "bash"),
        (14, "python"),
        (17, "sh"),
    ]
    assert blocks[0].skip_reason == "~4 min" and blocks[0].problem() is None
    assert blocks[1].code == "output\n" and blocks[1].problem() is None
    assert blocks[2].serves == "http://127.0.0.1:8000" and blocks[2].skip_reason is None
    assert "reason is missing" in (blocks[3].problem() or "")
    assert "```sh" in (blocks[4].problem() or "")
    with pytest.raises(ValueError, match="right below the readme-test marker"):
        parse_blocks("<!-- readme-test: skip, x -->\n\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```bash\nls\n")


def test_command_table_lists_every_command_and_benchmark() -> None:
    from odin_monitor.cli import main
    from odin_monitor.cli.bench_cmd import bench_group

    want = {name for name in main.commands if name != "bench"}
    want |= {f"bench {name}" for name in bench_group.commands}
    listed = command_table_entries(README.read_text(encoding="utf-8"))
    assert want <= listed, f"README's command table lacks {sorted(want - listed)}"
    assert listed <= want, f"README's command table names unknown {sorted(listed - want)}"


# --- running the blocks -------------------------------------------------------------------


def _venv() -> Path:
    if sys.prefix == sys.base_prefix:
        pytest.skip(
            f"the tests run outside a virtual environment ({sys.executable}); README's "
            "blocks call .venv/bin/..., so run the tests with the venv's python"
        )
    return Path(sys.prefix)


def _make_clone(root: Path, venv: Path, with_data: bool) -> Path:
    clone = root / "odin-monitor"
    clone.mkdir()
    for name in CLONE_ENTRIES:
        (clone / name).symlink_to(REPO / name)
    (clone / ".venv").symlink_to(venv)
    if with_data:
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(SHARED_DATA)
    return clone


def _ports(code: str) -> set[int]:
    return {int(p) for p in re.findall(r"(?:127\.0\.0\.1:|--port )(\d{4,5})\b", code)}


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _user_env() -> dict[str, str]:
    """This environment less what would point the blocks elsewhere than the clone."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "ODIN_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
    return env


def _command(block: Block, clone: Path, index: int) -> list[str]:
    script = clone.parent / f"block{index:02d}_line{block.line}.{block.lang}"
    script.write_text(block.code, encoding="utf-8")
    if block.lang == "python":
        return [str(clone / ".venv" / "bin" / "python"), str(script)]
    return ["bash", "-euo", "pipefail", str(script)]


def _stop_group(pgid: int) -> None:
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            return
        os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tail(path: Path, n: int = 4000) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[-n:]


def _run_block(
    block: Block, clone: Path, index: int, log: Path, grace_s: float = LEFTOVER_GRACE_S
) -> None:
    """Run one block to its end; fail on a non-zero exit, a timeout or a leftover process."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            _command(block, clone, index),
            cwd=clone,
            env=_user_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _stop_group(proc.pid)
            pytest.fail(
                f"README.md line {block.line}: still running after {BLOCK_TIMEOUT_S} s\n"
                f"{_tail(log)}"
            )
    # A server stopped by the block's `kill %1` may take a moment to shut down.
    deadline = time.monotonic() + grace_s
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = group_alive(proc.pid)
    _stop_group(proc.pid)
    assert rc == 0, f"README.md line {block.line}: exit code {rc}\n{_tail(log)}"
    assert not left, (
        f"README.md line {block.line}: the block ended but left processes running (a server "
        f"not stopped?)\n{_tail(log)}"
    )


def _serve_block(block: Block, url: str, clone: Path, index: int, log: Path) -> None:
    """Start a server block, wait until ``url`` answers 200, stop it."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            _command(block, clone, index),
            cwd=clone,
            env=_user_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVE_TIMEOUT_S
            status = None
            while status != 200:
                assert proc.poll() is None, (
                    f"README.md line {block.line}: the server exited with {proc.returncode} "
                    f"before {url} answered\n{_tail(log)}"
                )
                assert time.monotonic() < deadline, (
                    f"README.md line {block.line}: {url} did not answer within "
                    f"{SERVE_TIMEOUT_S} s\n{_tail(log)}"
                )
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        status = resp.status
                except (urllib.error.URLError, OSError):
                    time.sleep(0.5)
        finally:
            _stop_group(proc.pid)


@pytest.mark.slow
def test_readme_blocks_run_as_pasted_in_order(tmp_path: Path) -> None:
    venv = _venv()
    missing = [tool for tool in ("curl", "base64") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"README's blocks call {missing}, not found on PATH; install them to run it")
    with_data = (SHARED_DATA / "README.md").is_file()
    blocks = [b for b in readme_blocks() if b.lang in RUNNABLE]
    busy = sorted(
        p for b in blocks if b.skip_reason is None for p in _ports(b.code) if _port_busy(p)
    )
    if busy:
        pytest.skip(f"README's blocks serve on 127.0.0.1 ports {busy}, in use on this machine")
    clone = _make_clone(tmp_path, venv, with_data)
    timings: list[str] = []
    not_run: list[str] = []
    for index, block in enumerate(blocks):
        if block.skip_reason is not None:
            continue
        if not with_data and "../shared/data" in block.code:
            # This block and every later one (they may use what it makes) need the data.
            not_run = [f"line {b.line}" for b in blocks[index:] if b.skip_reason is None]
            break
        log = tmp_path / f"block{index:02d}_line{block.line}.log"
        start, cpu = time.monotonic(), _children_cpu_s()
        if block.serves is not None:
            _serve_block(block, block.serves, clone, index, log)
        else:
            _run_block(block, clone, index, log)
        timings.append(
            f"line {block.line} ({block.lang}): {time.monotonic() - start:.1f} s wall, "
            f"{_children_cpu_s() - cpu:.1f} s CPU"
        )
    print(
        f"README blocks (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):\n  "
        + "\n  ".join(timings)
    )
    if not_run:
        pytest.skip(
            f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared/data; set "
            f"ODIN_SHARED_DATA to its folder): README blocks at {', '.join(not_run)} not run"
        )


@pytest.mark.parametrize(
    ("lang", "code", "fails_with"),
    [
        ("bash", "echo fine\n", None),
        ("bash", "false\necho not reached\n", "exit code 1"),  # -e
        ("bash", "false | true\n", "exit code 1"),  # -o pipefail
        ("bash", "echo $NOT_SET\n", "exit code 1"),  # -u
        ("bash", "sleep 60 &\n", "left processes running"),
        ("python", "import sys\nsys.exit(3)\n", "exit code 3"),
        ("python", "print('fine')\n", None),
    ],
)
def test_a_block_fails_the_run_when_it_breaks(
    tmp_path: Path, lang: str, code: str, fails_with: str | None
) -> None:
    clone = _make_clone(tmp_path, _venv(), with_data=False)
    block = Block(line=7, lang=lang, code=code, marker=None)
    log = tmp_path / "block.log"
    if fails_with is None:
        _run_block(block, clone, 0, log, grace_s=1.0)
        return
    with pytest.raises(AssertionError, match=f"README.md line 7: .*{fails_with}"):
        _run_block(block, clone, 0, log, grace_s=1.0)
