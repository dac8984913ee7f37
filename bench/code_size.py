"""Kernel code as a function of the (bits_a, bits_w) pairs a model uses: each model renders only
the width helpers its layers need (docs/kernels.md, "Code size"). The paper's Table 1 network
with its 19 block instances' bits drawn in turn from n distinct pairs, and the examples as they
are, compiled for a board and built: per model the pairs, the width helpers rendered, the model
code the table estimates (pack.code_bytes, what the search counts; of it the kernels, without
the runtime and the layers' calls) and the model code in the ELF (its symbols), against every
helper rendered (the table's upper bound).

    python bench/code_size.py [--board stm32f746]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qetool import arch as A  # noqa: E402
from qetool.compiler.compile import compile_model  # noqa: E402
from qetool.compiler.kernels import ALL_WIDTH_HELPERS  # noqa: E402
from qetool.compiler.pack import arch_width_helpers, code_table  # noqa: E402
from qetool.device.boards import load_board  # noqa: E402
from qetool.device.builddir import BuildDir  # noqa: E402
from qetool.device.profile import model_code_bytes  # noqa: E402
from qetool.table import render  # noqa: E402

PAIRS = ((8, 8), (4, 4), (6, 6), (5, 5), (7, 7), (3, 3), (8, 4), (4, 8), (6, 3), (5, 7))
"""(bits_a, bits_w) pairs in the order a model with n pairs takes them."""
COUNTS = (1, 2, 3, 4, 6, 8, 10)


def with_pairs(arch: A.Arch, n: int) -> A.Arch:
    """`arch` with block instance i (the stem first) at PAIRS[i % n]."""
    rows, i = [], 0
    for row in arch.rows:
        pairs = [PAIRS[(i + r) % n] for r in range(row.repeat)]
        i += row.repeat
        rows.append(replace(row, bits_a=tuple(p[0] for p in pairs), bits_w=tuple(p[1] for p in pairs)))
    return replace(arch, rows=tuple(rows))


def pairs_of(arch: A.Arch) -> int:
    return len({(b.bits_a, b.bits_w) for b in A.blocks(arch)})


def measure(arch: A.Arch, board: str, out: Path) -> tuple:
    """One model's pairs, width helpers rendered, kernel bytes (the table's: ops and helpers),
    estimated and ELF model code bytes and their ratio, built in `out` (linked with the
    emulator's whole memory: some variants exceed the board)."""
    path = out.with_suffix(".json")
    A.save(arch, path)
    compile_model(path, load_board(board), out, force=True, build_firmware=True, full_map=True)
    build = BuildDir(out)
    elf = model_code_bytes(build.elf("emu"), build.name)
    est = build.report["code_flash_bytes"]
    t = code_table(build.board.core.cpu)
    kernels = est - t["runtime"] - t["layer"] * len(A.layers(arch))
    return (pairs_of(arch), len(arch_width_helpers(arch)), f"{kernels:,}", f"{est:,}", f"{elf:,}",
            f"{est / elf:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f746")
    args = ap.parse_args()
    board = load_board(args.board)
    paper = A.load(ROOT / "examples" / "paper_256k_1m.json")
    models = [(f"paper, {n} pair{'s' if n > 1 else ''}", with_pairs(paper, n)) for n in COUNTS]
    models += [(p.stem, A.load(p)) for p in sorted((ROOT / "examples").glob("*.json"))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, arch) in enumerate(models):
            print(f"[{i + 1}/{len(models)}] {name} ...", file=sys.stderr, flush=True)
            rows.append((name, *measure(arch, args.board, Path(tmp) / f"m{i}")))
    t = code_table(board.core.cpu)
    every = sum(t["widths"][h] for h in ALL_WIDTH_HELPERS)
    print(f"model code on {args.board} ({board.core.cpu}); every width helper rendered would add "
          f"{every:,} B of {len(ALL_WIDTH_HELPERS)} helpers to the ops' {sum(t[k] for k in ('conv', 'conv1x1', 'dwconv', 'head')):,} B")
    print(render(("model", "(a, w) pairs", "width helpers", "kernels B", "model code (table) B",
                  "model code (ELF) B", "table / ELF"), rows))


if __name__ == "__main__":
    main()
