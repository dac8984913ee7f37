"""What the pictures and the HTML report show (docs/report.md), gathered without matplotlib:
per block (or node) bits, Flash and peak SRAM for the QBR figure; the arena's buffers over the
plan's steps; per-layer latency; the bits histogram (a search's history: search/history.py).

Units: bytes for memory, MACs, and the profile's counter (instructions in the emulator, cycles on
a board) for latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from qetool.compiler.ir_plan import GraphPlan
from qetool.compiler.program import Program
from qetool.errors import QetoolError
from qetool.search.summary import ScoreReport


@dataclass(frozen=True)
class QbrRow:
    """One bar group of the QBR figure: a block of an arch.json network (its bits_a, bits_w)
    or a node of an imported model (the bits it writes, its weights' bits; 0: no weights).
    Flash = packed weights + per-channel data, peak SRAM = the largest live arena total over its
    steps, both in bytes; latency = the counter over its layers (None: not measured)."""

    name: str
    bits_a: int
    bits_w: int
    flash_bytes: int
    peak_sram_bytes: int
    latency: int | None = None


@dataclass(frozen=True)
class QbrData:
    """The paper's QBR figure: rows in execution order; the model's fixed Flash (kernel code,
    where the running Flash total starts); budgets in bytes (None: no board); when the rows
    carry latency, its unit (instructions, cycles) and whether it is `measured` or `estimated`."""

    title: str
    rows: tuple[QbrRow, ...]
    code_bytes: int
    sram_budget: int | None = None
    flash_budget: int | None = None
    latency_unit: str | None = None
    latency_kind: str = "estimated"

    @property
    def flash_total(self) -> int:
        return self.code_bytes + sum(r.flash_bytes for r in self.rows)


def qbr_of_score(report: ScoreReport, title: str) -> QbrData:
    """The QBR figure of `qetool score`'s report (per block and the head), with the estimated
    latency per block when the report has it."""
    est = report.latency_instructions is not None
    rows = tuple(QbrRow(b.name, b.bits_a, b.bits_w, b.flash_bytes, b.peak_sram_bytes,
                        round(b.latency_instructions) if est else None) for b in report.blocks)
    return QbrData(title, rows, report.code_flash_bytes, report.budget_sram_bytes,
                   report.budget_flash_bytes, "instructions" if est else None)


@dataclass(frozen=True)
class ArenaBar:
    """One arena buffer: what it holds, bytes [offset, offset + size), live from step `first`
    to step `last` (node indices, both included); `scratch` for a kernel's scratch."""

    label: str
    offset: int
    size: int
    first: int
    last: int
    scratch: bool


@dataclass(frozen=True)
class ArenaData:
    """The memory plan over time: step names (one per node), buffers, the arena and its budget in
    bytes, the live total of every step and the peak step (the first with the largest total)."""

    steps: tuple[str, ...]
    bars: tuple[ArenaBar, ...]
    arena_bytes: int
    budget_bytes: int | None
    live_bytes: tuple[int, ...]

    @property
    def peak_step(self) -> int:
        return self.live_bytes.index(max(self.live_bytes))


def arena_of_plan(steps: list[str], p: GraphPlan, budget: int | None) -> ArenaData:
    """ArenaData of a graph plan; `steps` are the graph's node names in order."""
    bars = tuple(ArenaBar(" + ".join(b.names), b.offset, b.size, b.first, b.last,
                          b.names[0].endswith(".scratch"))
                 for b in sorted(p.buffers, key=lambda b: (b.first, b.offset)))
    live = tuple(sum(b.size for b in p.buffers if b.first <= i <= b.last) for i in range(len(steps)))
    return ArenaData(tuple(steps), bars, p.arena_bytes, budget, live)


@dataclass(frozen=True)
class LatencyRow:
    """One layer's MACs, its measured count (None: not profiled) in the profile's unit and
    the latency model's estimate in instructions (None: no model)."""

    name: str
    op: str
    macs: int
    measured: int | None
    estimated: int | None = None


@dataclass(frozen=True)
class LatencyData:
    """Per-layer latency: rows, the counter's name (instructions, cycles; None: nothing
    measured) and the board's clock in Hz."""

    rows: tuple[LatencyRow, ...]
    unit: str | None
    clock_hz: int

    @property
    def has_estimate(self) -> bool:
        return all(r.estimated is not None for r in self.rows)


@dataclass(frozen=True)
class BitsData:
    """How many weights (parameters) and activation values (elements of every tensor the
    arena holds, the input included) each bit width carries."""

    weights: dict[int, int]
    activations: dict[int, int]


def bits_of_program(prog: Program) -> BitsData:
    g = prog.graph
    weights: dict[int, int] = {}
    for n in g.nodes:
        if n.weights is not None:
            weights[n.bits_w] = weights.get(n.bits_w, 0) + int(n.weights.size)
    acts: dict[int, int] = {}
    for name in [g.input, *(n.output for n in g.nodes if n.op != "head")]:
        t = g.tensors[name]
        acts[t.bits] = acts.get(t.bits, 0) + t.elements
    return BitsData(weights, acts)




@dataclass(frozen=True)
class Profiled:
    """A profile (`qetool profile BUILD --emulator -o BUILD/profile.json`, docs/formats.md): where
    it ran, its counter (instructions, cycles; None: none), the whole inference's count (the
    layers' and what runs between them), per-layer counts, whether the count is an estimate
    (SysTick), and the ELF's Flash and the SRAM used in bytes."""

    target: str
    unit: str | None
    total: int | None
    counts: dict[str, int]
    estimated: bool
    elf_flash_bytes: int
    sram_bytes: int
    stack_bytes: int


def _count(v: object) -> bool:
    return type(v) is int and v >= 0


def load_profile(doc: object, where: str, prog: Program) -> Profiled:
    """A profile's JSON, checked field by field against the build's model and layers."""
    if not isinstance(doc, dict):
        raise QetoolError(f"{where}: not a profile (`qetool profile BUILD --emulator -o FILE`)")
    if doc.get("model_hash") != prog.model_hash:
        raise QetoolError(f"{where}: model_hash: {str(doc.get('model_hash'))[:40]!r} is not this "
                          f"build's {prog.model_hash} (profile the build again)")
    for key in ("elf_flash_bytes", "sram_bytes", "stack_bytes"):
        if not _count(doc.get(key)):
            raise QetoolError(f"{where}: {key}: missing or not a byte count")
    if doc.get("target") not in ("emulator", "board"):
        raise QetoolError(f"{where}: target: not 'emulator' or 'board'")
    unit = doc.get("counter")
    if unit not in ("instructions", "cycles", "none"):
        raise QetoolError(f"{where}: counter: not 'instructions', 'cycles' or 'none'")
    layers = doc.get("layers")
    ids = [layer.id for layer in prog.layers]
    if not isinstance(layers, list) or [isinstance(r, dict) and r.get("id") for r in layers] != ids:
        raise QetoolError(f"{where}: layers: not this build's {len(ids)} layers in order")
    counts: dict[str, int] = {}
    if unit != "none":
        if not _count(doc.get(unit)):
            raise QetoolError(f"{where}: {unit}: missing or not a count")
        for i, r in enumerate(layers):
            if not _count(r.get(unit)):
                raise QetoolError(f"{where}: layers[{i}].{unit}: missing or not a count")
            counts[r["id"]] = r[unit]
    return Profiled(doc["target"], None if unit == "none" else unit, doc.get(unit), counts,
                    doc.get("estimated") is True, doc["elf_flash_bytes"], doc["sram_bytes"],
                    doc["stack_bytes"])
