"""The inference log keeps every accepted row when the server is stopped by a signal.

``mlflow models serve`` runs uvicorn, which catches SIGTERM/SIGINT, shuts down
gracefully, restores the handlers it found and raises the signal again: the process
dies by the signal and ``atexit`` never runs. The rows still waiting for the
background flush must be on disk anyway, and the process must end as it would have.
First without a server (a child process that appends rows and signals itself), then
with the real ``mlflow models serve`` stopped by SIGTERM right after its responses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from odin_mlflow_testing import images

from mlflow_plugin.serving import running_server, stop_server
from odin_monitor.errors import InputValidationError
from odin_monitor.inference_log import (
    list_parts,
    parse_flush_seconds,
    read_part,
    writer_from_config,
)

REPO = Path(__file__).resolve().parents[2]

# Long enough that no row reaches the disk by the background thread during a test.
LONG_FLUSH = "600"


# Shared by the child processes and by the test computing what they must have logged.
SCORES = """
import numpy as np
import pandas as pd

def scores(n, seed):
    rng = np.random.default_rng(seed)
    odin = rng.uniform(0.1, 0.2, n)
    return pd.DataFrame({"odin_score": odin, "spread_score": 1000 * np.log(10 * odin),
                         "msp": rng.uniform(0.3, 1, n), "predicted_class": rng.integers(0, 5, n),
                         "is_ood": odin < 0.12})
"""

CHILD = (
    SCORES
    + """
import json, os, signal, sys, threading, time
from odin_monitor.inference_log import InferenceLogWriter, list_parts, part_rows

folder = sys.argv[1]

def writer():
    return InferenceLogWriter(folder, model_name="m", model_version="1",
                              calibration_sha256="ab" * 32, flush_seconds=600)

def on_disk():
    return sum(part_rows(os.path.join(folder, p.name)) for p in list_parts(folder))
"""
)


def run_child(body: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``body`` after :data:`CHILD` in a fresh interpreter (a hang fails the test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", CHILD + textwrap.dedent(body), str(folder)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def expected_scores(*requests: tuple[int, int]) -> np.ndarray:
    """The sorted ODIN scores of requests ``(n, seed)``, computed here, not in the child."""
    namespace: dict = {}
    exec(SCORES, namespace)
    frames = [namespace["scores"](n, seed) for n, seed in requests]
    return np.sort(pd.concat(frames)["odin_score"].to_numpy())


def assert_logged(folder: Path, *requests: tuple[int, int]) -> None:
    rows = logged_rows(folder)
    assert len(rows) == sum(n for n, _ in requests)
    assert sorted(rows.groupby("request_id").size()) == sorted(n for n, _ in requests)
    np.testing.assert_array_equal(
        np.sort(rows["odin_score"].to_numpy()), expected_scores(*requests)
    )


def test_sigterm_with_the_default_handler_writes_the_rows_then_ends_by_it(tmp_path):
    done = run_child(
        """
        w = writer()
        w.append(scores(3, 1))
        w.append(scores(4, 2))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        print("still alive")
        """,
        tmp_path,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "still alive" not in done.stdout
    assert_logged(tmp_path, (3, 1), (4, 2))


def test_sigint_writes_the_rows_then_raises_keyboard_interrupt_as_before(tmp_path):
    done = run_child(
        """
        # Python's own SIGINT handler, as in a process started from a terminal: a test
        # run started with & from a non-interactive shell hands SIGINT down ignored, and
        # the writer rightly installs nothing over SIG_IGN.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        w = writer()
        w.append(scores(5, 3))
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", on_disk())
            sys.exit(3)
        """,
        tmp_path,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == ["KeyboardInterrupt", "5"]
    assert_logged(tmp_path, (5, 3))


def test_a_python_handler_is_chained_once_and_later_rows_are_written_at_once(tmp_path):
    done = run_child(
        """
        calls = []
        signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
        first, second = writer(), writer()  # one handler for both: chained once
        first.append(scores(2, 4))
        second.append(scores(3, 5))
        os.kill(os.getpid(), signal.SIGTERM)
        after_signal = on_disk()
        first.append(scores(4, 6))  # e.g. a request finishing during a graceful shutdown
        print(json.dumps({"calls": calls, "after_signal": after_signal, "at_once": on_disk()}))
        os._exit(0)  # no atexit: what is on disk is what the signal path wrote
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "calls": [int(signal.SIGTERM)], "after_signal": 5, "at_once": 9,
    }  # fmt: skip
    assert_logged(tmp_path, (2, 4), (3, 5), (4, 6))


