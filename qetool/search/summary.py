"""`qetool score`: a network's QE-score, model Flash and peak SRAM per block, with a board's
search budgets. Flash is pack.model_flash (weights + per-channel data + head + kernel code);
peak SRAM is plan(arch).arena_bytes, each block's the largest live total over its steps. With a
board whose core has a latency calibration, the estimated instructions per block and in total
and milliseconds at the board's clock (search/latency.py), against its latency budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from qetool.arch import Arch, blocks, layers
from qetool.compiler.pack import model_flash
from qetool.compiler.plan import plan
from qetool.search.latency import estimate
from qetool.search.score import layer_terms, qe_from_terms
from qetool.device.boards import DEFAULT_CORE, Board
from qetool.table import render
from qetool.units import fmt_size


@dataclass(frozen=True)
class BlockCost:
    """One block instance (or the head): bits, weight count, Flash and peak SRAM in bytes."""

    name: str
    bits_a: int
    bits_w: int
    params: int
    flash_bytes: int
    peak_sram_bytes: int
    qe_terms: float
    latency_instructions: float | None = None


@dataclass(frozen=True)
class ScoreReport:
    qe_score: float
    model_flash_bytes: int
    weights_flash_bytes: int
    channel_data_bytes: int
    code_flash_bytes: int
    peak_sram_bytes: int
    core: str
    blocks: list[BlockCost]
    board: str | None = None
    budget_flash_bytes: int | None = None
    budget_sram_bytes: int | None = None
    latency_instructions: float | None = None
    latency_ms: float | None = None
    budget_latency_ms: float | None = None
    latency_note: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lat = self.latency_instructions is not None
        ms_per = self.latency_ms / self.latency_instructions if lat else 0.0

        def est(n: float | None) -> tuple[str, ...]:
            return (f"{n / 1e6:,.2f}", f"{n * ms_per:,.1f}") if lat else ()

        rows = [(b.name, b.bits_a, b.bits_w, f"{b.params:,}", f"{b.flash_bytes:,}",
                 f"{b.peak_sram_bytes:,}", f"{b.qe_terms:.3f}", *est(b.latency_instructions))
                for b in self.blocks]
        foot = [("code", "", "", "", f"{self.code_flash_bytes:,}", "", "", *(("", "") if lat else ())),
                ("total", "", "", f"{sum(b.params for b in self.blocks):,}",
                 f"{self.model_flash_bytes:,}", f"{self.peak_sram_bytes:,}",
                 f"{self.qe_score:.6f}", *est(self.latency_instructions))]
        out = [render(("block", "bits_a", "bits_w", "params", "flash B", "peak SRAM B", "QE terms",
                       *(("M instr (est.)", "ms (est.)") if lat else ())), rows, foot)]
        out.append(f"\nQE-score      {self.qe_score:.12f}")
        out.append(f"model Flash   {self.model_flash_bytes:,} B ({fmt_size(self.model_flash_bytes)}): "
                   f"weights {self.weights_flash_bytes:,}, per-channel {self.channel_data_bytes:,}, "
                   f"code {self.code_flash_bytes:,} ({self.core})")
        out.append(f"peak SRAM     {self.peak_sram_bytes:,} B ({fmt_size(self.peak_sram_bytes)}) (arena)")
        if self.board:
            for what, used, budget in (("Flash", self.model_flash_bytes, self.budget_flash_bytes),
                                       ("SRAM", self.peak_sram_bytes, self.budget_sram_bytes)):
                left = budget - used
                state = f"{left:,} B left" if left >= 0 else f"OVER by {-left:,} B"
                out.append(f"{self.board} {what:5s} budget {budget:,} B: {state}")
        if lat:
            out.append(f"latency       {self.latency_instructions:,.0f} instructions, "
                       f"{self.latency_ms:,.1f} ms ({self.latency_note})")
            if self.budget_latency_ms is not None:
                left = self.budget_latency_ms - self.latency_ms
                state = f"{left:,.1f} ms left" if left >= 0 else f"OVER by {-left:,.1f} ms"
                out.append(f"{self.board} latency budget {self.budget_latency_ms:,.1f} ms: {state}")
        elif self.latency_note:
            out.append(f"latency       {self.latency_note}")
        return "\n".join(out)


def score_report(arch: Arch, board: Board | None = None,
                 latency_budget_ms: float | None = None) -> ScoreReport:
    """Cost and score of `arch`, per block instance and the head; kernel code is counted for
    the board's core (DEFAULT_CORE without a board); latency with a board that has a model,
    against `latency_budget_ms` (default: the board's)."""
    core = board.core.cpu if board else DEFAULT_CORE
    flash = model_flash(arch, core)
    by_layer = {f.id: f.weights + f.channel for f in flash.layers}
    p = plan(arch)
    peaks = p.block_peaks()
    terms = dict(layer_terms(arch))
    ls = layers(arch)
    out = []
    for b in blocks(arch):
        mine = [layer for layer in ls if layer.block == b.index]
        out.append(BlockCost(b.name, b.bits_a, b.bits_w, sum(layer.params for layer in mine),
                             sum(by_layer[layer.id] for layer in mine), peaks[b.index],
                             sum(terms[layer.id] for layer in mine)))
    head = ls[-1]
    out.append(BlockCost("head", head.bits_x, head.bits_w, head.params, by_layer["head"],
                         peaks[head.block], 0.0))
    lat = estimate(arch, board)
    if lat is not None:
        out = [replace(b, latency_instructions=t) for b, t in zip(out, lat.per_block)]
    return ScoreReport(
        qe_score=qe_from_terms(terms.values()), model_flash_bytes=flash.total,
        weights_flash_bytes=flash.weights, channel_data_bytes=flash.channel,
        code_flash_bytes=flash.code, peak_sram_bytes=p.arena_bytes, core=core, blocks=out,
        board=board.name if board else None,
        budget_flash_bytes=board.budget_flash_bytes if board else None,
        budget_sram_bytes=board.budget_sram_bytes if board else None,
        latency_instructions=lat.instructions if lat else None, latency_ms=lat.ms if lat else None,
        budget_latency_ms=(latency_budget_ms or board.latency_budget_ms) if board else None,
        latency_note=lat.note if lat else None if board is None else
        f"no latency calibration for {board.core.cpu} (qetool calibrate)")
