"""Decode benchmark: ms/image of Pillow vs torchvision.io beside the ODIN pass.

* :mod:`~odin_monitor.bench.decode.run`: :func:`run_decode`, :class:`DecodeResult`;
* :mod:`~odin_monitor.bench.decode.report`: :func:`format_markdown`;
* :mod:`~odin_monitor.bench.decode.cli`: ``python -m odin_monitor.bench.decode --help``
  (also ``odin-monitor bench decode``).

Example:
    >>> from odin_monitor.bench.decode import run_decode, format_markdown
    >>> print(format_markdown(run_decode(n_images=64)))  # doctest: +SKIP
"""

from __future__ import annotations

from odin_monitor.bench.decode.cli import main
from odin_monitor.bench.decode.report import format_markdown
from odin_monitor.bench.decode.run import DecodeResult, DecodeRow, run_decode

__all__ = ["DecodeResult", "DecodeRow", "format_markdown", "main", "run_decode"]
