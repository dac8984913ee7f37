"""Plain-text tables for reports: right-aligned numbers, left-aligned text."""

from __future__ import annotations

import re
from typing import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], footer: Sequence[Sequence[object]] = ()) -> str:
    """A table with a header rule and an optional footer block below a second rule."""
    cells = [[str(c) for c in r] for r in (headers, *rows, *footer)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(is_number(r[i]) for r in cells[1:] if r[i]) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(r, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(cells[0]), rule, *(line(r) for r in cells[1:1 + len(rows)])]
    if footer:
        out += [rule, *(line(r) for r in cells[1 + len(rows):])]
    return "\n".join(out)


_NUMBER = re.compile(r"^[-+]?[\d,]+(\.\d+)?( ?(B|KB|MB|%|x))?$")


def is_number(s: str) -> bool:
    return bool(_NUMBER.match(s))
