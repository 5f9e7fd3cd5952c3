"""Decode benchmark: decoders compared with Pillow on real files, and the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from odin_monitor.bench.decode import DecodeResult, format_markdown, main, run_decode


@pytest.fixture(scope="module")
def result() -> DecodeResult:
    return run_decode(n_images=16, repeats=1)  # real data where present, else noise


def test_every_decoder_is_compared_with_pillow(result: DecodeResult) -> None:
    methods = {(r.file_format, r.method) for r in result.rows}
    assert ("PNG", "Pillow (odin_monitor.preprocess)") in methods
    assert ("JPEG", "torchvision.io.decode_jpeg(list)") in methods
    pillow = [r for r in result.rows if r.method.startswith("Pillow")]
    assert all(r.identical and r.speedup == 1.0 and r.max_abs_diff == 0 for r in pillow)
    for r in result.rows:
        assert r.ms_per_image > 0 and (r.max_abs_diff == 0) == (r.differing_fraction == 0)
    # PNG is lossless: every PNG decoder must give Pillow's tensors bit for bit.
    assert all(r.identical for r in result.rows if r.file_format == "PNG")
    assert result.odin_ms_per_image > 0 and result.n_images == 16


def test_report_numbers_parse_back(result: DecodeResult) -> None:
    text = format_markdown(result)
    rows = [line for line in text.splitlines() if line.startswith(("| PNG |", "| JPEG |"))]
    assert len(rows) == len(result.rows)
    for line, r in zip(rows, result.rows, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:2] == [r.file_format, r.method]
        assert float(cells[2]) == pytest.approx(r.ms_per_image, abs=1e-4)
        assert cells[7] == ("yes" if r.identical else "no")
    odin = re.search(r"\*\*([0-9.]+) ms/image\*\*", text)
    assert odin and float(odin.group(1)) == pytest.approx(result.odin_ms_per_image, abs=1e-3)


def test_bad_arguments_and_help(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected n_images, repeats >= 1"):
        run_decode(n_images=0)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m odin_monitor.bench.decode")
