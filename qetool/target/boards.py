"""Boards (contracts section 7): one TOML file per board under boards/.

budget = physical - reserved, for SRAM and Flash alike, in bytes. QBR and compile check the
model against the budgets; the linker and the profiler check the ELF against the physical sizes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from qetool.errors import QetoolError
from qetool.paths import BOARDS


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
    """A target board; sizes in bytes, clocks in Hz."""

    name: str
    description: str
    cpu: str
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

    @property
    def budget_flash_bytes(self) -> int:
        """Flash the model may use: physical - reserved."""
        return self.flash_bytes - self.reserved_flash_bytes

    @property
    def budget_sram_bytes(self) -> int:
        """SRAM the model's arena may use: physical - reserved."""
        return self.sram_bytes - self.reserved_sram_bytes


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


def load_board(name: str) -> Board:
    """Read boards/NAME.toml; an unknown name is a user error listing the known ones."""
    path = BOARDS / f"{name}.toml"
    if not path.is_file():
        raise QetoolError(f"unknown board {name!r} (known: {', '.join(board_names())})")
    doc = tomllib.loads(path.read_text())
    return Board(
        name=doc["name"], description=doc["description"], cpu=doc["cpu"],
        clock_hz=doc["clock_hz"], flash_bytes=doc["physical"]["flash_bytes"],
        sram_bytes=doc["physical"]["sram_bytes"],
        reserved_flash_bytes=doc["reserved"]["flash_bytes"],
        reserved_sram_bytes=doc["reserved"]["sram_bytes"], port=doc["port"],
        flash_origin=doc["physical"]["flash_origin"], sram_origin=doc["physical"]["sram_origin"],
        stack_bytes=doc["firmware"]["stack_bytes"],
        openocd_config=doc["flash"]["openocd_config"], pyocd_target=doc["flash"]["pyocd_target"],
        emulator=Emulated(**doc["emulator"]) if "emulator" in doc else None)
