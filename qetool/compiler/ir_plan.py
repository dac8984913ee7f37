"""The memory plan of a graph IR (docs/memory.md, docs/ir.md): tensor lifetimes from the
graph, then placement, kept apart.

Lifetimes: a tensor lives from the node that writes it (the input: from node 0) to the last node
that reads it; the graph's output to the end. Aliases share one buffer and the union of their
lifetimes: RESHAPE's output is its input; a depthwise convolution with depth multiplier 1 and an
ADD write over an input that dies with them (the kernels allow it, docs/ir.md). A node's scratch
lives during that node only. A `head` writes its logits to the caller's buffer, not the arena.

Placement: either the front end's (arch.json networks: plan.py's two-ended placement, whose
arena is the largest live total, the closed form the search evaluates), checked here against the
lifetimes, or greedy: buffers by decreasing size (ties: the earlier first), each at the lowest
offset where it overlaps no placed buffer whose lifetime overlaps its own (first fit, as TFLM's
greedy planner does), scratch in the same arena.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from qetool.compiler import ir
from qetool.compiler.ir import arch_op
from qetool.compiler.pack import align
from qetool.compiler.plan import scratch_bytes as arch_scratch_bytes


def scratch_bytes(g: ir.Graph, node: ir.Node) -> int:
    """Kernel scratch in bytes, rounded up to 4. qetool's own kernels (single rounding):
    plan.scratch_bytes. TFLM-arithmetic kernels: conv2d one output pixel's receptive field as
    int16 (2 * kh * kw * Cin); depthwise_conv2d one padded input channel plane as int8
    ((H + pt + pb) * (W + pl + pr)); other ops none."""
    x = g.tensors[node.inputs[0]]
    w = node.window
    if node.requant is not None and node.requant.rounding == "single":
        op = arch_op(node)
        pad = (w.pad_top, w.pad_bottom, w.pad_left, w.pad_right) if w else (0, 0, 0, 0)
        return arch_scratch_bytes(op, w.kernel_h if w else 1, x.shape[3], x.shape[1], x.shape[2], pad)
    if node.op == "conv2d":
        return align(2 * w.kernel_h * w.kernel_w * x.shape[3])
    if node.op == "depthwise_conv2d":
        return align((x.shape[1] + w.pad_top + w.pad_bottom) * (x.shape[2] + w.pad_left + w.pad_right))
    return 0


def tensor_bytes(t: ir.Tensor) -> int:
    """An activation buffer: ceil(elements * bits / 8) rounded up to 4."""
    return align((t.elements * t.bits + 7) // 8)


@dataclass(frozen=True)
class Buffer:
    """One arena region: the tensors (or `<node>.scratch`) it holds, offset and size in bytes,
    and the nodes (first, last) during which it is live."""

    names: tuple[str, ...]
    offset: int
    size: int
    first: int
    last: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class GraphPlan:
    """Arena bytes, the buffers, and each tensor's or scratch's buffer."""

    arena_bytes: int
    buffers: tuple[Buffer, ...]
    where: dict[str, Buffer]

    def offset(self, name: str) -> int:
        return self.where[name].offset

    def scratch_span(self, node: str) -> tuple[int, int]:
        """(offset, bytes) of the free arena around a node's scratch while the node runs: from
        the end of the nearest live buffer below it (or 0) to the nearest live buffer above (or
        the arena's end). The kernel may use all of it (docs/kernels.md: room beyond the scratch
        makes kernels faster, never the arena bigger). (0, 0) for a node without scratch."""
        s = self.where.get(f"{node}.scratch")
        if s is None:
            return 0, 0
        live = [b for b in self.buffers if b is not s and b.first <= s.first <= b.last]
        low = max((b.end for b in live if b.end <= s.offset), default=0)
        high = min((b.offset for b in live if b.offset >= s.end), default=self.arena_bytes)
        return low, high - low

    @property
    def activation_bytes(self) -> int:
        """Arena bytes the activations alone need (the plan without scratch: the same placement
        rule over the tensor buffers only)."""
        return _place([b for b in self._regions() if not b[0][0].endswith(".scratch")])[0]

    def _regions(self) -> list[tuple[tuple[str, ...], int, int, int]]:
        return [(b.names, b.size, b.first, b.last) for b in self.buffers]


def _in_place(g: ir.Graph, i: int, node: ir.Node, dies: Callable[[str], int]) -> str | None:
    """The input whose buffer a node may write its output into, if any: RESHAPE's always (an
    alias, nothing is written); for a depthwise convolution with depth multiplier 1 and an ADD,
    an input whose buffer (all its aliases) dies at this node, `dies(t)` giving the last node
    reading any tensor of t's buffer, and is as large as the output."""
    y = g.tensors[node.output]
    if node.op == "reshape":
        return node.inputs[0]
    if node.op == "depthwise_conv2d" and node.attrs.get("depth_multiplier") == 1:
        cands = node.inputs[:1]
    elif node.op == "add":
        cands = node.inputs
    else:
        return None
    for t in cands:
        if dies(t) == i and tensor_bytes(g.tensors[t]) >= tensor_bytes(y):
            return t
    return None


