"""A connection to a running model: the emulator (QEMU started here) or a board's serial port.
Checks that the device runs the model of build/ (its hash), then loads images and infers."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from qetool.errors import QetoolError
from qetool.preprocess import image_codes
from qetool.device.builddir import BuildDir
from qetool.device.emulator import TICK_INSTRUCTIONS, Emulator, split_marks
from qetool.compiler.hostrun import pack_input
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
    def __init__(self, build: BuildDir, device: Device, emulator: Emulator | None):
        self.build, self.device, self.emulator = build, device, emulator
        self.hello = device.hello()
        want = build.manifest["model_hash"]
        if self.hello.model_hash != want:
            raise QetoolError(f"the device runs model {self.hello.model_hash}, {build.path} holds "
                              f"{want}: flash {build.path} first")

    def infer(self, pixels: np.ndarray) -> Result:
        """Preprocessed pixels (H, W, C uint8) -> codes -> device -> result."""
        m = self.build.model
        codes = image_codes(pixels, m.input_bits)
        self.device.load(pack_input(m, codes, self.build.input_bytes))
        before = len(self.emulator.marks()) if self.emulator else 0
        n_layers = len(m.layers)
        r = self.device.infer(m.arch.num_classes, n_layers, per_layer=True)
        if self.emulator is not None and self.emulator.counting:
            counts = split_marks(self.emulator.marks()[before:], n_layers)
            return Result(r.label, r.logits, Counter.INSTRUCTIONS, counts[0].total, counts[0].layers)
        if r.counter == Counter.SYSTICK:
            k = TICK_INSTRUCTIONS
            return Result(r.label, r.logits, Counter.SYSTICK, r.count * k, [c * k for c in r.layer_counts])
        return Result(r.label, r.logits, Counter(r.counter), r.count, r.layer_counts)


@contextmanager
def connect(build: BuildDir, emulator: bool, port: str | None, baud: int = 115200,
            deadline: float = 600.0) -> Iterator[Session]:
    """A Session on the emulator (`emulator`) or on the board at `port`."""
    if emulator == (port is not None):
        raise QetoolError("give exactly one of --emulator and --port")
    if emulator:
        if build.board.emulator is None:
            raise QetoolError(f"{build.board.name} has no emulator target")
        with Emulator(build.board.emulator.machine, build.elf("emu"), deadline) as emu:
            yield Session(build, Device(Link(emu.port)), emu)
    else:
        link = open_port(port, baud)
        try:
            yield Session(build, Device(Link(link)), None)
        finally:
            link.close()
