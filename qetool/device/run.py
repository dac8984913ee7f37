"""`qetool run`: images through the device; with --check, the logits against the golden model."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from qetool.compiler import golden
from qetool.compiler.pack import pack_bits
from qetool.preprocess import image_codes, load_pixels, sample_pixels
from qetool.device.builddir import BuildDir
from qetool.device.protocol import Counter
from qetool.device.session import connect

UNITS = {Counter.INSTRUCTIONS: "instructions", Counter.CYCLES: "cycles",
         Counter.SYSTICK: "instructions (SysTick estimate: no counting plugin)"}


def first_difference(build: BuildDir, want: golden.Trace, crcs: list[int]) -> str:
    """The first layer whose output CRC (from a traced inference) differs from the golden
    model's packed output `want`, as words for the report."""
    for layer, crc in zip(build.model.layers[:-1], crcs):
        if zlib.crc32(pack_bits(want.tensors[layer.id], layer.bits_y)) != crc:
            return f"first difference at layer {layer.id}"
    return "every layer's output is the golden model's: the difference is in the head"


def class_text(build: BuildDir, label: int) -> str:
    names = build.manifest.get("class_names")
    return f"class {label} ({names[label]})" if names else f"class {label}"


def run_images(build_dir: str, emulator: bool, port: str | None, baud: int, images: list[str],
               check: bool) -> Iterator[tuple[str, bool]]:
    """Yield one line per image, and whether it matched the golden model (True unless checked).
    A mismatch names the first layer whose output differs (a second, traced inference)."""
    build = BuildDir(Path(build_dir))
    res = build.model.arch.resolution
    named = [(p, load_pixels(p, res)) for p in images] or [("sample picture", sample_pixels(res))]
    with connect(build, emulator, port, baud) as session:
        for name, pixels in named:
            r = session.infer(pixels)
            count = f", {r.count:,} {UNITS[r.counter]}" if r.count is not None else ""
            line = f"{name}: {class_text(build, r.label)}, logits {r.logits}{count}"
            same = True
            if check:
                want = golden.run(build.model, image_codes(pixels, build.model.input_bits))
                same = bool(np.array_equal(np.array(r.logits), want.logits)) and r.label == want.label
                line += ", golden: same" if same else (
                    f", golden: DIFFERENT {want.logits.tolist()}; "
                    + first_difference(build, want, session.trace(pixels)))
            yield line, same
