"""What each bit width costs the kernels: instructions per MAC of the 1x1 and depthwise layers
for every (bits_a, bits_w) pair, measured exactly in the emulator on one mbconv block
(40 x 40 x 32 -> 96 -> 32, 5x5 depthwise). Every width has its own unpacking loops (8-bit and
4-bit weights and 8-bit codes their SIMD paths; inputs of 3 or 4 bits with narrow weights packed
products, docs/kernels.md); each build renders the helpers of its own pair.

    python bench/kernels_bits.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qetool import arch as A  # noqa: E402
from qetool.compiler.calibrate import random_pixels  # noqa: E402
from qetool.compiler.compile import compile_model  # noqa: E402
from qetool.preprocess import image_codes  # noqa: E402
from qetool.table import render  # noqa: E402
from qetool.device.boards import load_board  # noqa: E402
from qetool.device.builddir import BuildDir  # noqa: E402
from qetool.device.emulator import run_batch  # noqa: E402

BITS_A = range(3, 9)
BITS_W = range(2, 9)


def block(bits_a: int, bits_w: int) -> A.Arch:
    return A.Arch(80, 2, (A.Row("conv", 3, 2, 3, 32, None, 1, 8, 8),
                          A.Row("mbconv", 5, 1, 32, 32, 96, 1, bits_a, bits_w)))


def main() -> None:
    per_mac: dict[tuple[int, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for a in BITS_A:
            for w in BITS_W:
                path = Path(tmp) / "a.json"
                A.save(block(a, w), path)
                compile_model(path, load_board("stm32f746"), Path(tmp) / "b", force=True, build_firmware=True)
                build = BuildDir(Path(tmp) / "b")
                m = build.model
                img = image_codes(random_pixels(m.arch, 0), m.input_bits)
                r = run_batch(build.board.emulator.machine, build.elf("emu"),
                              [build.program.pack(img)], 2, len(m.layers))
                counts = dict(zip((l.id for l in m.layers), r.counts[0].layers))
                per_mac[a, w] = {op: counts[f"b1.{op}"] / next(l.macs for l in build.program.layers if l.id == f"b1.{op}")
                                 for op in ("expand", "dw", "project")}
    for op in ("expand", "dw", "project"):
        rows = [(f"a{a}", *(f"{per_mac[a, w][op]:.2f}" for w in BITS_W)) for a in BITS_A]
        print(f"\ninstructions per MAC, b1.{op}")
        print(render(("", *(f"w{w}" for w in BITS_W)), rows))


if __name__ == "__main__":
    main()
