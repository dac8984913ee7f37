"""Build the firmware (`qetool compile --build`): the generated model plus firmware/ for the
board (board.elf, board.bin) and for the emulator (emu.elf), with arm-none-eabi-gcc.

Both images are compiled for the board's core (docs/boards.md: -mcpu, FPU and float ABI from
boards/NAME.toml; the emulated machine has the same core). Each is linked with a memory map
rendered from the board file (firmware/linker.ld.j2): the board's own origins, or the
emulator's, with the board's physical sizes. An image over them fails to link; the linker's
words become one clear message.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2

from qetool.errors import QetoolError
from qetool.paths import FIRMWARE, TEMPLATES
from qetool.device import protocol
from qetool.device.boards import PORT_SOURCES, Board
from qetool.compiler.hostrun import WARNINGS, model_sources
from qetool.programs import require
from qetool.units import MB

CC = "arm-none-eabi-gcc"
OPT = "-O2"
FIRMWARE_SOURCES = ("startup.c", "main.c", "timebase.c")
FULL_MAP_BYTES = 4 * MB
"""The emulator's whole memory at 0x0 and at 0x20000000 (mps2-an386 and mps2-an500 alike)."""


@dataclass(frozen=True)
class Image:
    """One firmware image: name (board or emu), port, memory map in bytes."""

    name: str
    port: str
    flash_origin: int
    flash_bytes: int
    sram_origin: int
    sram_bytes: int


def images(board: Board, full_map: bool = False) -> list[Image]:
    """The board image and the emulator image (if the board is emulated), both with the board's
    physical sizes. `full_map` builds only the emulator image, with its whole 4 MB + 4 MB (to
    measure a network that does not fit the board)."""
    out = [] if full_map else [Image("board", board.port, board.flash_origin, board.flash_bytes,
                                     board.sram_origin, board.sram_bytes)]
    if board.emulator is not None:
        e = board.emulator
        size = (FULL_MAP_BYTES, FULL_MAP_BYTES) if full_map else (board.flash_bytes, board.sram_bytes)
        out.append(Image("emu", e.port, e.flash_origin, size[0], e.sram_origin, size[1]))
    if not out:
        raise QetoolError(f"{board.name} has no emulator to link a full memory map for")
    return out


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader([TEMPLATES, FIRMWARE]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def protocol_header() -> str:
    """qe_protocol.h from qetool.device.protocol."""
    return _env().get_template("qe_protocol.h.j2").render(
        version=protocol.VERSION, magic=protocol.MAGIC, header_bytes=protocol.HEADER.size,
        max_payload=protocol.MAX_PAYLOAD, response=protocol.RESPONSE,
        error_type=protocol.ERROR_TYPE, frame_timeout_ms=protocol.FRAME_TIMEOUT_MS,
        infer_per_layer=protocol.INFER_PER_LAYER, infer_trace=protocol.INFER_TRACE,
        types=[(t.name, t.value) for t in protocol.Type],
        errors=[(e.name, e.value) for e in protocol.Error],
        counters=[(c.name, c.value) for c in protocol.Counter],
        areas=[(a.name, a.value) for a in protocol.Area], read_chunk=protocol.READ_CHUNK)


def linker_script(board: Board, image: Image) -> str:
    return _env().get_template("linker.ld.j2").render(
        target=image.name, board=board.name, description=board.description,
        flash_origin=image.flash_origin, flash_bytes=image.flash_bytes,
        ram_origin=image.sram_origin, ram_bytes=image.sram_bytes, stack_bytes=board.stack_bytes)


_OVERFLOW = re.compile(r"region `(FLASH|RAM)' overflowed by (\d+) bytes")


def link_error(stderr: str, board: Board, image: Image) -> QetoolError:
    """The linker's words as one line: what is over the board's limit and by how much."""
    over = {m.group(1): int(m.group(2)) for m in _OVERFLOW.finditer(stderr)}
    if over:
        parts = [f"{'Flash' if r == 'FLASH' else 'SRAM'} by {n:,} bytes" for r, n in over.items()]
        limits = f"{image.flash_bytes:,} B Flash, {image.sram_bytes:,} B SRAM"
        return QetoolError(f"{image.name}.elf does not fit {board.name} ({limits}): over in "
                           + " and ".join(parts))
    first = next((line for line in stderr.splitlines() if "error" in line), stderr.strip())
    return QetoolError(f"{image.name}.elf: build failed: {first}")


def build_firmware(build_dir: Path, board: Board, full_map: bool = False) -> dict[str, Path]:
    """Compile and link every image of `board` into build_dir (board.elf and board.bin,
    emu.elf); returns the ELF paths by image name."""
    cc = require(CC)
    build_dir = Path(build_dir)
    fw = build_dir / "fw"
    fw.mkdir(exist_ok=True)
    (fw / "qe_protocol.h").write_text(protocol_header())
    src = build_dir / "src"
    out = {}
    for image in images(board, full_map):
        ld = fw / f"{image.name}.ld"
        ld.write_text(linker_script(board, image))
        elf = build_dir / f"{image.name}.elf"
        cmd = [cc, *board.core.flags, OPT, *WARNINGS, "-ffunction-sections", "-fdata-sections",
               "-DQE_HOOKS_HEADER=\"qe_hooks.h\"", f"-I{src}", f"-I{FIRMWARE}", f"-I{fw}",
               "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", f"-Wl,-T,{ld}",
               f"-Wl,-Map,{fw / (image.name + '.map')}", "-o", str(elf),
               *(str(FIRMWARE / f) for f in (*FIRMWARE_SOURCES, *PORT_SOURCES[image.port])),
               *map(str, model_sources(src))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise link_error(r.stderr, board, image)
        out[image.name] = elf
    if "board" in out:
        subprocess.run([cc.replace("gcc", "objcopy"), "-O", "binary", str(out["board"]),
                        str(build_dir / "board.bin")], check=True)
    return out
