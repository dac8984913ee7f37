"""The static memory plan (docs/memory.md, SRAM side): one arena for the input slot, every
activation buffer and all kernel scratch, over the execution order. It depends on the arch alone.

Timeline, one step per layer (x = block input, E = expanded, y = block output):
    stem        image, stem output, scratch
    expand      x, E, scratch
    dw          x (residual only), E, scratch      -- in place: the dw output overwrites E
    project     x (residual only), E, y, scratch   -- reads the dw output from E's buffer
    head        last output, scratch
A buffer lives from the step that writes it to the last step that reads it; the image slot is
free once the stem has run.

Placement: each block's input sits at one end of the arena (the image at offset 0). With a
residual, E goes next to x and y at the other end; without, E goes to the other end and y takes
x's end. Scratch fills the gap between the two ends. Every step's live buffers then fit side by
side, so the arena size is exactly the largest live total over the steps (that is the closed form
the search evaluates, qetool.search.cost).
"""

from __future__ import annotations

from dataclasses import dataclass

from qetool.arch import Arch, Layer, layers, tensors
from qetool.compiler.kernels import REGISTRY
from qetool.compiler.pack import act_bytes, align


def scratch_bytes(op: str, kernel: int, cin: int, h_in: int, w_in: int,
                  pad: tuple[int, int, int, int]) -> int:
    """Kernel scratch in bytes, rounded up to 4: the registry's formula for `op`
    (qetool.compiler.kernels, docs/kernels.md)."""
    return align(REGISTRY[op].scratch(kernel, cin, h_in, w_in, pad))


def layer_scratch_bytes(layer: Layer) -> int:
    """scratch_bytes of one layer."""
    return scratch_bytes(layer.op, layer.kernel, layer.cin, layer.h_in, layer.w_in, layer.pad)


@dataclass(frozen=True)
class Buffer:
    """One region of the arena: `name` is a tensor name or `<layer>.scratch`, `offset` and
    `size` in bytes (the steps where it is live: Plan.steps). A dw output shares its input's
    buffer (`alias`)."""

    name: str
    offset: int
    size: int
    alias: str | None = None

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Step:
    """One layer's step: the buffers live while it runs and their total bytes."""

    layer: str
    block: int
    live: tuple[str, ...]
    total: int


@dataclass(frozen=True)
class Plan:
    """The memory plan: arena size in bytes, every buffer's place, the step timeline."""

    arena_bytes: int
    buffers: dict[str, Buffer]
    steps: tuple[Step, ...]

    def block_peaks(self) -> dict[int, int]:
        """Largest live total over each block's steps (QBR's Z_l), by block index; the head's
        step is block len(blocks)."""
        out: dict[int, int] = {}
        for s in self.steps:
            out[s.block] = max(out.get(s.block, 0), s.total)
        return out

    def buffer_of(self, tensor: str) -> Buffer:
        """The arena region holding `tensor` (a dw output resolves to its input's buffer)."""
        buf = self.buffers[tensor]
        return self.buffers[buf.alias] if buf.alias else buf


def _blocks(ls: list[Layer]) -> list[tuple[Layer, Layer, Layer]]:
    """The (expand, dw, project) layers of each block, in order."""
    return [tuple(ls[i:i + 3]) for i in range(1, len(ls) - 1, 3)]


def timeline(arch: Arch) -> tuple[list[Layer], dict[str, int], list[tuple[str, ...]]]:
    """Layers, buffer sizes in bytes (tensors and `<layer>.scratch`) and each step's live
    buffers, in execution order (the table in the module docstring)."""
    ls = layers(arch)
    size = {name: act_bytes(t.h, t.w, t.c, t.bits)
            for name, t in tensors(arch).items() if name != "head"}
    size.update({f"{layer.id}.scratch": layer_scratch_bytes(layer) for layer in ls})
    live = [("image", "stem", "stem.scratch")]
    for e, d, p in _blocks(ls):
        keep = (e.input,) if p.residual else ()
        live += [(e.input, e.id, f"{e.id}.scratch"),
                 keep + (e.id, f"{d.id}.scratch"),
                 keep + (e.id, p.id, f"{p.id}.scratch")]
    live.append((ls[-1].input, "head.scratch"))
    return ls, size, live


def plan(arch: Arch) -> Plan:
    """Place every buffer in one arena (see the module docstring). Arena size in bytes equals
    the largest live total of any step."""
    ls, size, live = timeline(arch)
    totals = [sum(size[n] for n in names) for names in live]
    arena = max(totals)
    offset: dict[str, int] = {}

    def put(name: str, side: int, dist: int) -> int:
        """Place `name` `dist` bytes from the bottom (side 0) or top (side 1) end of the arena;
        return the distance just past it on that side."""
        offset[name] = dist if side == 0 else arena - dist - size[name]
        return dist + size[name]

    put("stem", 1, 0)
    put("stem.scratch", 0, put("image", 0, 0))
    side = 1  # the end holding the current block's input
    for e, d, p in _blocks(ls):
        other = 1 - side
        if p.residual:  # x, E side by side; y at the other end
            past_e = put(e.id, side, size[e.input])
            put(f"{e.id}.scratch", side, past_e)
            put(f"{d.id}.scratch", side, past_e)
            put(f"{p.id}.scratch", other, put(p.id, other, 0))
            side = other
        else:  # E at the other end; y takes x's end once x is dead
            put(e.id, other, 0)
            put(f"{e.id}.scratch", side, size[e.input])
            put(f"{d.id}.scratch", side, 0)
            put(f"{p.id}.scratch", side, put(p.id, side, 0))
    put("head.scratch", side, size[ls[-1].input])

    buffers = {n: Buffer(n, offset[n], size[n]) for names in live for n in names}
    for e, d, _ in _blocks(ls):
        buffers[d.id] = Buffer(d.id, offset[e.id], size[d.id], alias=e.id)
    steps = tuple(Step(layer.id, layer.block, names, total)
                  for layer, names, total in zip(ls, live, totals))
    return Plan(arena, buffers, steps)
