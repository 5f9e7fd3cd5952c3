"""README.md's fenced code blocks and how tests/test_readme.py treats each one.

A ```bash or ```python block is run as a user pastes it, in order. A block that must not
run in the test carries an HTML comment on the line right above its fence:

* ``<!-- readme-test: skip, REASON -->``: not run (a reason is required);
* ``<!-- readme-test: serves URL -->``: a server that runs until Ctrl-C; the test starts
  it, waits until URL answers, then stops it.

Plain fences (no language) hold output and are never run; other languages are refused so a
new block cannot slip in untested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUNNABLE = ("bash", "python")
OUTPUT = ""

_FENCE = re.compile(r"^```(?P<lang>[^`\s]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file.

    Attributes:
        line: 1-based line number of the opening fence.
        lang: The fence's language (``""`` for a plain fence).
        code: The lines between the fences, each ending in a newline.
        marker: The body of a ``<!-- readme-test: ... -->`` comment on the line right
            above the fence, else None.
    """

    line: int
    lang: str
    code: str
    marker: str | None

    @property
    def skip_reason(self) -> str | None:
        """The reason of a ``skip, REASON`` marker (``""`` when the reason is missing)."""
        if self.marker is None or not re.match(r"skip\b", self.marker):
            return None
        return self.marker[len("skip") :].lstrip(" ,:").strip()

    @property
    def serves(self) -> str | None:
        """The URL of a ``serves URL`` marker."""
        m = re.fullmatch(r"serves\s+(https?://\S+)", self.marker or "")
        return m.group(1) if m else None

    def problem(self) -> str | None:
        """Why this block can be neither run nor skipped, or None when it is fine."""
        where = f"README.md line {self.line}"
        if self.lang not in (*RUNNABLE, OUTPUT):
            return (
                f"{where}: expected a ```bash or ```python block (run by the test) or a plain "
                f"``` block (output), but got ```{self.lang}"
            )
        if self.marker is None:
            return None
        if self.lang == OUTPUT:
            return f"{where}: a readme-test marker above an output block ({self.marker!r})"
        if self.skip_reason == "":
            return f"{where}: expected 'skip, <reason>', but the reason is missing"
        if self.skip_reason is None and self.serves is None:
            return (
                f"{where}: expected '<!-- readme-test: skip, <reason> -->' or "
                f"'<!-- readme-test: serves <url> -->', but got {self.marker!r}"
            )
        return None


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown ``text``, in order.

    Raises:
        ValueError: A fence is never closed, or a readme-test marker is not right above a
            fence.

    Example:
        >>> text = "Run:\\n<!-- readme-test: skip, slow -->\\n```bash\\nmake\\n```\\n"
        >>> [(b.line, b.lang, b.code, b.skip_reason) for b in parse_blocks(text)]
        [(3, 'bash', 'make\\n', 'slow')]
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        marker = _MARKER.match(lines[i])
        if marker and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
            raise ValueError(
                f"line {i + 1}: expected a fence right below the readme-test marker "
                f"{lines[i].strip()!r}"
            )
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {i + 1}: the fence ```{fence['lang']} is never closed")
        above = _MARKER.match(lines[i - 1]) if i > 0 else None
        blocks.append(
            Block(
                line=i + 1,
                lang=fence["lang"],
                code="".join(f"{line}\n" for line in lines[i + 1 : end]),
                marker=above["body"] if above else None,
            )
        )
        i = end + 1
    return blocks


def command_table_entries(text: str) -> set[str]:
    """The ``odin-monitor CMD [SUB]`` names that open a row of a Markdown table in ``text``.

    Example:
        >>> sorted(command_table_entries("| `odin-monitor bench speed` | ... |\\n"
        ...                              "| `odin-monitor log DIR` | ... |"))
        ['bench speed', 'log']
    """
    names = set()
    for m in re.finditer(r"^\|\s*`odin-monitor ([a-z-]+)(?: ([a-z-]+))?", text, re.MULTILINE):
        cmd, sub = m.group(1), m.group(2)
        names.add(f"{cmd} {sub}" if cmd == "bench" and sub else cmd)
    return names
