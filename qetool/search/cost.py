"""The search's cost model: model Flash and peak SRAM of a candidate in closed form, per block
instance, from the byte counts of qetool.compiler.pack and the scratch sizes of
qetool.compiler.plan. Tests prove the totals equal `model_flash(arch)` and `plan(arch)`.

A block instance is described by its geometry `Geom = (h, cin, btn, cout, kernel, stride)`
(h = input height = width in px; btn = 0 for the stem). Its tables, cached per geometry, give
bytes for every bit width, so evaluating a candidate is only list indexing:

    sram_table(g)[a][a_next]: the block's peak live bytes Z (docs/memory.md) with its own
        bits_a = a and the next block's bits_a = a_next (the bits of its output tensor):
        stem:   image + output + scratch
        block:  max(x + E + s_e,  r*x + E + s_d,  r*x + E + y + s_p),  r = 1 with a residual
    flash_table(g)[w]: packed weights + per-channel data of its layers at bits_w = w.
    block_widths(g, a, w, an): the width helpers its layers need (kernels.layer_variants); the
        model's kernel code counts each helper some instance needs once (WidthCode).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, reduce
from operator import or_

from qetool.arch import HEAD_BITS, out_size
from qetool.compiler.kernels import ALL_WIDTH_HELPERS, layer_variants
from qetool.compiler.pack import act_bytes, channel_bytes, code_bytes, code_table, weight_bytes
from qetool.compiler.plan import scratch_bytes

Geom = tuple[int, int, int, int, int, int]
_NO_PAD = (0, 0, 0, 0)
_BITS = range(9)  # table index = bit width; entries below the format's minimum are unused


def is_residual(g: Geom) -> bool:
    h, cin, btn, cout, k, s = g
    return btn > 0 and s == 1 and cin == cout


@dataclass(frozen=True)
class Steps:
    """The steps of one block instance at given bits: each layer's live total and scratch in
    bytes (stem: one step; block: expand, depthwise, project)."""

    totals: tuple[int, ...]
    scratch: tuple[int, ...]


@lru_cache(maxsize=None)
def _scratch(g: Geom) -> tuple[int, ...]:
    """The scratch bytes of instance `g`'s layers (no bits change them)."""
    h, cin, btn, cout, k, s = g
    ho, p = out_size(h, s), k // 2
    if btn == 0:
        return (scratch_bytes("conv", k, cin, h, h, (p, p, p, p)),)
    return (scratch_bytes("conv1x1", 1, cin, h, h, _NO_PAD), scratch_bytes("dwconv", k, btn, h, h, (p, p, p, p)),
            scratch_bytes("conv1x1", 1, btn, ho, ho, _NO_PAD))


def steps(g: Geom, a: int, an: int) -> Steps:
    """Instance `g`'s steps with its own bits_a = a and the next block's an (docs/memory.md);
    not cached: sram_table and the latency model keep what they need of it."""
    h, cin, btn, cout, k, s = g
    ho = out_size(h, s)
    y = act_bytes(ho, ho, cout, an)
    sc = _scratch(g)
    if btn == 0:
        return Steps((act_bytes(h, h, cin, a) + y + sc[0],), sc)
    x = act_bytes(h, h, cin, a)
    e = act_bytes(h, h, btn, a)
    keep = x if is_residual(g) else 0
    return Steps((x + e + sc[0], keep + e + sc[1], keep + e + y + sc[2]), sc)


@lru_cache(maxsize=None)
def sram_table(g: Geom) -> tuple[tuple[int, ...], ...]:
    """Peak live bytes of instance `g`, indexed [bits_a][bits_a of the next block]."""
    return tuple(tuple(0 if a == 0 or an == 0 else max(steps(g, a, an).totals) for an in _BITS)
                 for a in _BITS)


@lru_cache(maxsize=None)
def flash_table(g: Geom) -> tuple[int, ...]:
    """Flash bytes (weights + per-channel data) of instance `g`, indexed by bits_w."""
    h, cin, btn, cout, k, s = g
    out = []
    for w in _BITS:
        if btn == 0:
            out.append(weight_bytes(cout * cin * k * k, w) + channel_bytes(cout, False))
        else:
            out.append(weight_bytes(cin * btn, w) + channel_bytes(btn, False)
                       + weight_bytes(btn * k * k, w) + channel_bytes(btn, False)
                       + weight_bytes(btn * cout, w) + channel_bytes(cout, is_residual(g)))
    return tuple(out)


@lru_cache(maxsize=None)
def head_sram(h: int, c: int) -> int:
    """The head's step: the last block's 8-bit output (h x h x c) plus one int32 per channel."""
    return act_bytes(h, h, c, HEAD_BITS) + scratch_bytes("head", 1, c, h, h, _NO_PAD)


