"""Boards (docs/boards.md): one TOML file per board under boards/, or a user's own file.

budget = physical - reserved, for SRAM and Flash alike, in bytes. QBR and compile check the
model against the budgets; the linker and the profiler check the ELF against the physical sizes.
The board's core chooses the compiler flags, the FPU start-up and the kernels' DSP path.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qetool.errors import QetoolError
from qetool.fileio import read_text
from qetool.paths import BOARDS


CORES = {
    "cortex-m4": ("none", "fpv4-sp-d16"),
    "cortex-m7": ("none", "fpv5-sp-d16", "fpv5-d16"),
}
"""The cores (-mcpu) the kernels and the code-size table (qetool/compiler/code_sizes.json) cover,
and the FPUs each may carry (-mfpu names; "none" builds with the soft-float ABI). Both are
ARMv7E-M with the DSP extension: the same kernels, the SMLAD path included."""
DEFAULT_CORE = "cortex-m7"
"""The core `qetool score` counts kernel code for when no board is given."""
MACHINES = {"mps2-an386": "cortex-m4", "mps2-an500": "cortex-m7"}
"""QEMU machines that can stand in for a board, and their core."""
PORT_SOURCES = {"mps2": ("port_mps2.c",),
                "stm32f746": ("port_stm32f746.c", "stm32_periph.c", "dwt.c"),
                "stm32f412": ("port_stm32f412.c", "stm32_periph.c", "dwt.c"),
                "stm32h743": ("port_stm32h743.c", "stm32_periph.c", "dwt.c")}
"""The firmware's ports (a board's `port`) and their files in firmware/, which the firmware
build (qetool/compiler/firmware.py) compiles beside the common ones."""
PORTS = tuple(PORT_SOURCES)


@dataclass(frozen=True)
class Core:
    """A board's core: `cpu` (-mcpu) and `fpu` (-mfpu, or "none")."""

    cpu: str
    fpu: str

    @property
    def flags(self) -> tuple[str, ...]:
        """arm-none-eabi-gcc flags for this core (-O2 and warnings are the build's)."""
        fp = ("-mfloat-abi=soft",) if self.fpu == "none" else ("-mfloat-abi=hard", f"-mfpu={self.fpu}")
        return (f"-mcpu={self.cpu}", "-mthumb", *fp)


@dataclass(frozen=True)
class Emulated:
    """How QEMU runs this board's firmware: machine, port and memory origins (the sizes stay
    the board's physical ones, so a run in the emulator proves the board's limits)."""

    machine: str
    port: str
    flash_origin: int
    sram_origin: int


@dataclass(frozen=True)
class Board:
    """A target board; sizes in bytes, clocks in Hz. `cycles_per_instruction` turns the latency
    model's instructions into cycles where the board has no cycle calibration (1.0 until
    measured); `latency_budget_ms` is the search's default latency budget (None: none).
    `file_text` is the TOML of a user's board file (--board-file), which compile copies into
    build/board.toml; None for boards/."""

    name: str
    description: str
    core: Core
    clock_hz: int
    flash_bytes: int
    sram_bytes: int
    reserved_flash_bytes: int
    reserved_sram_bytes: int
    port: str
    flash_origin: int
    sram_origin: int
    stack_bytes: int
    openocd_config: str
    pyocd_target: str
    emulator: Emulated | None
    cycles_per_instruction: float = 1.0
    latency_budget_ms: float | None = None
    file_text: str | None = None

    @property
    def budget_flash_bytes(self) -> int:
        """Flash the model may use: physical - reserved."""
        return self.flash_bytes - self.reserved_flash_bytes

    @property
    def budget_sram_bytes(self) -> int:
        """SRAM the model's arena may use: physical - reserved."""
        return self.sram_bytes - self.reserved_sram_bytes


    def over_physical(self, sram_budget: int, flash_budget: int) -> list[str]:
        """What a search budget asks beyond this board's physical memory (a result would not fit)."""
        return [f"the {what} budget {budget:,} B is above {self.name}'s {size:,} B of {what}: "
                "the network found will not fit this board"
                for what, budget, size in (("SRAM", sram_budget, self.sram_bytes),
                                           ("Flash", flash_budget, self.flash_bytes)) if budget > size]


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


