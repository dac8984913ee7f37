"""Zero-shot evolutionary search: each iteration picks a random parent from the population,
mutates it, refines its bits with QBR, scores it and keeps the best `population` candidates.

Compute budgets: a candidate with more block instances than `max_blocks` or more MACs than
`max_macs` is rejected before QBR; one that would enter the population is then timed by the
latency model in closed form (search/latency.py) and rejected over `latency_budget`
(instructions, or cycles for a cycle calibration). Without a budget the latency is computed only
where it is reported (`track_latency`: the best, the Pareto front).

Ranking: higher QE-score, then fewer Flash bytes, then a stable hash of the genome (CRC-32 of
its ints), so a run is reproducible bit for bit from its seed. A genome already in the
population is not added twice.
"""

from __future__ import annotations

import heapq
import random
import zlib
from array import array
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable

from qetool.arch import HEAD_BITS, Arch, out_size
from qetool.errors import QetoolError
from qetool.search import cost, qbr, score, space
from qetool.search.latency import SearchLatency
from qetool.search.space import Genome


@dataclass(frozen=True)
class SearchConfig:
    """Budgets in bytes, resolution in px; `core` (a -mcpu name) decides the kernel code bytes."""

    sram_budget: int
    flash_budget: int
    core: str = "cortex-m7"
    resolution: int = 160
    num_classes: int = 2
    population: int = 512
    iterations: int = 500_000
    seed: int = 0
    latency_budget: float | None = None
    max_macs: int | None = None
    max_blocks: int | None = None


@dataclass(frozen=True)
class Candidate:
    """A scored, refined genome: QE-score, model Flash and peak SRAM in bytes, the latency
    model's instructions (None: not computed), and its block geometries (kept for timing)."""

    genome: Genome
    qe_score: float
    flash_bytes: int
    peak_sram_bytes: int
    latency: float | None = None
    geoms: tuple = field(default=(), repr=False, compare=False)

    @cached_property
    def key(self) -> tuple[float, int, int]:
        """Sort key, larger is better."""
        return (self.qe_score, -self.flash_bytes, genome_hash(self.genome))


@dataclass(frozen=True)
class SearchResult:
    best: Candidate
    iterations_done: int
    evaluated: int
    accepted: int
    interrupted: bool
    population: tuple[Candidate, ...] = ()

    def arch(self, cfg: SearchConfig) -> Arch:
        return space.to_arch(self.best.genome, cfg.resolution, cfg.num_classes)


def genome_hash(genome: Genome) -> int:
    """CRC-32 of the genome's ints in order: stable across runs and machines."""
    flat = array("H")
    for k, s, cin, cout, btn, ba, bw in genome:
        flat.extend((k, s, cin, cout, btn, len(ba), *ba, *bw))
    return zlib.crc32(flat.tobytes())


def genome_score(genome: Genome) -> float:
    """QE-score from the cached per-layer terms (equal to score.qe_score of its arch)."""
    terms: list[float] = []
    for r, (k, s, cin, cout, btn, ba, bw) in enumerate(genome):
        if r == 0:
            terms.append(score.layer_term(k, cin, ba[0], bw[0]))
            continue
        for rep, (a, w) in enumerate(zip(ba, bw)):
            terms.extend(score.block_terms(k, cin if rep == 0 else cout, btn, a, w))
    return score.qe_from_terms(terms)


def genome_macs(geoms: list, num_classes: int) -> int:
    """Multiply-accumulates of a candidate from its block geometries (the compiler's count)."""
    h, _, _, cout, _, s = geoms[-1]
    return sum(cost.block_macs(g) for g in geoms) + cost.head_macs(out_size(h, s), cout, num_classes)


def evaluate(genome: Genome, cfg: SearchConfig, rng: random.Random) -> Candidate | None:
    """Block and MAC budgets, QBR, then score; None when the candidate cannot fit the budgets
    (the latency budget is checked by Evolution, only for candidates that would be kept)."""
    geoms = space.instances(genome, cfg.resolution)
    if cfg.max_blocks is not None and len(geoms) - 1 > cfg.max_blocks:
        return None
    if cfg.max_macs is not None and genome_macs(geoms, cfg.num_classes) > cfg.max_macs:
        return None
    h, _, _, cout, _, s = geoms[-1]
    last_h = out_size(h, s)
    ba, bw = space.flat_bits(genome)
    fixed = cost.fixed_flash(cout, cfg.num_classes, len(geoms) - 1, cfg.core)
    refined = qbr.refine(geoms, ba, bw, cfg.sram_budget, cfg.flash_budget, fixed,
                         cost.head_sram(last_h, cout), HEAD_BITS, space.BITS_A, space.BITS_W, rng,
                         core=cfg.core)
    if refined is None:
        return None
    child = space.with_flat_bits(genome, refined.bits_a, refined.bits_w)
    return Candidate(child, genome_score(child), refined.flash_bytes, refined.peak_sram_bytes,
                     geoms=tuple(geoms))


