"""glibc malloc tuning in serving processes: where it applies, and that it stops the page faults.

The tuning is process-wide, so every test that applies it runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from mlflow_plugin import allocator
from mlflow_plugin.allocator import (
    MALLOC_TUNING_ENV,
    SERVER_MODEL_PATH_ENV,
    parse_malloc_tuning,
    tune_malloc,
    wanted,
)


def test_auto_tunes_only_a_process_that_mlflows_scoring_server_runs() -> None:
    assert wanted("auto", environ={SERVER_MODEL_PATH_ENV: "/m"}) is True
    assert wanted(None, environ={SERVER_MODEL_PATH_ENV: "/m"}) is True
    assert wanted("auto", environ={}) is False
    assert wanted("true", environ={}) is True
    assert wanted("off", environ={SERVER_MODEL_PATH_ENV: "/m"}) is False


def test_the_variable_read_is_the_one_mlflows_scoring_server_sets() -> None:
    from mlflow.pyfunc import scoring_server

    _, env = scoring_server.get_cmd("/tmp/some-model", port=5001)
    assert SERVER_MODEL_PATH_ENV in env
    assert SERVER_MODEL_PATH_ENV not in os.environ  # the test process is no server


def test_a_bad_setting_is_refused_naming_where_it_came_from(saved_model: Path) -> None:
    with pytest.raises(ValueError, match=r"\$ODIN_MALLOC_TUNING .*'sometimes'"):
        parse_malloc_tuning("sometimes")
    with pytest.raises(MlflowException, match=r"model_config\['malloc_tuning'\].*'maybe'"):
        mlflow.pyfunc.load_model(str(saved_model), model_config={"malloc_tuning": "maybe"})
    assert allocator._done is None  # refused before anything was set


def test_unknown_parameters_and_values_are_refused_before_any_call() -> None:
    with pytest.raises(ValueError, match="M_ARENA_MAX"):
        tune_malloc({"M_ARENA_MAX": 1})
    with pytest.raises(ValueError, match=r"M_TOP_PAD in \[0, 2\*\*31\)"):
        tune_malloc({"M_TOP_PAD": -5})


# A served request's pattern: a worker thread allocates blocks of 4-16 MiB (88 MiB in
# all, more than one 64 MiB glibc heap), touches them and frees them, again and again.
_CHURN = textwrap.dedent(
    """
    import json, os, resource, sys, threading
    import numpy as np
    import mlflow
    from mlflow_plugin import allocator
    pf = mlflow.pyfunc.load_model(sys.argv[1], model_config={"device": "cpu"})
    out = {}
    def request_like():
        for i in range(25):
            if i == 5:
                out["f0"] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            blocks = [np.ones(n * 2**18, np.float32) for n in (16, 16, 16, 16, 8, 8, 4, 4)]
            del blocks
        out["faults"] = (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - out["f0"]) / 20
    t = threading.Thread(target=request_like)
    t.start()
    t.join()
    done = allocator._done
    print(json.dumps({"tuned": done is not None and done.applied, "faults": out["faults"]}))
    """
)


def _churn(model: Path, env: dict[str, str]) -> dict[str, float]:
    base = {
        k: v for k, v in os.environ.items() if k not in (SERVER_MODEL_PATH_ENV, MALLOC_TUNING_ENV)
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHURN, str(model)],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_served_process_keeps_its_memory_between_requests(saved_model: Path) -> None:
    if not tune_malloc({}).applied:
        pytest.skip("not glibc: there is no mallopt to tune here")
    served = _churn(saved_model, {SERVER_MODEL_PATH_ENV: str(saved_model)})
    notebook = _churn(saved_model, {})
    opted_out = _churn(saved_model, {SERVER_MODEL_PATH_ENV: "x", MALLOC_TUNING_ENV: "false"})
    assert served["tuned"] and not notebook["tuned"] and not opted_out["tuned"]
    # glibc's defaults map a heap again and fault on every page of it, request after
    # request; tuned, the freed blocks are reused in place.
    assert notebook["faults"] > 500, notebook
    assert opted_out["faults"] > 500, opted_out
    assert served["faults"] < 10, served