@lru_cache(maxsize=None)
def fixed_flash(c: int, classes: int, n_blocks: int, core: str) -> int:
    """Flash that no bit width changes: the 8-bit head and the kernel code on `core` of a model
    with `n_blocks` mbconv instances (every model runs all four kernels) but its width helpers
    (WidthCode)."""
    return (weight_bytes(c * classes, HEAD_BITS) + channel_bytes(classes, False)
            + code_bytes({"conv", "conv1x1", "dwconv", "head"}, frozenset(), 2 + 3 * n_blocks, core))


def block_widths(g: Geom, a: int, w: int, an: int) -> frozenset[str]:
    """The width helpers instance `g` needs with its own bits_a = a, bits_w = w and the next
    block's an: the stem's, or those of expand (a -> a), depthwise (a -> a) and project (a -> an,
    with a residual where the block has one). The head needs none."""
    h, cin, btn, cout, k, s = g
    if btn == 0:
        return layer_variants("conv", k, cin, a, w, an, False)
    return (layer_variants("conv1x1", 1, cin, a, w, a, False) | layer_variants("dwconv", k, btn, a, w, a, False)
            | layer_variants("conv1x1", 1, btn, a, w, an, is_residual(g)))


_HELPERS = tuple(sorted(ALL_WIDTH_HELPERS))
"""Bit i of a helper mask stands for _HELPERS[i]."""


@lru_cache(maxsize=None)
def _block_masks(g: Geom, a: int, an: int) -> tuple[int, ...]:
    """block_widths as bit masks over _HELPERS, indexed by bits_w (0 where below the format's
    minimum)."""
    names = [block_widths(g, a, w, an) if w >= 2 else frozenset() for w in _BITS]
    return tuple(sum(1 << i for i, h in enumerate(_HELPERS) if h in n) for n in names)


class _MaskBytes(dict):
    """Bytes of a helper mask on one core, remembered (a search meets few distinct masks)."""

    def __init__(self, core: str):
        super().__init__()
        widths = code_table(core)["widths"]
        self._sizes = [widths[h] for h in _HELPERS]

    def __missing__(self, mask: int) -> int:
        self[mask] = sum(size for i, size in enumerate(self._sizes) if mask >> i & 1)
        return self[mask]


@lru_cache(maxsize=None)
def _mask_bytes(core: str) -> _MaskBytes:
    return _MaskBytes(core)


class WidthCode:
    """The width helpers' code bytes on `core` of a candidate whose bits_a are fixed (`ba`, the
    last instance's output at `last_bits`) while QBR changes its bits_w: each instance's helpers
    as a bit mask over _HELPERS and the union counted so far. A move adds the helpers it needs
    and frees none (an upper bound, cheap enough for every move); `settle` makes the count
    exact."""

    def __init__(self, geoms: list[Geom], ba: list[int], last_bits: int, core: str):
        self._bytes = _mask_bytes(core).__getitem__
        self._by_w = [_block_masks(g, a, an) for g, a, an in zip(geoms, ba, ba[1:] + [last_bits])]
        self._union = 0

    def _exact(self, bw: list[int]) -> int:
        return reduce(or_, (m[w] for m, w in zip(self._by_w, bw)), 0)

    def start(self, bw: list[int]) -> int:
        """The instances at bits_w = bw; the bytes of their helpers."""
        self._union = self._exact(bw)
        return self._bytes(self._union)

    def delta(self, i: int, new: int) -> int:
        """The bytes counted more if instance i went to bits_w = new: the helpers it adds."""
        return self._bytes(self._by_w[i][new] & ~self._union)

    def move(self, i: int, new: int) -> None:
        """Instance i goes to bits_w = new."""
        self._union |= self._by_w[i][new]

    def settle(self, bw: list[int]) -> int:
        """The change (<= 0) from the bytes counted to the exact bytes of bits_w = bw."""
        exact = self._exact(bw)
        change = self._bytes(exact) - self._bytes(self._union)
        self._union = exact
        return change


@lru_cache(maxsize=None)
def block_macs(g: Geom) -> int:
    """Multiply-accumulates of instance `g` (program.node_macs of its layers): the stem's
    convolution, or expand + depthwise + project."""
    h, cin, btn, cout, k, s = g
    ho = out_size(h, s)
    if btn == 0:
        return ho * ho * cout * k * k * cin
    return h * h * btn * cin + ho * ho * btn * k * k + ho * ho * cout * btn


def head_macs(h: int, c: int, classes: int) -> int:
    """The head's: the average pool's sums (h * h * c) and the classifier (c * classes)."""
    return h * h * c + c * classes
