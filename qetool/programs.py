"""External programs qetool runs, and what to install when one is missing."""

from __future__ import annotations

import shutil

from qetool.errors import QetoolError

INSTALL = {
    "gcc": "gcc",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}
"""The Debian packages that provide each program (`make demo` installs them all)."""


def require(program: str) -> str:
    """The program's path, or a user error naming the Debian packages to install."""
    path = shutil.which(program)
    if path is None:
        raise QetoolError(f"{program} not found: install it (Debian: apt-get install "
                          f"{INSTALL[program]}, or run `make demo`)")
    return path
