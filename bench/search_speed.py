"""Search speed: candidates per second of the full evolution (population 512) and the projected
time of the paper's setting (500,000 iterations), with the process's memory along the run;
then the same search with a latency budget (the board's default, 1,000 ms on the F746) in the
same process, and the ratio of the two times.

    python bench/search_speed.py [--iterations N] [--latency-ms MS]   (default: the full 500,000)
"""

from __future__ import annotations

import argparse
import resource
import time

from dataclasses import replace

from qetool.device.boards import load_board
from qetool.search.evolve import Evolution, SearchConfig
from qetool.search.latency import SearchLatency, board_latency, to_ms
from qetool.search.run import latency_budget

FULL = 500_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def timed_run(cfg: SearchConfig, timer: SearchLatency | None) -> tuple[float, object]:
    """One search; prints its rate and memory every tenth; returns (seconds, result)."""
    marks: list[tuple[int, float, float]] = []
    step = max(1, cfg.iterations // 10)
    t0 = time.perf_counter()

    def progress(done: int, best) -> None:
        marks.append((done, time.perf_counter() - t0, rss_mb()))

    result = Evolution(cfg, timer).run(progress, step)
    elapsed = time.perf_counter() - t0
    print(f"{'iterations':>10} {'seconds':>8} {'cand/s':>8} {'RSS MB':>7}")
    prev_done, prev_t = 0, 0.0
    for done, t, rss in marks:
        print(f"{done:>10,} {t:>8.1f} {(done - prev_done) / (t - prev_t):>8,.0f} {rss:>7.1f}")
        prev_done, prev_t = done, t
    return elapsed, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=FULL)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, help="default: the board's budget_ms")
    args = ap.parse_args()
    board = load_board("stm32f746")
    cfg = SearchConfig(board.budget_sram_bytes, board.budget_flash_bytes, core=board.core.cpu, population=512,
                       iterations=args.iterations, seed=args.seed)
    elapsed, result = timed_run(cfg, None)
    rate = result.evaluated / elapsed
    print(f"\nbest QE-score {result.best.qe_score:.4f}, Flash {result.best.flash_bytes:,} B, "
          f"SRAM {result.best.peak_sram_bytes:,} B")
    print(f"{rate:,.0f} candidates/s ({1e6 / rate:.0f} us each) on one core; "
          f"full setting (512 x {FULL:,}) projected {FULL / rate:.0f} s "
          f"({FULL / rate / 60:.1f} min); measured {elapsed:.1f} s for {result.evaluated:,}")
    print(f"vs the authors' code (~20 candidates/s, measured on this machine): {rate / 20:,.0f}x")

    model = board_latency(board)
    ms = args.latency_ms or board.latency_budget_ms
    timed_cfg = replace(cfg, latency_budget=latency_budget(board, model, ms))
    print(f"\nthe same search with a latency budget of {ms:,.0f} ms:")
    elapsed_l, result_l = timed_run(timed_cfg, SearchLatency(model))
    best = result_l.best
    print(f"\nbest QE-score {best.qe_score:.4f}, latency {to_ms(model, best.latency, board):,.1f} ms "
          f"(estimate)")
    print(f"{result_l.evaluated / elapsed_l:,.0f} candidates/s; {elapsed_l:.1f} s against {elapsed:.1f} s "
          f"without the budget: {elapsed_l / elapsed:.3f}x the time")


if __name__ == "__main__":
    main()
