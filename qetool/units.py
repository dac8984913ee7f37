"""Byte sizes as users write them: `256KB`, `1MB`, `327680` (KB = 1024 bytes, MB = 1024 KB)."""

from __future__ import annotations

import re

from qetool.errors import QetoolError

KB = 1024
MB = 1024 * KB
_UNITS = {"": 1, "B": 1, "K": KB, "KB": KB, "KIB": KB, "M": MB, "MB": MB, "MIB": MB}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse `text` to bytes; `256KB` -> 262144. Raises QetoolError on anything else."""
    m = _SIZE.match(text)
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise QetoolError(f"{text!r} is not a size (examples: 320KB, 1MB, 65536)")
    value = float(m.group(1)) * _UNITS[unit]
    if value != int(value) or value <= 0:
        raise QetoolError(f"{text!r} is not a positive whole number of bytes")
    return int(value)


def fmt_size(n: int) -> str:
    """Format bytes for tables: `262144` -> `256.0 KB`."""
    if abs(n) >= MB:
        return f"{n / MB:.2f} MB"
    if abs(n) >= KB:
        return f"{n / KB:.1f} KB"
    return f"{n} B"