class Evolution:
    """One search run. Creating it evaluates the starting genome (a user error when even that
    does not fit); `run` evolves the population. `latency` times candidates (needed with a
    latency budget); `track_latency` times every kept candidate even without one."""

    def __init__(self, cfg: SearchConfig, latency: SearchLatency | None = None,
                 track_latency: bool = False):
        if cfg.latency_budget is not None and latency is None:
            raise QetoolError("a latency budget needs the board's latency calibration (qetool calibrate)")
        self.cfg, self.latency = cfg, latency
        self.timed = latency is not None and (track_latency or cfg.latency_budget is not None)
        self.rng = random.Random(cfg.seed)
        first = evaluate(space.initial_genome(), cfg, self.rng)
        if first is not None:
            first = self.timed_candidate(first)
        if first is None:
            raise QetoolError(
                f"no network fits SRAM {cfg.sram_budget} B and Flash {cfg.flash_budget} B at "
                f"{cfg.resolution} px" + (" within the compute budgets" if cfg.latency_budget or cfg.max_macs
                                          or cfg.max_blocks else "")
                + ": even the smallest start does not (raise a budget or lower --resolution)")
        self.first = first

    def timed_candidate(self, c: Candidate) -> Candidate | None:
        """`c` with its latency when timed; None over the latency budget."""
        if not self.timed:
            return c
        cfg = self.cfg
        t = self.latency.network(c.geoms, *space.flat_bits(c.genome), c.peak_sram_bytes, cfg.num_classes)
        if cfg.latency_budget is not None and t > cfg.latency_budget:
            return None
        return replace(c, latency=t)

    def run(self, progress: Callable[[int, Candidate], None] | None = None,
            progress_every: int = 1000) -> SearchResult:
        """Evolve. `progress(iterations_done, best)` is called every `progress_every`
        iterations. Ctrl-C (KeyboardInterrupt) ends the run early with the best so far."""
        cfg, rng, first = self.cfg, self.rng, self.first
        heap: list[tuple[tuple[float, int, int], Candidate]] = [(first.key, first)]
        members = {first.genome}
        best = first
        evaluated = accepted = done = 0
        interrupted = False
        try:
            for done in range(1, cfg.iterations + 1):
                parent = heap[rng.randrange(len(heap))][1]
                child = evaluate(space.mutate(parent.genome, rng), cfg, rng)
                evaluated += 1
                full = len(heap) >= cfg.population
                if (child is not None and child.genome not in members
                        and (not full or child.key > heap[0][0])
                        and (child := self.timed_candidate(child)) is not None):
                    if full:
                        members.discard(heapq.heapreplace(heap, (child.key, child))[1].genome)
                    else:
                        heapq.heappush(heap, (child.key, child))
                    members.add(child.genome)
                    accepted += 1
                    if child.key > best.key:
                        best = child
                if progress is not None and done % progress_every == 0:
                    progress(done, best)
        except KeyboardInterrupt:
            interrupted = True
            done -= 1
        return SearchResult(best, done, evaluated, accepted, interrupted,
                            tuple(c for _, c in sorted(heap, reverse=True)))


def search(cfg: SearchConfig, progress: Callable[[int, Candidate], None] | None = None,
           progress_every: int = 1000, latency: SearchLatency | None = None) -> SearchResult:
    """Evolution(cfg, latency).run(progress, progress_every)."""
    return Evolution(cfg, latency).run(progress, progress_every)


def pareto_front(cands: tuple[Candidate, ...]) -> list[Candidate]:
    """The timed candidates no other beats on both QE-score (higher) and latency (lower), by
    increasing latency."""
    front: list[Candidate] = []
    for c in sorted((c for c in cands if c.latency is not None), key=lambda c: (c.latency, -c.qe_score)):
        if not front or c.qe_score > front[-1].qe_score:
            front.append(c)
    return front
