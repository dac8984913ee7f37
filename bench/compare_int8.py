"""Mixed precision against int8, measured: each example compiled as searched and with every
layer at 8 bits, through the same planner and kernels, built for the STM32F746 and run in the
emulator (exact instruction counts). An int8 network that does not fit the F746 is linked with
the emulator's whole memory (4 MB + 4 MB) and reported as over by N bytes. Then each example's
sub-byte twins: every block after the stem at one (bits_a, bits_w) pair of `--uniform` (the
stem as the example has it), against the int8 twin measured above.

    python bench/compare_int8.py [examples/*.json] [--uniform 3/3,4/2,4/4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qetool import arch as A  # noqa: E402
from qetool.compiler.calibrate import random_pixels  # noqa: E402
from qetool.compiler.compile import compile_model  # noqa: E402
from qetool.errors import QetoolError  # noqa: E402
from qetool.preprocess import image_codes  # noqa: E402
from qetool.table import render  # noqa: E402
from qetool.device.boards import load_board  # noqa: E402
from qetool.device.builddir import BuildDir  # noqa: E402
from qetool.device.emulator import run_batch  # noqa: E402
from qetool.device.profile import elf_sizes  # noqa: E402

BOARD = "stm32f746"


def measure(arch_path: Path, out: Path) -> dict:
    """Compile, build, run one image; Flash and SRAM of emu.elf, instructions, fit."""
    note = ""
    try:
        compile_model(arch_path, load_board(BOARD), out, force=True, build_firmware=True)
    except QetoolError as e:
        note = str(e)
        compile_model(arch_path, load_board(BOARD), out, force=True, build_firmware=True, full_map=True)
    build = BuildDir(out)
    m = build.model
    sizes = elf_sizes(build.elf("emu"))
    image = image_codes(random_pixels(m.arch, 0), m.input_bits)
    r = run_batch(build.board.emulator.machine, build.elf("emu"),
                  [build.program.pack(image)], m.arch.num_classes, len(m.layers))
    board = build.board
    sram = sizes.data_bytes + sizes.bss_bytes + board.stack_bytes
    return {"flash": sizes.flash_bytes, "sram": sram, "arena": build.report["arena_bytes"],
            "weights": build.report["weights_flash_bytes"],
            "instructions": r.counts[0].total if r.counts else None,
            "over_flash": max(0, sizes.flash_bytes - board.flash_bytes),
            "over_sram": max(0, sram - board.sram_bytes), "note": note}


def uniform_pairs(text: str) -> list[tuple[int, int]]:
    """`3/3,4/2` -> [(3, 3), (4, 2)]: (bits_a, bits_w) pairs."""
    try:
        pairs = [tuple(int(b) for b in p.split("/")) for p in text.split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not A/W pairs: {text!r}") from None
    if any(len(p) != 2 or p[0] not in A.BITS_A or p[1] not in A.BITS_W for p in pairs):
        raise argparse.ArgumentTypeError(f"bits_a {A.BITS_A[0]}-{A.BITS_A[-1]}, bits_w {A.BITS_W[0]}-"
                                         f"{A.BITS_W[-1]}: {text!r}")
    return pairs


def twin(arch: A.Arch, bits_a: int, bits_w: int, path: Path) -> Path:
    """`arch` with every block after the stem at (bits_a, bits_w), saved at `path`."""
    stem, n = A.blocks(arch)[0], len(A.blocks(arch))
    A.save(A.with_bits(arch, [stem.bits_a] + [bits_a] * (n - 1), [stem.bits_w] + [bits_w] * (n - 1)), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archs", nargs="*", type=Path, default=sorted((ROOT / "examples").glob("*.json")))
    ap.add_argument("--uniform", type=uniform_pairs, default=uniform_pairs("3/3,4/2,4/4"), metavar="A/W,...",
                    help="the sub-byte twins' (bits_a, bits_w) pairs (default 3/3,4/2,4/4)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.archs:
            arch = A.load(path)
            n = len(A.blocks(arch))
            int8_path = Path(tmp) / f"{path.stem}_int8.json"
            A.save(A.with_bits(arch, [8] * n, [8] * n), int8_path)
            mixed = measure(path, Path(tmp) / "mixed")
            int8 = measure(int8_path, Path(tmp) / "int8")
            rows = []
            for key, label in (("flash", "Flash (ELF) B"), ("weights", "  packed weights B"),
                               ("sram", "SRAM (data+bss+stack) B"), ("arena", "  arena B"),
                               ("instructions", "instructions / inference")):
                a, b = mixed[key], int8[key]
                rows.append((label, f"{a:,}", f"{b:,}", f"{b / a:.2f}x" if a else "-"))
            print(f"\n{path.name} ({n} blocks, {arch.resolution} px) on {BOARD}, emulator")
            print(render(("", "mixed", "int8", "int8 / mixed"), rows))
            for name, r in (("mixed", mixed), ("int8", int8)):
                over = [f"Flash by {r['over_flash']:,} B" if r["over_flash"] else "",
                        f"SRAM by {r['over_sram']:,} B" if r["over_sram"] else ""]
                over = " and ".join(o for o in over if o)
                print(f"{name}: " + (f"over the {BOARD} ({over}), linked with the emulator's full "
                                     f"memory map" if over else f"fits the {BOARD}"))
            rows = []
            for a, w in args.uniform:
                r = measure(twin(arch, a, w, Path(tmp) / f"{path.stem}_a{a}w{w}.json"), Path(tmp) / "twin")
                rows.append((f"a{a}/w{w}", f"{r['instructions']:,}", f"{r['instructions'] / int8['instructions']:.2f}x",
                             f"{r['weights']:,}", f"{r['arena']:,}"))
            print(f"\n{path.name}: sub-byte twins (every block after the stem), against int8's "
                  f"{int8['instructions']:,} instructions")
            print(render(("blocks at", "instructions", "/ int8", "packed weights B", "arena B"), rows))


if __name__ == "__main__":
    main()
