"""`qetool run`: inputs through the device (or the golden model on the host); with --check, the
outputs against the golden model and, for an imported model, TFLM's interpreter node by node."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from qetool.compiler.ir_golden import Trace
from qetool.compiler.program import Program
from qetool.device.builddir import BuildDir
from qetool.device.protocol import Counter
from qetool.device.session import Session, connect
from qetool.errors import QetoolError
from qetool.fileio import read_bytes, read_npy
from qetool.preprocess import load_pixels, sample_pixels

UNITS = {Counter.INSTRUCTIONS: "instructions", Counter.CYCLES: "cycles",
         Counter.SYSTICK: "instructions (SysTick estimate: no counting plugin)"}


@dataclass
class RunResult:
    """One input's answer: its name, the output codes, the class, the count and its unit
    (None: not measured), and with --check whether it matched and what differed."""

    name: str
    output: list[int]
    label: int
    count: int | None = None
    unit: str | None = None
    same: bool | None = None
    difference: str | None = None
    values: list[float] | None = None

    def to_json(self, build: BuildDir) -> dict:
        names = build.manifest.get("class_names")
        return {"input": self.name, "output": self.output,
                **({"values": self.values} if self.values is not None else {}), "class": self.label,
                "class_name": names[self.label] if names else None, "count": self.count,
                "unit": self.unit, "check": None if self.same is None else
                {"same": self.same, "difference": self.difference}}

    def line(self, build: BuildDir) -> str:
        count = f", {self.count:,} {self.unit}" if self.count is not None else ""
        what = "output" if build.imported else "logits"
        text = f"{self.name}: {class_text(build, self.label)}, {what} {self.output}{count}"
        if self.same is not None:
            text += ", golden: same" if self.same else f", golden: DIFFERENT {self.difference}"
        return text


def class_text(build: BuildDir, label: int) -> str:
    names = build.manifest.get("class_names")
    return f"class {label} ({names[label]})" if names else f"class {label}"


def first_difference(prog: Program, want: Trace, crcs: list[int]) -> str:
    """The first layer whose output CRC (from a traced inference) differs from the golden
    model's, as words for the report."""
    for layer, crc, good in zip(prog.layers, crcs, prog.layer_crcs(want)):
        if layer.out_shape is not None and crc != good:
            return f"first difference at layer {layer.id}"
    return "every layer's output is the golden model's: the difference is in the head"


def _inputs(prog: Program, images: list[str], arrays: list[str]) -> list[tuple[str, np.ndarray]]:
    """(name, input codes) of every --image and --input; the sample picture when none."""
    size = prog.picture_size
    named = [(p, prog.picture_codes(load_pixels(p, size))) for p in images]
    named += [(p, prog.check_input_file(read_npy(p), p)) for p in arrays]
    return named or [("sample picture", prog.picture_codes(sample_pixels(size)))]


def _reference(build: BuildDir, check: bool):
    """TFLM's interpreter for an imported model under --check, when tflite-micro is installed."""
    from qetool.compiler import tflm_ref
    from qetool.compiler.compile_graph import MODEL_FILE

    if check and build.imported and tflm_ref.available():
        return tflm_ref.TflmReference(read_bytes(build.path / MODEL_FILE))
    return None


def _checked(build: BuildDir, session: Session | None, r: RunResult, codes: np.ndarray,
             want: Trace, reference) -> RunResult:
    """r with its check: the output against the golden model, and for an imported model the
    golden model against TFLM node by node."""
    from qetool.compiler import tflm_ref

    r.same = bool(np.array_equal(np.array(r.output), want.logits)) and r.label == want.label
    if not r.same:
        r.difference = f"{want.logits.tolist()}" + (
            "; " + first_difference(build.program, want, session.trace(codes=codes)) if session else "")
    if reference is not None:
        g = build.graph.graph
        diff = tflm_ref.first_difference(g, want.tensors, reference.run(g, codes))
        if diff is not None:
            r.difference = (f"{r.difference}; " if not r.same else "") + \
                f"TFLM's interpreter differs from the golden model at {diff}"
            r.same = False
    return r


def run_inputs(build_dir: str, host: bool, emulator: bool, port: str | None, baud: int,
               images: list[str], arrays: list[str], check: bool) -> Iterator[tuple[BuildDir, RunResult]]:
    """Yield each input's result (see RunResult). A device mismatch names the first layer whose
    output differs (a second, traced inference)."""
    if host + emulator + (port is not None) != 1:
        raise QetoolError("give exactly one of --host, --emulator and --port")
    build = BuildDir(Path(build_dir))
    prog = build.program
    named = _inputs(prog, images, arrays)
    reference = _reference(build, check)
    with (nullcontext(None) if host else connect(build, emulator, port, baud)) as session:
        for name, codes in named:
            want = prog.golden(codes) if (check or host) else None
            if session is None:
                r = RunResult(name, want.logits.tolist(), want.label)
            else:
                d = session.infer(codes=codes)
                r = RunResult(name, d.logits, d.label, d.count,
                              UNITS[d.counter] if d.count is not None else None)
            r.values = prog.output_values(np.array(r.output))
            yield build, (_checked(build, session, r, codes, want, reference) if check else r)
