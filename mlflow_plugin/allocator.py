"""glibc ``malloc`` settings for a model server: keep freed memory for the next request.

MLflow's scoring server runs every request's ``predict`` in a worker thread
(``asyncio.to_thread``). A worker thread allocates from its own glibc *arena*, made of
64 MiB heaps, and glibc gives a heap back to the kernel (``munmap``) as soon as its
memory is all free. An ODIN pass on a batch (forward, input gradient, forward) needs
more than one heap, so after each request its heaps go back, and the next request maps
them again and page-faults on every 4 KiB page. Measured in a served ResNet-20 process
(8 runs of ``mlflow models serve``, batch 256): 8,000-73,000 minor faults and 50-260 ms
of kernel time per request, none in a plain process scoring the same batch; ``strace``
of the server shows a 64 MiB heap mapped and unmapped several times per request.

:func:`tune_malloc` sets three of glibc's ``mallopt`` parameters for the whole process
so freed memory stays mapped for the next request:

* ``M_TOP_PAD`` 64 MiB: a heap whose memory is all free is kept (glibc deletes it only
  when more than this pad would remain) and the main heap keeps this much on top;
* ``M_TRIM_THRESHOLD`` 256 MiB: the top of a heap goes back only beyond this;
* ``M_MMAP_THRESHOLD`` 32 MiB (glibc's own ceiling for its adaptive threshold): blocks
  up to this size come from the heaps, not from a fresh ``mmap`` each.

The cost is resident memory: a served process keeps about its peak working set (it
reaches that peak on every request anyway). The setting is process-wide, so
:func:`_load_pyfunc <mlflow_plugin.flavor._load_pyfunc>` applies it only where a
process serves models: with ``ODIN_MALLOC_TUNING=auto`` (the default) inside MLflow's
scoring server (``mlflow models serve``, ``odin-monitor serve``), never in a notebook or
a batch job that loads the model; ``true`` applies it anywhere, ``false`` never. On a
C library without ``mallopt`` (musl, macOS) nothing changes and the reason is returned.

Example:
    >>> wanted("auto", environ={})
    False
    >>> wanted("auto", environ={SERVER_MODEL_PATH_ENV: "/models/odin"})
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from odin_monitor.compiled import parse_compile_setting

__all__ = [
    "MALLOC_TUNING_ENV",
    "SERVER_MODEL_PATH_ENV",
    "SERVING_SETTINGS",
    "MallocTuning",
    "parse_malloc_tuning",
    "switched_on",
    "tune_malloc",
    "tune_malloc_for_serving",
    "wanted",
]

_logger = logging.getLogger(__name__)

#: ``true``, ``false`` or ``auto`` (default: only inside MLflow's scoring server).
MALLOC_TUNING_ENV = "ODIN_MALLOC_TUNING"
#: Set by MLflow for its scoring server process (``mlflow models serve``): the model folder.
SERVER_MODEL_PATH_ENV = "__pyfunc_model_path__"

_MIB = 2**20
#: glibc's ``mallopt`` parameter numbers (``malloc.h``).
_PARAMS = {"M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_THRESHOLD": -3}
#: What a serving process gets (bytes).
SERVING_SETTINGS: Mapping[str, int] = {
    "M_TOP_PAD": 64 * _MIB,
    "M_TRIM_THRESHOLD": 256 * _MIB,
    "M_MMAP_THRESHOLD": 32 * _MIB,
}


@dataclass(frozen=True)
class MallocTuning:
    """What :func:`tune_malloc` did.

    Attributes:
        applied: Whether every setting was taken.
        reason: One line for a log: what was set, or why nothing was.
        settings: The settings asked for (name -> bytes).
    """

    applied: bool
    reason: str
    settings: Mapping[str, int] = field(default_factory=dict)


def parse_malloc_tuning(value: Any, source: str = f"${MALLOC_TUNING_ENV}") -> bool | str:
    """``True``, ``False`` or ``"auto"`` from configuration text; ``None`` means auto.

    Raises:
        ValueError: Anything but true/false/auto (and their spellings 1/0, on/off, yes/no).

    Example:
        >>> parse_malloc_tuning(None), parse_malloc_tuning("off"), parse_malloc_tuning("1")
        ('auto', False, True)
    """
    return "auto" if value is None else parse_compile_setting(value, source)


def wanted(setting: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process should be tuned: ``auto`` means inside MLflow's scoring server.

    Args:
        setting: ``true``, ``false``, ``auto`` or ``None`` (auto).
        environ: The environment to read (default: ``os.environ``).

    Raises:
        ValueError: An unknown setting.
    """
    value = parse_malloc_tuning(setting)
    if value == "auto":
        return SERVER_MODEL_PATH_ENV in (os.environ if environ is None else environ)
    return bool(value)


def switched_on(setting: Any, key: str, env_var: str) -> bool:
    """Whether a serving switch is on: ``setting`` (``model_config[key]``), else ``$env_var``.

    Both unset means ``auto``: on inside MLflow's scoring server (:func:`wanted`).

    Raises:
        ValueError: A value other than true, false or auto, naming where it came from.

    Example:
        >>> switched_on("off", "malloc_tuning", MALLOC_TUNING_ENV)
        False
    """
    source = f"model_config[{key!r}]"
    if setting is None:
        setting, source = os.environ.get(env_var), f"${env_var}"
    return wanted(parse_malloc_tuning(setting, source))


def _mallopt() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        fn = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc's mallopt numbering only
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def tune_malloc(settings: Mapping[str, int] = SERVING_SETTINGS) -> MallocTuning:
    """Set glibc's ``mallopt`` parameters for this whole process.

    Args:
        settings: Parameter name (``M_TOP_PAD``, ``M_TRIM_THRESHOLD``,
            ``M_MMAP_THRESHOLD``) -> bytes, each in [0, 2**31).

    Returns:
        A :class:`MallocTuning`; ``applied`` is false (with the reason) where the C
        library is not glibc or refused a value.

    Raises:
        ValueError: An unknown parameter or a value out of range.
    """
    for name, value in settings.items():
        if name not in _PARAMS:
            raise ValueError(
                f"Expected mallopt parameters among {sorted(_PARAMS)}, but got {name!r}."
            )
        if not 0 <= int(value) < 2**31:
            raise ValueError(f"Expected {name} in [0, 2**31) bytes, but got {value}.")
    fn = _mallopt()
    if fn is None:
        return MallocTuning(False, "not glibc: malloc left as it is", dict(settings))
    refused = [name for name, value in settings.items() if fn(_PARAMS[name], int(value)) != 1]
    text = ", ".join(f"{name}={int(value) // _MIB} MiB" for name, value in settings.items())
    if refused:
        return MallocTuning(False, f"glibc refused {refused} of {text}", dict(settings))
    return MallocTuning(True, f"glibc malloc tuned for serving: {text}", dict(settings))


_lock = threading.Lock()
_done: MallocTuning | None = None


def tune_malloc_for_serving(setting: Any = None) -> MallocTuning | None:
    """Tune once per process if :func:`wanted`; ``None`` where not wanted.

    Args:
        setting: ``model_config["malloc_tuning"]``; ``None`` reads ``$ODIN_MALLOC_TUNING``.

    Raises:
        ValueError: An unknown setting.
    """
    global _done
    if not switched_on(setting, "malloc_tuning", MALLOC_TUNING_ENV):
        return None
    with _lock:
        if _done is None:
            _done = tune_malloc()
            _logger.info("%s (%s=false keeps glibc's defaults)", _done.reason, MALLOC_TUNING_ENV)
        return _done
