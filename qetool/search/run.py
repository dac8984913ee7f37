"""`qetool search` with a progress bar: iterations, the best QE-score (and its latency when
timed) and rate; the best QE-score is also kept as the search's history."""

from __future__ import annotations

import json
from typing import Callable

from tqdm import tqdm

from qetool.arch import to_dict
from qetool.device.boards import Board
from qetool.errors import QetoolError
from qetool.fileio import write_text
from qetool.search import space
from qetool.search.evolve import (Candidate, Evolution, SearchConfig, SearchResult, genome_macs,
                                  pareto_front)
from qetool.search.history import PARETO_FORMAT
from qetool.search.latency import LatencyModel, SearchLatency, board_latency, to_ms

_EVERY = 500


def latency_budget(board: Board, model: LatencyModel | None, ms: float | None) -> float | None:
    """A budget in milliseconds as the model's count (instructions at the board's clock and
    cycles per instruction, or cycles)."""
    if ms is None:
        return None
    if model is None:
        raise QetoolError(f"a latency budget needs a latency calibration for {board.core.cpu} "
                          f"(qetool calibrate --board {board.name} --emulator)")
    cycles = ms * 1e-3 * board.clock_hz
    return cycles if model.counter == "cycles" else cycles / board.cycles_per_instruction


def run_with_progress(cfg: SearchConfig, board: Board, track_latency: bool = False
                      ) -> tuple[SearchResult, list[tuple[int, float]], SearchLatency | None]:
    """search(cfg) drawing a bar on stderr; Ctrl-C stops it with the best so far. Also returns
    (iterations done, best QE-score) at the start, every _EVERY iterations and at the end, and
    the latency model used (None without a calibration)."""
    model = board_latency(board)
    timer = SearchLatency(model) if model is not None else None
    evolution = Evolution(cfg, timer, track_latency)
    points = [(0, evolution.first.qe_score)]
    with tqdm(total=cfg.iterations, unit="it", dynamic_ncols=True, smoothing=0.1,
              desc="search") as bar:
        def progress(done: int, best: Candidate) -> None:
            bar.update(done - bar.n)
            extra = {} if best.latency is None else {"ms": f"{to_ms(model, best.latency, board):.0f}"}
            bar.set_postfix(best=f"{best.qe_score:.3f}", **extra, refresh=False)
            points.append((done, best.qe_score))

        result = evolution.run(progress, _EVERY)
        bar.update(result.iterations_done - bar.n)
    if result.iterations_done > points[-1][0]:
        points.append((result.iterations_done, result.best.qe_score))
    return result, points, timer


def latency_of(timer: SearchLatency, c: Candidate, cfg: SearchConfig) -> float:
    """The latency model's count for a candidate (computed when the search did not)."""
    if c.latency is not None:
        return c.latency
    return timer.network(space.instances(c.genome, cfg.resolution), *space.flat_bits(c.genome),
                         c.peak_sram_bytes, cfg.num_classes)


def write_pareto(path: str, result: SearchResult, cfg: SearchConfig, board: Board,
                 timer: SearchLatency) -> int:
    """The final population's QE/latency front as JSON (docs/formats.md); returns its size."""
    front = pareto_front(result.population)
    doc = {"format": PARETO_FORMAT, "board": board.name, "seed": cfg.seed,
           "iterations": result.iterations_done,
           "points": [{"qe_score": c.qe_score, "latency_instructions": round(c.latency),
                       "latency_ms": round(to_ms(timer.model, c.latency, board), 3),
                       "macs": genome_macs(space.instances(c.genome, cfg.resolution), cfg.num_classes),
                       "blocks": len(space.instances(c.genome, cfg.resolution)) - 1,
                       "flash_bytes": c.flash_bytes, "peak_sram_bytes": c.peak_sram_bytes,
                       "arch": to_dict(space.to_arch(c.genome, cfg.resolution, cfg.num_classes))}
                      for c in front]}
    write_text(path, json.dumps(doc) + "\n")
    return len(front)


def search_command(board: str | None, board_file: str | None, sram: int | None, flash: int | None,
                   resolution: int, classes: int, population: int, iterations: int, seed: int,
                   output: str, history: str | None, latency_ms: float | None,
                   no_latency_budget: bool, macs: int | None, max_blocks: int | None,
                   pareto: str | None, warn: Callable[[str], None]) -> list[str]:
    """`qetool search`: budgets from the board and the options (`warn` is told, before the
    search, of a budget beyond the board), the search, its outputs; the lines to print."""
    from qetool.arch import save
    from qetool.device.boards import choose_board
    from qetool.search.history import write_history

    b = choose_board(board, board_file)
    for line in b.over_physical(sram or 0, flash or 0):
        warn(line)
    lines = []
    ms = None if no_latency_budget else latency_ms or b.latency_budget_ms
    model = board_latency(b)
    cfg = SearchConfig(sram_budget=sram or b.budget_sram_bytes,
                       flash_budget=flash or b.budget_flash_bytes, core=b.core.cpu,
                       resolution=resolution, num_classes=classes, population=population,
                       iterations=iterations, seed=seed,
                       latency_budget=latency_budget(b, model, ms), max_macs=macs, max_blocks=max_blocks)
    if pareto and model is None:
        raise QetoolError(f"--pareto needs a latency calibration for {b.core.cpu} (qetool calibrate)")
    result, points, timer = run_with_progress(cfg, b, track_latency=pareto is not None)
    save(result.arch(cfg), output)
    if history:
        write_history(history, points, b.name, seed)
    best = result.best
    state = "interrupted: best so far" if result.interrupted else "done"
    lines.append(f"{state} after {result.iterations_done:,} iterations "
                 f"({result.accepted:,} accepted): QE-score {best.qe_score:.6f}, "
                 f"Flash {best.flash_bytes:,} B of {cfg.flash_budget:,}, "
                 f"SRAM {best.peak_sram_bytes:,} B of {cfg.sram_budget:,}, "
                 f"{genome_macs(space.instances(best.genome, resolution), classes):,} MACs -> {output}")
    if timer is not None:
        t = latency_of(timer, best, cfg)
        budget = f" of {ms:,.0f} ms" if ms else ""
        lines.append(f"latency {to_ms(timer.model, t, b):,.1f} ms{budget} (estimate: {t:,.0f} "
                     f"{timer.model.counter} at {b.clock_hz / 1e6:.0f} MHz)")
    if pareto:
        lines.append(f"Pareto front: {write_pareto(pareto, result, cfg, b, timer)} networks -> {pareto}")
    return lines