def lifetimes(g: ir.Graph) -> list[tuple[tuple[str, ...], int, int, int]]:
    """Regions to place: (names, bytes, first node, last node), aliases merged."""
    end = len(g.nodes) - 1
    first = {g.input: 0, **{n.output: i for i, n in enumerate(g.nodes) if n.op != "head"}}
    last = {t: max([first[t], *g.consumers.get(t, ())]) for t in first}
    if g.output in last:
        last[g.output] = end
    group = {t: t for t in first}   # tensor -> its buffer's root tensor

    def root(t: str) -> str:
        while group[t] != t:
            t = group[t]
        return t

    def dies(t: str) -> int:
        r = root(t)
        return max(last[m] for m in first if root(m) == r)

    for i, node in enumerate(g.nodes):
        src = _in_place(g, i, node, dies)
        if src is not None:
            group[node.output] = root(src)
    members: dict[str, list[str]] = {}
    for t in first:
        members.setdefault(root(t), []).append(t)
    regions = []
    for r, names in members.items():
        size = max(tensor_bytes(g.tensors[t]) for t in names)
        regions.append((tuple(names), size, min(first[t] for t in names), max(last[t] for t in names)))
    for i, node in enumerate(g.nodes):
        s = scratch_bytes(g, node)
        if s:
            regions.append(((f"{node.name}.scratch",), s, i, i))
    return regions


def _place(regions: list[tuple[tuple[str, ...], int, int, int]]) -> tuple[int, list[Buffer]]:
    """Greedy first fit by decreasing size; returns the arena size and the buffers."""
    placed: list[Buffer] = []
    for names, size, f, l in sorted(regions, key=lambda r: (-r[1], r[2])):
        clash = sorted((b.offset, b.end) for b in placed if b.first <= l and f <= b.last)
        at = 0
        for lo, hi in clash:
            if at + size <= lo:
                break
            at = max(at, hi)
        placed.append(Buffer(names, at, size, f, l))
    return max((b.end for b in placed), default=0), placed


def _check_placement(buffers: list[Buffer], arena: int) -> None:
    """No two buffers that are live at once share a byte, and all lie in the arena."""
    for i, a in enumerate(buffers):
        if a.offset < 0 or a.end > arena:
            raise AssertionError(f"{a.names}: {a.offset}..{a.end} outside the arena of {arena}")
        for b in buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last and a.offset < b.end and b.offset < a.end:
                raise AssertionError(f"{a.names} and {b.names} overlap while both are live")


def plan(g: ir.Graph, offsets: Mapping[str, int] | None = None, arena: int | None = None) -> GraphPlan:
    """Lifetimes, then placement (see the module docstring): greedy, or the front end's
    `offsets` (by tensor or scratch name; one name of each buffer suffices) in an arena of
    `arena` bytes, checked against the lifetimes."""
    regions = lifetimes(g)
    if offsets is None:
        size, buffers = _place(regions)
        size = align(size)
    else:
        buffers = [Buffer(names, next(offsets[n] for n in names if n in offsets), nbytes, f, l)
                   for names, nbytes, f, l in regions]
        size = arena
        _check_placement(buffers, size)
    where = {n: b for b in buffers for n in b.names}
    return GraphPlan(size, tuple(buffers), where)