class _Doc:
    """Typed reads from a parsed board file; errors name the file and the key."""

    def __init__(self, where: str, doc: dict[str, Any]):
        self.where, self.doc = where, doc

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        node: Any = self.doc
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not ...:
                    return default
                raise QetoolError(f"{self.where}: {key}: missing")
            node = node[part]
        if kind is int and (not isinstance(node, int) or isinstance(node, bool) or node < 0):
            raise QetoolError(f"{self.where}: {key}: {node!r} is not a non-negative integer")
        if kind is float and (not isinstance(node, (int, float)) or isinstance(node, bool)
                              or not 0 < node < 1e9):
            raise QetoolError(f"{self.where}: {key}: {node!r} is not a number above 0")
        if kind is str and not isinstance(node, str):
            raise QetoolError(f"{self.where}: {key}: {node!r} is not a string")
        if kind is dict and not isinstance(node, dict):
            raise QetoolError(f"{self.where}: {key}: not a table")
        return node

    def one_of(self, key: str, choices: tuple[str, ...] | list[str]) -> str:
        value = self.get(key, str)
        if value not in choices:
            raise QetoolError(f"{self.where}: {key}: {value!r} is not one of {', '.join(choices)}")
        return value


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def parse_board(text: str, where: str) -> Board:
    """A board file's TOML text -> Board, every key checked (`where` names the file in errors)."""
    try:
        d = _Doc(where, tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise QetoolError(f"{where}: not a valid TOML file: {e}") from None
    cpu = d.one_of("core.cpu", list(CORES))
    core = Core(cpu, d.one_of("core.fpu", CORES[cpu]))
    emulator = None
    if d.get("emulator", dict, None) is not None:
        machine = d.one_of("emulator.machine", list(MACHINES))
        if MACHINES[machine] != cpu:
            raise QetoolError(f"{where}: emulator.machine: {machine} is a {MACHINES[machine]}, "
                              f"the board a {cpu}")
        emulator = Emulated(machine, d.one_of("emulator.port", PORTS),
                            d.get("emulator.flash_origin", int), d.get("emulator.sram_origin", int))
    board = Board(
        name=d.get("name", str), description=d.get("description", str), core=core,
        clock_hz=d.get("clock_hz", int), flash_bytes=d.get("physical.flash_bytes", int),
        sram_bytes=d.get("physical.sram_bytes", int),
        reserved_flash_bytes=d.get("reserved.flash_bytes", int),
        reserved_sram_bytes=d.get("reserved.sram_bytes", int), port=d.one_of("port", PORTS),
        flash_origin=d.get("physical.flash_origin", int), sram_origin=d.get("physical.sram_origin", int),
        stack_bytes=d.get("firmware.stack_bytes", int),
        openocd_config=d.get("flash.openocd_config", str), pyocd_target=d.get("flash.pyocd_target", str),
        emulator=emulator,
        cycles_per_instruction=float(d.get("latency.cycles_per_instruction", float, 1.0)),
        latency_budget_ms=_float_or_none(d.get("latency.budget_ms", float, None)))
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", board.name):
        raise QetoolError(f"{where}: name: {board.name!r} is not a name (letters, digits, _ . -)")
    for what in ("flash", "sram"):
        if getattr(board, f"reserved_{what}_bytes") >= getattr(board, f"{what}_bytes"):
            raise QetoolError(f"{where}: reserved.{what}_bytes: not below physical.{what}_bytes")
    if board.stack_bytes >= board.reserved_sram_bytes:
        raise QetoolError(f"{where}: firmware.stack_bytes: not below reserved.sram_bytes")
    return board


def load_board(name: str) -> Board:
    """boards/NAME.toml; anything but a known board name is a user error listing them."""
    if name not in board_names():
        hint = " (a file of your own: --board-file PATH)" if "/" in name or name.endswith(".toml") else ""
        raise QetoolError(f"unknown board {name!r}{hint} (known: {', '.join(board_names())})")
    path = BOARDS / f"{name}.toml"
    return parse_board(path.read_text(), f"boards/{name}.toml")


def load_board_file(path: str | Path) -> Board:
    """A user's own board file (docs/boards.md), validated like the shipped ones."""
    path = Path(path)
    text = read_text(path, "a TOML board file")
    board = parse_board(text, str(path))
    return replace(board, file_text=text)


def choose_board(name: str | None, path: str | None) -> Board:
    """The board of a command's --board NAME or --board-file PATH (exactly one)."""
    if (name is None) == (path is None):
        raise QetoolError("give exactly one of --board NAME and --board-file PATH "
                          f"(boards: {', '.join(board_names())})")
    return load_board(name) if name is not None else load_board_file(path)
