"""One thread for a serving process's torch work: one OpenMP team, which keeps spinning.

libgomp (torch's OpenMP on Linux) keeps a team of worker threads for each thread that
starts a parallel region. MLflow's scoring server loads a model on its main thread and
runs each request's ``predict`` on a worker thread (``asyncio.to_thread``), so a served
model ends up with two or more teams, more OpenMP threads than cores. libgomp then
throttles its spin-wait (a waiting thread sleeps in the kernel almost at once), and each
of the ODIN pass's parallel kernels waits for a futex wake-up. Measured on a served
ResNet-20 (compiled scorer, batch 256, 2 cores, one client): the scoring thread was off
the CPU for 60-80 ms of a 340-430 ms ODIN pass; with the model loaded and scored on one
thread, the pass took 240-320 ms with wall time equal to CPU time, and the requests
275-327 ms instead of 386-402 ms.

So inside a scoring server the ``odin`` flavour loads (and compiles) the model on one
process-wide thread, ``odin-scorer``, and every request's scoring runs there too; decoding
stays on the request's thread, so requests still decode while another one scores.
``ODIN_SCORER_THREAD`` (or ``model_config["scorer_thread"]``): ``auto`` (default: inside
MLflow's scoring server, as :func:`mlflow_plugin.allocator.switched_on` decides), ``true``,
``false``.

Example:
    >>> runner = ScorerThread()
    >>> runner.run(lambda: threading.current_thread().name)
    'odin-scorer_0'
    >>> runner.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mlflow_plugin.allocator import switched_on

__all__ = ["SCORER_THREAD_ENV", "ScorerThread", "scorer_for", "shared_scorer"]

#: ``true``, ``false`` or ``auto`` (default: only inside MLflow's scoring server).
SCORER_THREAD_ENV = "ODIN_SCORER_THREAD"
_T = TypeVar("_T")


class ScorerThread:
    """A single worker thread that runs what it is given, one call at a time.

    A call made from the scorer thread itself runs in place (no deadlock when scoring
    code loads or scores again).
    """

    def __init__(self, name: str = "odin-scorer") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident = self._pool.submit(threading.get_ident).result()

    def run(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` on the scorer thread; its result, or its exception."""
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        """Let the thread finish what it was given and end."""
        self._pool.shutdown(wait=True)


_lock = threading.Lock()
_shared: ScorerThread | None = None


def shared_scorer() -> ScorerThread:
    """The process's scorer thread (started on first use): one OpenMP team per process."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = ScorerThread()
        return _shared


def scorer_for(setting: Any = None) -> ScorerThread | None:
    """The shared scorer thread where wanted, else ``None`` (score on the caller's thread).

    Args:
        setting: ``model_config["scorer_thread"]``; ``None`` reads ``$ODIN_SCORER_THREAD``.

    Raises:
        ValueError: A value other than true, false or auto.

    Example:
        >>> scorer_for("false") is None
        True
    """
    return shared_scorer() if switched_on(setting, "scorer_thread", SCORER_THREAD_ENV) else None
