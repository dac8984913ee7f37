"""Quantization Bits Refinement (Algorithm 1 of the paper's appendix), with the choices the
paper leaves open:

1. Activation pass, per block instance (the stem included; the head fixed at 8 bits): set bits_a
   to the largest allowed value whose peak fits the SRAM budget R. The peaks that depend on an
   instance's bits_a are its own Z_l and the previous instance's (whose output has these bits).
   Start from floor(b * R / Z_l) (the paper's line 4 prints the ratio inverted), clamped to the
   allowed set; step down until the real peaks fit, or up while they still do. Repeat the pass
   until nothing changes (at most MAX_ACT_PASSES).
2. Weight pass, once: if model Flash exceeds F, from the instance with the most weight bytes
   down, set bits_w to a random smaller allowed value until the total fits; else from the
   smallest up, raise bits_w to a random larger allowed value, stopping at the first raise that
   would exceed F. An instance with no allowed choice is skipped. Model Flash includes the
   width helpers' code (cost.WidthCode): a move counts the helpers it adds at once and those it
   leaves unused only at the end, so every step's total is an upper bound and the result exact.
3. A final check: a candidate that does not fit both budgets is rejected (None).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from qetool.search.cost import Geom, WidthCode, flash_table, sram_table

MAX_ACT_PASSES = 4


@dataclass(frozen=True)
class Refined:
    """QBR's result: per-instance bits and the candidate's exact costs in bytes."""

    bits_a: list[int]
    bits_w: list[int]
    flash_bytes: int
    peak_sram_bytes: int


def _floor_index(allowed: tuple[int, ...], value: int) -> int:
    """Index of the largest allowed value <= value (0 if none is)."""
    i = 0
    while i + 1 < len(allowed) and allowed[i + 1] <= value:
        i += 1
    return i


def activation_pass(geoms: list[Geom], ba: list[int], budget: int, allowed: tuple[int, ...],
                    last_bits: int) -> None:
    """Step 1, in place on `ba`. `last_bits` is the bits of the last instance's output."""
    tables = [sram_table(g) for g in geoms]
    n = len(ba)
    for _ in range(MAX_ACT_PASSES):
        changed = False
        for i in range(n):
            t = tables[i]
            nxt = ba[i + 1] if i + 1 < n else last_bits
            prev = tables[i - 1][ba[i - 1]] if i else None

            def fits(b: int) -> bool:
                return t[b][nxt] <= budget and (prev is None or prev[b] <= budget)

            cur = ba[i]
            j = _floor_index(allowed, cur * budget // t[cur][nxt])
            if fits(allowed[j]):
                while j + 1 < len(allowed) and fits(allowed[j + 1]):
                    j += 1
            else:
                while j > 0 and not fits(allowed[j]):
                    j -= 1
            if allowed[j] != cur:
                ba[i] = allowed[j]
                changed = True
        if not changed:
            return


def weight_pass(geoms: list[Geom], bw: list[int], budget: int, fixed: int,
                allowed: tuple[int, ...], rng: random.Random, code: WidthCode | None = None) -> int:
    """Step 2, in place on `bw`; `fixed` is the Flash no bits_w changes, `code` the width
    helpers' code, which bits_w do change (None: none counted; while the pass moves, a helper a
    move leaves unused stays counted, so the running total is an upper bound and the budget holds;
    the total returned is exact). Returns model Flash."""
    tables = [flash_table(g) for g in geoms]
    sizes = [t[b] for t, b in zip(tables, bw)]
    total = fixed + sum(sizes) + (code.start(bw) if code else 0)
    if total > budget:
        for i in sorted(range(len(bw)), key=lambda i: (-sizes[i], i)):
            if total <= budget:
                break
            smaller = [b for b in allowed if b < bw[i]]
            if smaller:
                b = rng.choice(smaller)
                total += tables[i][b] - sizes[i]
                if code:
                    total += code.delta(i, b)
                    code.move(i, b)
                bw[i] = b
    else:
        for i in sorted(range(len(bw)), key=lambda i: (sizes[i], i)):
            larger = [b for b in allowed if b > bw[i]]
            if not larger:
                continue
            b = rng.choice(larger)
            new = total + tables[i][b] - sizes[i] + (code.delta(i, b) if code else 0)
            if new > budget:
                break
            total = new
            if code:
                code.move(i, b)
            bw[i] = b
    return total + (code.settle(bw) if code else 0)


def peak_sram(geoms: list[Geom], ba: list[int], last_bits: int, head: int) -> int:
    """Arena bytes: the largest block peak, or the head's step."""
    nxt = ba[1:] + [last_bits]
    return max(head, max(sram_table(g)[a][b] for g, a, b in zip(geoms, ba, nxt)))


def refine(geoms: list[Geom], ba: list[int], bw: list[int], sram_budget: int, flash_budget: int,
           fixed_flash: int, head_sram: int, last_bits: int, bits_a: tuple[int, ...],
           bits_w: tuple[int, ...], rng: random.Random, core: str | None = None) -> Refined | None:
    """Steps 1 to 3 on copies of `ba` and `bw`; None when the candidate does not fit. With
    `core`, model Flash counts the width helpers' code on it (cost.WidthCode)."""
    ba, bw = list(ba), list(bw)
    activation_pass(geoms, ba, sram_budget, bits_a, last_bits)
    code = WidthCode(geoms, ba, last_bits, core) if core else None
    flash = weight_pass(geoms, bw, flash_budget, fixed_flash, bits_w, rng, code)
    peak = peak_sram(geoms, ba, last_bits, head_sram)
    if peak > sram_budget or flash > flash_budget:
        return None
    return Refined(ba, bw, flash, peak)
