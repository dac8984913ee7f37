"""`qetool flash`: write the firmware to the board named in the manifest with openocd
(board.elf), st-flash or pyocd (board.bin): the first one installed, unless one is named."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from qetool.errors import QetoolError
from qetool.device.boards import Board

TOOLS = ("openocd", "st-flash", "pyocd")
INSTALL = "openocd (Debian: apt-get install openocd), stlink-tools (st-flash) or pyocd (pip install pyocd)"


def command(tool: str, board: Board, build: Path) -> list[str]:
    """The command line that writes build/board.elf (openocd) or build/board.bin to `board`.
    openocd reads its -c argument as Tcl: the path goes in braces, so spaces survive."""
    binary, elf = build / "board.bin", build / "board.elf"
    if tool == "openocd":
        if any(c in str(elf) for c in "{}\\"):
            raise QetoolError(f"{elf}: openocd cannot take a path with braces or backslashes")
        return ["openocd", "-f", board.openocd_config,
                "-c", f"program {{{elf}}} verify reset exit"]
    if tool == "st-flash":
        return ["st-flash", "--reset", "write", str(binary), f"{board.flash_origin:#x}"]
    return ["pyocd", "flash", "-t", board.pyocd_target, "--base-address",
            f"{board.flash_origin:#x}", str(binary)]


def flash(build: Path, board: Board, tool: str | None = None, dry_run: bool = False) -> str:
    """Flash (or with `dry_run` only describe) and return the command line used."""
    for name in ("board.bin", "board.elf"):
        if not (build / name).is_file():
            raise QetoolError(f"{build}: no {name} (compile with --build)")
    if tool is None:
        tool = next((t for t in TOOLS if shutil.which(t)), None)
        if tool is None and not dry_run:
            raise QetoolError(f"no flashing tool found: install {INSTALL}")
        tool = tool or TOOLS[0]
    cmd = command(tool, board, build)
    line = shlex.join(cmd)
    if dry_run:
        return line
    if shutil.which(tool) is None:
        raise QetoolError(f"{tool} not found: install {INSTALL}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise QetoolError(f"{tool} failed ({r.returncode}): {last[0]}")
    return line
