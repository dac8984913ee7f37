"""A connection to a running model: the emulator (QEMU started here) or a board's serial port.
Checks that the device runs the model of build/ (its hash), then loads images and infers."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from qetool.errors import QetoolError
from qetool.device.builddir import BuildDir
from qetool.device.emulator import TICK_INSTRUCTIONS, Emulator, split_marks
from qetool.device.protocol import Counter
from qetool.device.serial import Device, Link, open_port


@dataclass(frozen=True)
class Result:
    """One inference on the device. `count` is cycles (board), exact instructions (emulator
    with the plugin) or estimated instructions (emulator without: counter SYSTICK), None when
    not measured; `layer_counts` likewise, per layer."""

    label: int
    logits: list[int]
    counter: Counter
    count: int | None
    layer_counts: list[int] | None


class Session:
    """A device that runs `build`'s model. Every interaction is bounded: the hello and each
    inference (load, run, reads) get `deadline` seconds of their own."""

    def __init__(self, build: BuildDir, device: Device, emulator: Emulator | None,
                 deadline: float = 600.0):
        self.build, self.device, self.emulator, self.deadline = build, device, emulator, deadline
        self._restart_deadline()
        self.hello = h = device.hello()
        want = build.manifest["model_hash"]
        if h.model_hash != want:
            if emulator is not None:
                raise QetoolError(f"{build.path}/emu.elf runs model {h.model_hash}, the build holds "
                                  f"{want}: compile with --build again")
            raise QetoolError(f"the board runs model {h.model_hash}, {build.path} holds {want}: "
                              f"qetool flash {build.path} first")
        x = build.manifest["input"]
        said = (h.input_height, h.input_width, h.input_channels, h.input_bits, h.input_bytes,
                h.num_classes, h.num_layers)
        have = (x["height"], x["width"], x["channels"], x["bits"], x["bytes"],
                build.manifest["num_classes"], len(build.program.layers))
        if said != have:
            raise QetoolError(f"the device describes model {want} as {said} (input H, W, C, bits, "
                              f"bytes, classes, layers), the build as {have}")

    def _restart_deadline(self) -> None:
        self.device.link.deadline = time.monotonic() + self.deadline

    def _load(self, codes: np.ndarray) -> None:
        """Start an inference's deadline and load its input."""
        self._restart_deadline()
        self.device.load(self.build.program.pack(codes))

    def trace(self, pixels: np.ndarray | None = None, codes: np.ndarray | None = None) -> list[int]:
        """The CRC-32 of every layer's output for these pixels or input codes (0 for an arch
        head), from a second, traced inference (its counts are not reported: the CRCs cost time
        of their own)."""
        prog = self.build.program
        self._load(prog.picture_codes(pixels) if codes is None else codes)
        return self.device.infer(self.build.manifest["num_classes"], len(prog.layers),
                                 trace=True).layer_crcs

    def infer(self, pixels: np.ndarray | None = None, codes: np.ndarray | None = None) -> Result:
        """Preprocessed pixels (H, W, C uint8), or the input's codes -> device -> result."""
        prog = self.build.program
        self._load(prog.picture_codes(pixels) if codes is None else codes)
        before = len(self.emulator.marks()) if self.emulator else 0
        n_layers = len(prog.layers)
        r = self.device.infer(self.build.manifest["num_classes"], n_layers, per_layer=True)
        if self.emulator is not None and self.emulator.counting:
            counts = split_marks(self.emulator.marks()[before:], n_layers)
            if not counts:
                raise QetoolError("the emulator's counting plugin logged no complete inference")
            return Result(r.label, r.logits, Counter.INSTRUCTIONS, counts[0].total, counts[0].layers)
        if r.counter == Counter.SYSTICK:
            k = TICK_INSTRUCTIONS
            return Result(r.label, r.logits, Counter.SYSTICK, r.count * k, [c * k for c in r.layer_counts])
        return Result(r.label, r.logits, Counter(r.counter), r.count, r.layer_counts)


@contextmanager
def connect(build: BuildDir, emulator: bool, port: str | None, baud: int = 115200,
            deadline: float = 600.0) -> Iterator[Session]:
    """A Session on the emulator (`emulator`) or on the board at `port`; `deadline` bounds
    each interaction in seconds."""
    if emulator == (port is not None):
        raise QetoolError("give exactly one of --emulator and --port")
    if emulator:
        if build.board.emulator is None:
            raise QetoolError(f"{build.board.name} has no emulator target")
        with Emulator(build.board.emulator.machine, build.elf("emu")) as emu:
            link = Link(emu.port, name="the emulator",
                        hint=f"is {build.path}/emu.elf a qetool firmware image?")
            yield Session(build, Device(link), emu, deadline)
    else:
        port_obj = open_port(port, baud)
        try:
            link = Link(port_obj, name=port,
                        hint=f"is the board flashed with this build (qetool flash {build.path})?")
            yield Session(build, Device(link), None, deadline)
        finally:
            port_obj.close()
