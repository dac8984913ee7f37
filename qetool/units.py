"""Byte sizes as users write them: `256KB`, `1MB`, `327680` (KB = 1024 bytes, MB = 1024 KB,
GB = 1024 MB), from 1 byte to MAX_SIZE."""

from __future__ import annotations

import re
from decimal import Decimal

from qetool.errors import QetoolError

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
MAX_SIZE = 4 * GB
"""The largest size accepted: a 32-bit core's whole address space."""
_UNITS = {"": 1, "B": 1, "K": KB, "KB": KB, "KIB": KB, "M": MB, "MB": MB, "MIB": MB,
          "G": GB, "GB": GB, "GIB": GB}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse `text` to bytes; `256KB` -> 262144. Raises QetoolError on anything else."""
    shown = repr(text if len(text) <= 40 else text[:37] + "...")
    m = _SIZE.match(text)
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise QetoolError(f"{shown} is not a size (examples: 320KB, 1MB, 65536)")
    value = Decimal(m.group(1)) * _UNITS[unit]
    if value != int(value) or value <= 0:
        raise QetoolError(f"{shown} is not a positive whole number of bytes")
    if value > MAX_SIZE:
        raise QetoolError(f"{shown} is over {fmt_size(MAX_SIZE)}, more than a Cortex-M can address")
    return int(value)


def fmt_size(n: int) -> str:
    """Format bytes for tables: `262144` -> `256.0 KB`."""
    if abs(n) >= GB:
        return f"{n / GB:.2f} GB"
    if abs(n) >= MB:
        return f"{n / MB:.2f} MB"
    if abs(n) >= KB:
        return f"{n / KB:.1f} KB"
    return f"{n} B"
