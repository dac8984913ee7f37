"""Run a compiled model on the build machine: the generated C, built with the host's gcc
into firmware/host/runner.c, fed packed inputs; every layer's output and the logits come back.
This is how the tests prove the C bit-exact against the golden model."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qetool.compiler.ir_plan import tensor_bytes
from qetool.compiler.lower import LoweredModel
from qetool.compiler.pack import unpack_bits
from qetool.compiler.program import Program, arch_program
from qetool.compiler.render import REFERENCE_DIR
from qetool.errors import QetoolError
from qetool.paths import FIRMWARE
from qetool.programs import require

WARNINGS = ("-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror")
"""The generated C compiles without a warning under these, with gcc and arm-none-eabi-gcc."""


def model_sources(src: Path, reference: bool = False) -> list[Path]:
    """The generated model's C files in build/src (their names follow the model's name); with
    `reference`, the reference kernels of build/src/ref/ in place of the optimized ones."""
    files = sorted(Path(src).glob("*.c"))
    if not reference:
        return files
    ref = {f.name: f for f in (Path(src) / REFERENCE_DIR).glob("*.c")}
    return [ref.get(f.name, f) for f in files]


@dataclass
class HostResult:
    """One image's run: every layer's output codes (by layer id), the logits, the class."""

    tensors: dict[str, np.ndarray]
    logits: np.ndarray
    label: int
    arena: bytes = b""


def build_runner(build_dir: Path, exe: Path, cc: str = "gcc", opt: str = "-O2",
                 reference: bool = False) -> Path:
    """Compile build_dir/src with the host runner into `exe` (with `reference`, the reference
    kernels: model_sources)."""
    cc = require(cc)
    src = Path(build_dir) / "src"
    host = FIRMWARE / "host"
    cmd = [cc, *WARNINGS, opt, "-DQE_WITH_LAYER_INFO", "-DQE_HOOKS_HEADER=\"host_hooks.h\"",
           f"-I{src}", f"-I{host}", "-o", str(exe), str(host / "runner.c"),
           *map(str, model_sources(src, reference))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise QetoolError(f"host build failed: {r.stderr.strip()}")
    return Path(exe)


RECORD_CLASS = struct.Struct("<H")
"""The class in an inference record: u16 (up to 65,535 classes)."""


def read_result(data: bytes, pos: int, num_classes: int, arena_bytes: int) -> tuple[list[int], int, bytes, int]:
    """One inference's record, as the host runner and the firmware's batch mode write it:
    int8 logits, the class (u16 LE), then `arena_bytes` of arena. Returns logits, class, arena
    and the position after the record; a short or impossible record is a QetoolError."""
    at = pos + num_classes
    end = at + RECORD_CLASS.size + arena_bytes
    if len(data) < end:
        raise QetoolError(f"inference record cut short: {len(data) - pos} of {end - pos} bytes")
    logits = [b - 256 if b > 127 else b for b in data[pos:at]]
    (label,) = RECORD_CLASS.unpack_from(data, at)
    if label >= num_classes:
        raise QetoolError(f"the model answered class {label} of {num_classes}")
    return logits, label, data[at + RECORD_CLASS.size:end], end


def run_runner(exe: Path, prog: Program, images: list[np.ndarray], arena_bytes: int = 0) -> list[HostResult]:
    """Run `images` (input codes) through the runner in one process; every layer's output comes
    back packed (a head's is the logits); with `arena_bytes`, also the arena as each inference
    left it."""
    stdin = b"".join(prog.pack(img) for img in images)
    args = [str(exe), str(len(images))] + (["arena"] if arena_bytes else [])
    r = subprocess.run(args, input=stdin, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise QetoolError(f"runner failed ({r.returncode}): {r.stderr.decode().strip()}")
    data, pos, out = r.stdout, 0, []
    g = prog.graph
    k = g.output_tensor().elements
    for _ in images:
        tensors = {}
        for layer, node in zip(prog.layers, g.nodes):
            if layer.out_shape is not None:
                t = g.tensors[node.output]
                nbytes = tensor_bytes(t)
                tensors[layer.id] = unpack_bits(data[pos:pos + nbytes], t.bits, t.elements,
                                                t.signed).reshape(layer.out_shape)
                pos += nbytes
        logits, label, arena, pos = read_result(data, pos, k, arena_bytes)
        out.append(HostResult(tensors, np.array(logits, dtype=np.int32), label, arena))
    return out


def run_build(build_dir: Path, exe: Path, images: list[np.ndarray],
              arena: bool = False) -> list[HostResult]:
    """run_runner on build_dir's arch.json model (lowered.npz)."""
    prog = arch_program(LoweredModel.load(Path(build_dir) / "lowered.npz"))
    return run_runner(exe, prog, images, prog.plan.arena_bytes if arena else 0)