@pytest.mark.parametrize("model_loads", ["before", "inside"])
def test_uvicorn_graceful_shutdown_and_its_raised_signal_lose_no_row(tmp_path, model_loads):
    # uvicorn 0.55 loads the app before capture_signals with one worker, inside it in each
    # worker of --workers N; on the way out it restores the old handlers and re-raises.
    done = run_child(
        f"""
        import uvicorn

        server = uvicorn.Server(uvicorn.Config("unused:app"))
        w = writer() if {model_loads!r} == "before" else None
        with server.capture_signals():
            w = w or writer()
            w.append(scores(3, 7))
            os.kill(os.getpid(), signal.SIGTERM)
            print("should_exit", server.should_exit, flush=True)
            w.append(scores(4, 8))  # a request completing during the graceful shutdown
        print("survived")
        """,
        tmp_path,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert done.stdout.split() == ["should_exit", "True"]
    assert_logged(tmp_path, (3, 7), (4, 8))


def test_a_signal_inside_a_main_thread_write_waits_for_the_part(tmp_path):
    # Handled inside the write, the flush would wait for its own lock: a hang.
    done = run_child(
        """
        import odin_monitor.inference_log as il

        real_write = il.write_part

        def write_part(folder, frame, name):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while this thread writes a part
            return real_write(folder, frame, name)

        il.write_part = write_part
        w = writer()
        w.append(scores(3, 9))
        w.append(scores(2, 10))
        w.flush()
        print("survived")
        """,
        tmp_path,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "survived" not in done.stdout
    assert_logged(tmp_path, (3, 9), (2, 10))


def test_normal_exit_still_writes_the_rows(tmp_path):
    done = run_child("writer().append(scores(6, 11))\nsys.exit(0)\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_logged(tmp_path, (6, 11))


def test_installed_only_from_the_main_thread_and_never_over_sig_ign(tmp_path):
    done = run_child(
        """
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        from_thread = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        writer()
        print(json.dumps({
            "thread_left_sigterm": from_thread,
            "main_took_sigterm": callable(signal.getsignal(signal.SIGTERM)),
            "sigint_still_ignored": signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
        }))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "thread_left_sigterm": True, "main_took_sigterm": True, "sigint_still_ignored": True,
    }  # fmt: skip


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_flush_interval_is_refused_clearly(text, tmp_path, monkeypatch):
    with pytest.raises(InputValidationError, match="positive number of seconds, but got"):
        parse_flush_seconds(text)
    monkeypatch.setenv("ODIN_INFERENCE_LOG_FLUSH_SECONDS", text)
    with pytest.raises(InputValidationError, match="ODIN_INFERENCE_LOG_FLUSH_SECONDS"):
        writer_from_config({"inference_log": str(tmp_path)}, calibration_sha256="ab" * 32)


def test_the_flush_interval_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ODIN_INFERENCE_LOG_FLUSH_SECONDS", "7.5")
    w = writer_from_config({"inference_log": str(tmp_path)}, calibration_sha256="ab" * 32)
    assert w is not None and w.flush_seconds == 7.5


def post(url: str, x: np.ndarray) -> pd.DataFrame:
    req = urllib.request.Request(
        url, data=json.dumps({"inputs": x.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=120) as resp:
        return pd.DataFrame(json.loads(resp.read())["predictions"])


def logged_rows(folder: Path) -> pd.DataFrame:
    parts = list_parts(folder)
    if not parts:
        return pd.DataFrame({"request_id": [], "odin_score": []})
    return pd.concat([read_part(folder / p.name) for p in parts], ignore_index=True)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_right_after_the_responses_loses_no_row(
    saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    folder = tmp_path / "ilog"
    monkeypatch.setenv("ODIN_INFERENCE_LOG", str(folder))
    monkeypatch.setenv("ODIN_INFERENCE_LOG_FLUSH_SECONDS", LONG_FLUSH)
    sizes = [3, 5, 2, 4, 1, 6]
    log = tmp_path / "server.log"
    with running_server(saved_model, workers=workers, log_file=log, timeout=180) as server:
        answers = [
            post(f"{server.url}/invocations", images(n, seed=50 + i).numpy())
            for i, n in enumerate(sizes)
        ]
        stop_server(server.proc)  # SIGTERM to the group at once: no sleep
    rows = logged_rows(folder)
    server_log = log.read_text(errors="replace")
    tail = "\n".join(server_log.splitlines()[-12:])
    assert len(rows) == sum(sizes), f"{len(rows)} of {sum(sizes)} rows logged; server:\n{tail}"
    # One request id per request, with its number of rows.
    assert sorted(rows.groupby("request_id").size()) == sorted(sizes)
    want = np.sort(pd.concat(answers, ignore_index=True)["odin_score"].to_numpy(np.float64))
    np.testing.assert_allclose(np.sort(rows["odin_score"].to_numpy()), want, rtol=0, atol=1e-6)
    assert "Finished server process" in server_log  # uvicorn still shut down gracefully
