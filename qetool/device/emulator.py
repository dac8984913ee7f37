"""The emulator: QEMU `mps2-an500` (Cortex-M7) running build/emu.elf.

Instructions are counted exactly by a TCG plugin (firmware/qemu/qecount.c, built here with the
host gcc): it writes the running count each time the firmware calls qe_mark(), which it does at
the start and end of an inference and around each layer. Without a host gcc (or with
QETOOL_NO_PLUGIN=1) the plugin is not used: QEMU then runs with -icount (one instruction per
virtual ns) and the firmware's SysTick, clocked at 25 MHz, gives an estimate of
TICK_INSTRUCTIONS instructions per tick, labelled as such.

Two ways in: `run_batch` feeds inputs by semihosting (fast, for tests and benchmarks);
`Emulator` serves the serial protocol on a TCP port (what `qetool run --emulator` talks to).
Every QEMU runs under a deadline (a batch has a timeout, a serial session bounds each interaction:
qetool.device.session) and is killed by its own pid when qetool leaves the run in any way (an
exception, Ctrl-C, SIGTERM: the CLI turns it into an exception); on Linux it is also
asked to die with its parent (PR_SET_PDEATHSIG), so not even a SIGKILL of qetool leaves it
running. Its temporary folder goes with it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from qetool.errors import QetoolError
from qetool.paths import FIRMWARE
from qetool.compiler.hostrun import read_result
from qetool.programs import require

QEMU = "qemu-system-arm"
PLUGIN_SOURCE = FIRMWARE / "qemu" / "qecount.c"
MARKER = "qe_mark"
TICK_INSTRUCTIONS = 40
"""Instructions per SysTick tick under -icount shift=0 (1 GHz virtual, SysTick at 25 MHz)."""
ICOUNT = ("-icount", "shift=0,align=off,sleep=off")


def plugin() -> Path | None:
    """The counting plugin, built once per source version into the user's cache; None when
    no host C compiler is available (or QETOOL_NO_PLUGIN is set)."""
    if os.environ.get("QETOOL_NO_PLUGIN"):
        return None
    source = PLUGIN_SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qetool"
    lib = cache / f"qecount-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if lib.exists():
        return lib
    if shutil.which("gcc") is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp),
                    str(PLUGIN_SOURCE)], check=True, capture_output=True)
    os.replace(tmp, lib)
    return lib


def symbol_address(elf: Path, name: str) -> int:
    """Address of a function symbol in an ELF (Thumb bit cleared)."""
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
    if not sym:
        raise QetoolError(f"{elf}: no symbol {name}")
    return sym[0]["st_value"] & ~1


@dataclass(frozen=True)
class Count:
    """Executed instructions of one inference: total and per layer."""

    total: int
    layers: list[int]


def split_marks(marks: list[int], n_layers: int) -> list[Count]:
    """Marks come as start, (begin, end) per layer, stop for each inference."""
    per = 2 + 2 * n_layers
    out = []
    for i in range(0, len(marks) - per + 1, per):
        m = marks[i:i + per]
        out.append(Count(m[-1] - m[0], [m[2 + 2 * j] - m[1 + 2 * j] for j in range(n_layers)]))
    return out


def read_marks(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split("\n") if line.strip().isdigit()]


def _find_prctl():
    """libc's prctl (None where there is none: not Linux)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()
"""Looked up here, in the parent: the child between fork and exec only calls it."""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (PR_SET_PDEATHSIG = 1). Without
    prctl the context managers' kill remains."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)


def _command(machine: str, elf: Path, serial: str, counts: Path | None) -> list[str]:
    cmd = [require(QEMU), "-M", machine, "-nographic", "-monitor", "none", "-kernel", str(elf),
           "-semihosting-config", "enable=on,target=native", "-serial", serial]
    lib = plugin() if counts is not None else None
    if lib is not None:
        cmd += ["-plugin", f"{lib},marker={symbol_address(elf, MARKER):#x},out={counts}"]
    else:
        cmd += ICOUNT
    return cmd


@dataclass(frozen=True)
class BatchResult:
    """Per input: logits (int8 list), class, the arena's final bytes (when dumped);
    instruction counts per inference (None without the plugin)."""

    logits: list[list[int]]
    labels: list[int]
    arenas: list[bytes]
    counts: list[Count] | None


def run_batch(machine: str, elf: Path, inputs: list[bytes], num_classes: int, n_layers: int,
              arena_bytes: int = 0, timeout: float = 300.0) -> BatchResult:
    """Run each packed input through emu.elf by semihosting, in one QEMU."""
    with tempfile.TemporaryDirectory(prefix="qetool-emu-") as d:
        work = Path(d)
        (work / "qe_batch.in").write_bytes(struct.pack("<II", len(inputs), 1 if arena_bytes else 0)
                                           + b"".join(inputs))
        counts = work / "counts.txt"
        cmd = _command(machine, elf.resolve(), "null", counts)
        try:
            r = subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout,
                               preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired:
            raise QetoolError(f"the emulator did not finish within {timeout:.0f} s") from None
        if r.returncode != 0:
            raise QetoolError(f"the emulator exited with {r.returncode}: {r.stderr.decode().strip()}")
        data = (work / "qe_batch.out").read_bytes()
        logits, labels, arenas, pos = [], [], [], 0
        for _ in inputs:
            lg, label, arena, pos = read_result(data, pos, num_classes, arena_bytes)
            logits.append(lg)
            labels.append(label)
            arenas.append(arena)
        has_plugin = any("-plugin" in c for c in cmd)
        return BatchResult(logits, labels, arenas,
                           split_marks(read_marks(counts), n_layers) if has_plugin else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """QEMU serving emu.elf's UART on a local TCP port, for the serial protocol. Use as a
    context manager: `port` is the open pyserial connection; `marks()` the plugin's counts."""

    def __init__(self, machine: str, elf: Path):
        self.machine, self.elf = machine, Path(elf).resolve()
        self.proc: subprocess.Popen | None = None
        self.work: Path | None = None
        self.counting = plugin() is not None
        self.port = None
        self.started = time.monotonic()

    @property
    def counts(self) -> Path:
        return self.work / "counts.txt"

    def __enter__(self) -> "Emulator":
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> "Emulator":
        import serial

        require(QEMU)
        self.work = Path(tempfile.mkdtemp(prefix="qetool-emu-"))
        for _ in range(5):  # a port taken between choosing and binding: try another
            tcp = free_port()
            cmd = _command(self.machine, self.elf, f"tcp:127.0.0.1:{tcp},server=on,wait=on",
                           self.counts)
            self.proc = subprocess.Popen(cmd, cwd=self.work, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=_die_with_parent)
            self.started = time.monotonic()
            while self.proc.poll() is None and time.monotonic() - self.started < 10.0:
                try:
                    self.port = serial.serial_for_url(f"socket://127.0.0.1:{tcp}", timeout=0.05)
                    return self
                except serial.SerialException:
                    time.sleep(0.05)
            self._kill()
        raise QetoolError(f"the emulator did not start: {self._stderr()}")

    def _stderr(self) -> str:
        if self.proc and self.proc.stderr and self.proc.poll() is not None:
            return self.proc.stderr.read().decode(errors="replace").strip() or "no message"
        return "no answer"

    def marks(self) -> list[int]:
        return read_marks(self.counts)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        if self.port is not None:
            self.port.close()
        self._kill()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
