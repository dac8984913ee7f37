"""The search against the paper's Table 1 network at its own budget and latency.

At the paper's budget (256 KB SRAM, 1 MB Flash, 160 px, 2 classes, the STM32F412's Cortex-M4 at
100 MHz), with the latency budget set to the Table 1 network's own estimated latency, then half
and a quarter of it: for each seed the best network's QE-score against the table network's,
with its MACs, blocks, bits, latency and memory. The first seed at each latency keeps its final
population; their joint Pareto front (QE against latency) is drawn with --plot.

    python bench/search_vs_paper.py [--iterations 100000] [--seeds 5] [--plot docs/pareto_paper.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from qetool import arch as A
from qetool.device.boards import load_board
from qetool.search import cost, space
from qetool.search.evolve import Evolution, SearchConfig, pareto_front
from qetool.search.latency import SearchLatency, board_latency, estimate, to_ms
from qetool.search.score import qe_score
from qetool.table import render
from qetool.units import KB, MB

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "examples" / "paper_256k_1m.json"


def bits_summary(arch: A.Arch) -> str:
    """Mean bits_a / bits_w over the block instances."""
    bl = A.blocks(arch)
    return f"{sum(b.bits_a for b in bl) / len(bl):.1f}/{sum(b.bits_w for b in bl) / len(bl):.1f}"


def macs(arch: A.Arch) -> int:
    geoms = space.instances(space.from_arch(arch), arch.resolution)
    h, _, _, c, _, s = geoms[-1]
    return sum(cost.block_macs(g) for g in geoms) + cost.head_macs(A.out_size(h, s), c, arch.num_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--plot", help="draw the Pareto front here (.png or .svg)")
    args = ap.parse_args()
    board = load_board("stm32f412")
    model = board_latency(board)
    paper = A.load(PAPER)
    ref = estimate(paper, board)
    ref_qe = qe_score(paper)
    print(f"Table 1 network: QE {ref_qe:.2f}, {ref.instructions:,.0f} instructions = {ref.ms:,.0f} ms "
          f"on {board.name} ({ref.note})\n")
    rows, front, t0 = [], [], time.perf_counter()
    for frac in (1.0, 0.5, 0.25):
        for seed in range(1, args.seeds + 1):
            cfg = SearchConfig(256 * KB, 1 * MB, core=board.core.cpu, resolution=160, num_classes=2,
                               population=512, iterations=args.iterations, seed=seed,
                               latency_budget=ref.instructions * frac)
            r = Evolution(cfg, SearchLatency(model), track_latency=seed == 1).run()
            if seed == 1:
                front += r.population
            b = r.best
            arch = space.to_arch(b.genome, 160, 2)
            rows.append((f"{frac:g}", seed, f"{b.qe_score:.2f}", "yes" if b.qe_score > ref_qe else "NO",
                         f"{macs(arch) / 1e6:,.1f}", len(A.blocks(arch)) - 1, bits_summary(arch),
                         f"{to_ms(model, b.latency, board):,.0f}", f"{b.flash_bytes:,}", f"{b.peak_sram_bytes:,}"))
            print(f"latency x{frac:g}, seed {seed}: QE {b.qe_score:.2f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    paper_row = ("Table 1", "-", f"{ref_qe:.2f}", "-", f"{macs(paper) / 1e6:,.1f}", len(A.blocks(paper)) - 1,
                 bits_summary(paper), f"{ref.ms:,.0f}", "", "")
    print()
    print(render(("latency", "seed", "QE", "beats", "M MACs", "blocks", "bits a/w", "ms (est.)",
                  "Flash B", "SRAM B"), rows, [paper_row]))
    print(f"\n{args.iterations:,} iterations a run, population 512, {time.perf_counter() - t0:.0f} s in all")
    if args.plot:
        from qetool.view.plots import pareto_figure, save

        pts = [(to_ms(model, c.latency, board), c.qe_score) for c in pareto_front(tuple(front))]
        save(pareto_figure(pts, (ref.ms, ref_qe), f"QE against latency on {board.name} at 256 KB / 1 MB: "
                           f"the Pareto front of the final populations (seed 1 at each latency budget, "
                           f"{args.iterations:,} iterations)"), args.plot)
        print(f"Pareto front ({len(pts)} networks) -> {args.plot}")


if __name__ == "__main__":
    main()
