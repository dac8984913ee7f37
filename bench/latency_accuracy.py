"""The latency model against exact emulator counts, per network and per layer.

Networks the calibration's probes never were: the examples (the paper's Table 1 network, the
searched F746 one, the MCUNet-style one) and random networks of the search space, on each
emulated board; per network the estimate's error, per op the layers' errors.

    python bench/latency_accuracy.py [--networks 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from qetool import arch as A
from qetool.device.boards import load_board
from qetool.device.calibrate import layer_errors, measure, network_error
from qetool.search import space
from qetool.search.latency import board_latency
from qetool.table import render

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=6, help="random search-space networks per board")
    args = ap.parse_args()
    rows, per_op = [], {}
    with tempfile.TemporaryDirectory() as d:
        for name in ("stm32f746", "stm32f412"):
            board = load_board(name)
            model = board_latency(board)
            nets = [(p.stem, A.load(p)) for p in sorted((ROOT / "examples").glob("*.json"))]
            nets += [(f"search space {s}", space.random_arch(s, (96, 128, 160)[s % 3]))
                     for s in range(500, 500 + args.networks)]
            for i, (label, arch) in enumerate(nets):
                work = Path(d) / f"{name}-{i}"
                work.mkdir()
                m = measure(arch, board, work)
                e = network_error(model, m)
                rows.append((name, label, f"{m.total:,}", f"{m.total * (1 + e):,.0f}", f"{100 * e:+.2f} %"))
                print(f"{name} {label}: {100 * e:+.2f} %", flush=True)
                for shape, count, est in layer_errors(model, m):
                    per_op.setdefault(shape.op, []).append((est / count - 1, count))
    print()
    print(render(("board", "network", "instructions", "estimate", "error"), rows))
    print()
    op_rows = []
    for op, errs in sorted(per_op.items()):
        abs_e = sorted(abs(e) for e, _ in errs)
        big = [abs(e) for e, c in errs if c >= 1_000_000]
        op_rows.append((op, len(errs), f"{100 * statistics.median(abs_e):.1f} %",
                        f"{100 * abs_e[int(0.9 * (len(abs_e) - 1))]:.1f} %", f"{100 * abs_e[-1]:.1f} %",
                        f"{100 * max(big):.1f} %" if big else "-"))
    print(render(("op", "layers", "median |error|", "90th pct", "max", "max (>= 1 M instr)"), op_rows))


if __name__ == "__main__":
    main()
