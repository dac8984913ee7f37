"""Search speed: candidates per second of the full evolution (population 512) and the projected
time of the paper's setting (500,000 iterations), with the process's memory along the run.

    python bench/search_speed.py [--iterations N]   (default: the full 500,000)
"""

from __future__ import annotations

import argparse
import resource
import time

from qetool.search.evolve import Evolution, SearchConfig
from qetool.device.boards import load_board

FULL = 500_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=FULL)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    board = load_board("stm32f746")
    cfg = SearchConfig(board.budget_sram_bytes, board.budget_flash_bytes, core=board.core.cpu, population=512,
                       iterations=args.iterations, seed=args.seed)
    marks: list[tuple[int, float, float]] = []
    step = max(1, args.iterations // 10)

    t0 = time.perf_counter()

    def progress(done: int, best) -> None:
        marks.append((done, time.perf_counter() - t0, rss_mb()))

    result = Evolution(cfg).run(progress, step)
    elapsed = time.perf_counter() - t0
    rate = result.evaluated / elapsed
    print(f"{'iterations':>10} {'seconds':>8} {'cand/s':>8} {'RSS MB':>7}")
    prev_done, prev_t = 0, 0.0
    for done, t, rss in marks:
        print(f"{done:>10,} {t:>8.1f} {(done - prev_done) / (t - prev_t):>8,.0f} {rss:>7.1f}")
        prev_done, prev_t = done, t
    print(f"\nbest QE-score {result.best.qe_score:.4f}, Flash {result.best.flash_bytes:,} B, "
          f"SRAM {result.best.peak_sram_bytes:,} B")
    print(f"{rate:,.0f} candidates/s ({1e6 / rate:.0f} us each) on one core; "
          f"full setting (512 x {FULL:,}) projected {FULL / rate:.0f} s "
          f"({FULL / rate / 60:.1f} min); measured {elapsed:.1f} s for {result.evaluated:,}")
    print(f"vs the authors' code (~20 candidates/s, measured on this machine): {rate / 20:,.0f}x")


if __name__ == "__main__":
    main()
