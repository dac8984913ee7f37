"""The registry of qetool's own kernels (docs/kernels.md): for each op the C function and its
helpers (after the model's name), the weight layout it reads, what it accepts, its planned
scratch and its cost terms (docs/latency.md). Render, plan, the code-size tool, the search's
cost and the latency model read it, no parallel tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from qetool.errors import QetoolError

CONV1X1_TILE = 8
"""Output pixels a 1x1 kernel computes together: each unpacked weight feeds at least this many
MACs (more with room above the scratch, docs/kernels.md)."""


def _ceil4(n: int) -> int:
    return (n + 3) // 4 * 4


def dw_weight_words(kernel: int) -> int:
    """int32 words of one depthwise channel's weights in the kernel's scratch: per kernel row,
    two for each group of four taps and for a last group of two or three, one for a last single
    tap."""
    return kernel * (2 * (kernel // 4) + (0, 1, 2, 2)[kernel % 4])


def _conv_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """A whole tile group, S = SUBTILES tiles of T = CONV1X1_TILE output pixels' receptive
    fields, and one weight row as int16 pairs: 2 * (S * T + 1) * ceil4(k * k * Cin). The stem
    is seldom the network's memory peak, so the group costs no arena in practice, and each
    weight row is unpacked once per S * T pixels."""
    return 2 * (SUBTILES * CONV1X1_TILE + 1) * _ceil4(kernel * kernel * cin)


def _conv1x1_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One tile of T = CONV1X1_TILE pixels' inputs and one weight row as int16 pairs:
    2 * (T + 1) * ceil4(Cin)."""
    return 2 * (CONV1X1_TILE + 1) * _ceil4(cin)


def _dwconv_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One padded input channel plane as uint8 and four spare bytes, rounded up to 4, then the
    channel's weights: ceil4(Hp * Wp + 4) + 4 * dw_weight_words(k)."""
    t, b, left, r = pad
    return _ceil4((h + t + b) * (w + left + r) + 4) + 4 * dw_weight_words(kernel)


def _head_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One int32 sum per channel: 4 * Cin."""
    return 4 * cin


@dataclass(frozen=True)
class LayerShape:
    """What a kernel's instruction count depends on (docs/latency.md): the op, kernel size,
    stride, channels, input and output sizes in pixels, padding (top, bottom, left, right), the
    bits of its input, weights, output and residual (0: none), whether the input is signed,
    and its room: the bytes of free arena around its scratch while it runs (the scratch span)."""

    op: str
    kernel: int
    stride: int
    cin: int
    cout: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int
    pad: tuple[int, int, int, int]
    bits_in: int
    bits_w: int
    bits_out: int
    bits_res: int
    signed_in: bool
    room: int


SUBTILES = 4
"""At most this many 8-pixel sub-tiles per 1x1 or stem tile (QE_SUBTILES in the kernels);
packed tiles, half the words, twice as many (tile_config)."""


def subtiles(room: int, words: int, extra: int, cap: int = SUBTILES) -> int:
    """Sub-tiles of `words` int32 words that fit `room` bytes beside `extra` more words, at most
    `cap` (qe_subtiles in templates/kernels.c.j2)."""
    n = (room // 4 - extra) // words if room // 4 >= extra + words else 0
    return min(n, cap)


def _tile_shape(pairs: int, packed: bool) -> tuple[int, int]:
    """A sub-tile's words and the sub-tiles' cap: packed tiles straight from the codes hold a
    pixel's four channels a word, half the int16 pairs, so the same bytes buy twice as many."""
    return (pairs // 2 if packed else pairs) * CONV1X1_TILE, 2 * SUBTILES if packed else SUBTILES


def tile_config(room: int, pairs: int, packed: bool = False) -> tuple[int, bool]:
    """The tile engine in `room` bytes (the scratch span) for rows of `pairs` int16 pairs (packed:
    a packed 1x1 straight from the codes, packed_tiles): its sub-tiles (at least the one the
    planned scratch holds) and whether two channels a pass fit, which takes two rows and both
    channels' sums of a tile group (as conv1x1_hwc decides)."""
    sub, cap = _tile_shape(pairs, packed)
    tiles = max(1, subtiles(room, sub, pairs, cap))
    return tiles, subtiles(room, sub + 2 * CONV1X1_TILE, 2 * pairs, cap) == tiles


def most_room(pairs: int, packed: bool = False) -> int:
    """The smallest room in bytes that gives the tile engine its most sub-tiles and two channels
    a pass (tile_config)."""
    sub, cap = _tile_shape(pairs, packed)
    return 4 * (2 * pairs + cap * (sub + 2 * CONV1X1_TILE))


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


PK_HELPERS = ("pk_fold", "pk_tile", "pk_row", "pk_sums2", "pk_channel", "dot2x4_pk", "dot8_pk", "dot_tail_pk")
"""The 1x1's packed-product functions every packed layer needs (docs/kernels.md); beside them
the input width's `pk_tile_b3`/`pk_tile_b4` and the weight width's `pk_row_b2`/`pk_row_b3`."""


def pk_shift(bits_in: int, bits_w: int) -> int:
    """S, the bit at which a packed SMLAD sums its products: 15 - max(bits_in, bits_w), so that
    x_p + x_q * 2^S and w_q + w_p * 2^S stay within an int16 lane."""
    return 15 - max(bits_in, bits_w)


def pk_packed(bits_in: int, bits_w: int) -> bool:
    """Whether a 1x1 layer runs packed products: inputs of 3 or 4 bits, together with the weights
    at most 6 bits (a3w2, a3w3, a4w2: sums of at least 8 words; a3w4 and a4w3 would run 4 and
    measured slower than the int16 pairs, docs/kernels.md)."""
    return 3 <= bits_in <= 4 and bits_in + bits_w <= 6


def pk_chunk(bits_in: int, bits_w: int, signed_in: bool) -> int:
    """Packed words one sum may run, (2^(S-1) - 1) // (4 P) with P the largest |x * w|:
    (2^bits_in - 1) * 2^(bits_w - 1), or 2^(bits_in + bits_w - 2) for signed inputs; 0 when the
    pair is not packed (qe_pk_chunk)."""
    if not pk_packed(bits_in, bits_w):
        return 0
    x = 1 << (bits_in - 1) if signed_in else (1 << bits_in) - 1
    return ((1 << (pk_shift(bits_in, bits_w) - 1)) - 1) // (4 * (x << (bits_w - 1)))


def packed_tiles(s: LayerShape) -> bool:
    """Whether a layer's tiles are packed words straight from the codes (a packed 1x1 with
    Cin % 8 == 0): the tile engine's shape then differs (tile_config)."""
    return s.op == "conv1x1" and pk_packed(s.bits_in, s.bits_w) and s.cin % 8 == 0


def _codes(bits: int, n: int) -> str:
    """The regime a row of n codes is read in: 8-bit words (b8), byte-aligned groups of eight
    (g<bits>) or the sequential reader (r, about the same cost at every width)."""
    if bits == 8 and n % 4 == 0:
        return "b8"
    return f"g{bits}" if n % 8 == 0 else "r"


def _width(bits: int) -> str:
    """Byte codes (b8) or narrower ones (bits), where only that matters."""
    return "b8" if bits == 8 else "bits"


def _paired(cout: int, both: int, bits_out: int) -> int:
    """Channels of the first `both` (two a pass) whose codes the pass stores two at a time
    (pair_b<bits>): narrower than 8 bits, Cout * bits whole bytes, the pair of channel o (even) and
    o + 1 within two bytes from bit (o * bits) mod 8."""
    if bits_out >= 8 or cout * bits_out % 8:
        return 0
    return 2 * sum(1 for o in range(0, both, 2) if o * bits_out % 8 + 2 * bits_out <= 16)


def _tile_terms(pre: str, npx: int, cin: int, cout: int, bits_w: int, bits_out: int, bits_res: int,
                tiles: int, two: bool, nib: bool, w8: bool, chunk: int = 0) -> dict[str, float]:
    """The tile engine's terms (1x1 and the stem's tiles): per tile group; per channel and group
    (its requantization constants and weight row); per weight pair unpacked (by the row's
    regime; rows unpacked one channel a pass cost a little more) and, packed (`chunk` words a
    sum, pk_chunk), per packed word of a row straight from the codes or else per word folded;
    per dot-product call and pair or packed word (by kind) and per packed sum; per output (byte
    codes, 4-bit codes paired into bytes, other narrower ones paired or alone, a residual) and per
    call of the functions that store them."""
    pairs = 2 * _ceil(cin, 4)
    words = pairs // 2
    pk = "pk" if chunk else ""
    sums = _ceil(words, chunk) if chunk else 0
    groups = _ceil(npx, CONV1X1_TILE * tiles)
    subs = _ceil(npx, CONV1X1_TILE)
    tail = npx - CONV1X1_TILE * (subs - 1)
    direct = w8 or nib  # without `two`, 8- and 4-bit rows are read straight from Flash
    both = 2 * (cout // 2) if two else 0
    flash2 = 2 * (cout // 2) if direct and not two and bits_out == 4 else 0  # two a pass, rows from Flash
    rest = cout - both - flash2
    pair_both = 0 if bits_res else _paired(cout, both, bits_out)  # codes stored two at a time
    paired = pair_both + flash2  # flash2's 4-bit codes always pair
    store = "nib2" if bits_out == 4 else "pair"  # a byte store, or one read-modify-write a pair
    t = {f"{pre}.group": groups, f"{pre}.chan": groups * cout}
    if cout > paired:
        t[f"{pre}.out.{_width(bits_out)}"] = npx * (cout - paired)
    if paired:
        t[f"{pre}.out.{store}"] = npx * paired
    if bits_res:
        t[f"{pre}.res"] = npx * cout
        t[f"{pre}.call.res"] = groups * both + subs * (flash2 + rest)  # one call per channel
    elif bits_out < 8 and both + flash2:  # every pair of a pass calls its width's pair_b<bits>
        t[f"{pre}.call.{store}"] = (groups * both + subs * flash2) // 2
    if bits_out < 8 and not bits_res:  # the narrower codes' own function, per call
        calls = groups * (both - pair_both) + subs * rest
        if calls:
            t[f"{pre}.call.bits"] = calls
    row = f"{pre}.row.{'nib' if nib else _codes(bits_w, cin)}"  # weight pairs unpacked, by regime
    unpacked = both + (0 if direct else rest)
    if chunk and cin % 8 == 0:  # packed rows straight from the codes
        t[f"{pre}.pk.row"] = groups * unpacked * words
    elif unpacked:
        t[row] = groups * unpacked * pairs
        if chunk:  # unpacked, then folded: per packed word and channel
            t[f"{pre}.pk.fold"] = groups * unpacked * words
    if rest and not direct:  # rows unpacked one channel a pass
        t[f"{pre}.row1"] = groups * rest * pairs
    halves = _ceil(npx, CONV1X1_TILE // 2)
    if both:
        t[f"{pre}.dot2x4{pk}"] = both // 2 * halves * (words if chunk else pairs)
        t[f"{pre}.dot2x4{pk}.call"] = both // 2 * halves
        if chunk:
            t[f"{pre}.dot2x4pk.sum"] = both // 2 * halves * sums
    if flash2:
        kind2 = "dot2x4w8" if w8 else "dot2x4w4"
        t[f"{pre}.{kind2}"] = flash2 // 2 * halves * pairs
        t[f"{pre}.{kind2}.call"] = flash2 // 2 * halves
    if rest:
        short = 1 if tail < CONV1X1_TILE // 2 else 0
        kind = "dot8w8" if w8 else "dot8w4" if nib else f"dot8{pk}"
        if short and direct:  # the tail's rows are unpacked, one channel a pass
            t[row] = t.get(row, 0) + rest * pairs
            t[f"{pre}.row1"] = rest * pairs
        t[f"{pre}.{kind}"] = rest * (subs - short) * (words if chunk else pairs)
        t[f"{pre}.{kind}.call"] = rest * (subs - short)
        if chunk:
            t[f"{pre}.dot8pk.sum"] = rest * (subs - short) * sums
        if short:
            t[f"{pre}.tail{pk}"] = rest * tail * (words if chunk else pairs)
            if chunk:
                t[f"{pre}.tailpk.sum"] = rest * tail * sums
    return t


def _conv1x1_terms(s: LayerShape) -> dict[str, float]:
    """1x1: the tile engine, and each sub-tile's inputs unpacked once (per input regime; packed
    tiles per word straight from the codes, or unpacked and then folded per word and pixel)."""
    npx, pairs = s.h_out * s.w_out, 2 * _ceil(s.cin, 4)
    packed = packed_tiles(s)
    tiles, two = tile_config(s.room, pairs, packed)
    two = two and s.cout > 1
    chunk = pk_chunk(s.bits_in, s.bits_w, s.signed_in)
    nib = not chunk and s.bits_w == 4 and s.cin % 8 == 0
    w8 = s.bits_w == 8 and s.cin % 4 == 0
    t = _tile_terms("c1", npx, s.cin, s.cout, s.bits_w, s.bits_out, s.bits_res, tiles, two, nib, w8, chunk)
    subs = _ceil(npx, CONV1X1_TILE)
    t["c1.layer"] = 1
    t["c1.sub"] = subs
    if packed:  # a packed tile straight from the codes
        t["c1.pk.tile"] = subs * pairs // 2
    else:
        t[f"c1.in.{_codes(s.bits_in, s.cin)}"] = subs * pairs
        if chunk:  # unpacked, then folded: eight pixels per packed word
            t["c1.pk.fold"] = t.get("c1.pk.fold", 0) + subs * pairs // 2 * CONV1X1_TILE
    return t


def _conv_terms(s: LayerShape) -> dict[str, float]:
    """The stem: each output pixel's receptive field gathered (per tap, byte codes or narrower;
    pixels past the end of the last tile gather zeros), then the tile engine."""
    npx, taps = s.h_out * s.w_out, s.kernel * s.kernel * s.cin
    pairs = 2 * _ceil(taps, 4)
    tiles = max(1, subtiles(s.room, pairs * CONV1X1_TILE, pairs))
    padded = _ceil(npx, CONV1X1_TILE * tiles) * CONV1X1_TILE * tiles
    t = {"st.layer": 1, f"st.gather.{_width(s.bits_in)}": padded * taps}
    t.update(_tile_terms("st", npx, taps, s.cout, s.bits_w, s.bits_out, 0, tiles, False, False, False))
    del t["st.row1"]  # every stem row is unpacked one channel a pass: the same count as st.row.*
    return t


def _dwconv_terms(s: LayerShape) -> dict[str, float]:
    """Depthwise: the padded plane cleared once; per channel its plane filled (per input width;
    codes crossing a byte where the bit position moves), its weights into words (per width),
    and its outputs (per kernel size, stride and output kind, 8-bit or narrower: the unrolled
    common plane, two outputs a step at stride 1) and output rows; codes narrower than 8 bits
    cost a masked store, and in the common plane a merge per channel and per output row."""
    c, k = s.cin, s.kernel
    hp, wp = s.h_in + s.pad[0] + s.pad[1], s.w_in + s.pad[2] + s.pad[3]
    t: dict[str, float] = {"dw.layer": 1, "dw.plane": hp * wp, "dw.chan": c,
                           f"dw.w.b{s.bits_w}": c * k * k, "dw.fillrow": c * s.h_in}
    b = s.bits_in
    if c * b % 8:
        t["dw.fill.r"] = c * s.h_in * s.w_in
    else:
        cross = sum(1 for ch in range(c) if (ch * b) % 8 + b > 8)
        t[f"dw.fill.{_width(b)}"] = (c - cross) * s.h_in * s.w_in
        if cross:
            t["dw.fill.x"] = cross * s.h_in * s.w_in
    fast = c * s.bits_out % 8 == 0 and k in (3, 5, 7)
    narrow = "" if s.bits_out == 8 else "n"  # the unrolled planes are a function per output kind
    kind = f"k{k}s{min(s.stride, 2)}{narrow}" if fast else f"plane.k{k}" if k in (3, 5, 7) else "plane"
    outs = s.h_out * s.w_out
    t[f"dw.out.{kind}"] = c * outs * (1 if k in (3, 5, 7) else k * k)
    t[f"dw.row.{kind}"] = c * s.h_out
    if fast and s.stride == 1 and s.w_out % 2:
        t[f"dw.odd.{kind}"] = c * s.h_out
    if s.bits_out != 8:
        t["dw.store.bits"] = c * outs
        if fast:
            t["dw.merge"] = c
            t["dw.merge.row"] = c * s.h_out
    return t


POOL_RUN = 257
"""Pixels of 8-bit codes the head's pool sums in one 16-bit lane (257 * 255 < 2^16)."""


def _head_terms(s: LayerShape) -> dict[str, float]:
    """Head: the average pool's sums (8-bit words per code and per run of POOL_RUN pixels, signed
    codes at the same cost; else the reader per input width), then the classifier."""
    codes = s.h_in * s.w_in * s.cin
    t: dict[str, float] = {"hd.layer": 1, "hd.chan": s.cin, "hd.fc": s.cin * s.cout, "hd.cls": s.cout}
    if s.bits_in != 8 or s.cin % 4:
        t[f"hd.sum.b{s.bits_in}"] = codes
        return t
    t.update({"hd.pool.b8": codes, "hd.pool.run": s.cin // 4 * _ceil(s.h_in * s.w_in, POOL_RUN)})
    return t


def _conv1x1_variants(kernel: int, cin: int, bits_in: int, bits_w: int, bits_out: int,
                      residual: bool) -> frozenset[str]:
    """A 1x1 layer's width helpers: its input width's tile function (tile_nib for 3, 5, 6 and
    7 bits beside nibble weights), its weight width's row function (none for nibble weights, whose
    rows unpack inline), the direct-from-Flash dot products of 8-bit and nibble weights (the
    two-channel pass for 4-bit outputs, which pair into bytes), the packed products' functions
    (pk_packed: no nibble rows then), the residual's outputs, the paired outputs of its width."""
    pk = pk_packed(bits_in, bits_w)
    nib, w8 = not pk and bits_w == 4 and cin % 8 == 0, bits_w == 8 and cin % 4 == 0
    shared = {*(("outputs_res",) if residual else ()), *((f"pair_b{bits_out}",) if bits_out < 8 else ())}
    if pk:  # straight from byte-aligned groups, else unpacked and folded
        aligned = cin % 8 == 0
        return frozenset((*PK_HELPERS, f"pk_tile_b{bits_in}" if aligned else f"tile_b{bits_in}",
                          f"pk_row_b{bits_w}" if aligned else f"row_b{bits_w}", *shared))
    out = {"tile_nib" if nib and bits_in not in (4, 8) else f"tile_b{bits_in}", *shared}
    if not nib:
        out.add(f"row_b{bits_w}")
    if w8 or nib:
        direct = "w8" if w8 else "w4"
        out.add(f"dot8_{direct}")
        if bits_out == 4:
            out.update((f"dot2x4_{direct}", "pass2_direct"))
    return frozenset(out)


def _dwconv_variants(kernel: int, cin: int, bits_in: int, bits_w: int, bits_out: int,
                     residual: bool) -> frozenset[str]:
    """A depthwise layer's unrolled plane for its kernel size and output kind (k = 3, 5, 7;
    narrower codes with the merge); any other kernel takes the generic plane."""
    if kernel not in (3, 5, 7):
        return frozenset()
    return frozenset((f"dw_k{kernel}",) if bits_out == 8 else (f"dw_k{kernel}_bits", "dw_merge"))


def _no_variants(kernel: int, cin: int, bits_in: int, bits_w: int, bits_out: int,
                 residual: bool) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class Kernel:
    """One kernel: the op it runs, its C function and the static helpers it calls (both after
    the model's name; their code counts with the op's in code_sizes.json), its width helpers
    (functions rendered only where a layer needs them, by `variants(kernel, Cin, bits_in, bits_w,
    bits_out, residual)`: code_sizes.json counts each once per model), the order it reads its
    weights in, the kernel sizes and strides it accepts (None: any), whether its input must be
    unsigned, its scratch in bytes before rounding to 4 (arguments: kernel, Cin, H, W,
    padding), and its cost terms: the counts (loop trips, rows, outputs, calls) its instructions
    are a linear function of, by name (docs/latency.md; the coefficients are a board's
    calibration)."""

    op: str
    function: str
    helpers: tuple[str, ...]
    width_helpers: tuple[str, ...]
    variants: Callable[[int, int, int, int, int, bool], frozenset[str]]
    layout: str
    kernels: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    unsigned_input: bool
    scratch: Callable[[int, int, int, int, tuple[int, int, int, int]], int]
    terms: Callable[[LayerShape], dict[str, float]]


REGISTRY: dict[str, Kernel] = {k.op: k for k in (
    Kernel("conv", "conv_hwc", ("gather",), (), _no_variants, "OHWI", None, None, False,
           _conv_scratch, _conv_terms),
    Kernel("conv1x1", "conv1x1_hwc",
           ("dot8", "dot2x4", "dot_tail", "unpack_tile", "unpack_row", "outputs", "outputs_bits",
            "bytes_tail", "read_pairs"),
           (*(f"tile_b{b}" for b in range(3, 9)), "tile_nib", *(f"row_b{b}" for b in range(2, 9)),
            "dot8_w8", "dot8_w4", "dot2x4_w8", "dot2x4_w4", "pass2_direct", *PK_HELPERS,
            "pk_tile_b3", "pk_tile_b4", "pk_row_b2", "pk_row_b3", "outputs_res",
            *(f"pair_b{b}" for b in range(3, 8))),
           _conv1x1_variants,
           "OI", (1,), (1,), False, _conv1x1_scratch, _conv1x1_terms),
    Kernel("dwconv", "dwconv_hwc_inplace", ("dw_channel", "dw_plane", "dw_fill", "dw_weights"),
           (*(f"dw_k{k}{s}" for k in (3, 5, 7) for s in ("", "_bits")), "dw_merge"), _dwconv_variants,
           "CHW", tuple(range(1, 16)), None, True, _dwconv_scratch, _dwconv_terms),
    Kernel("head", "head", ("head_pool", "head_sums"), (), _no_variants, "KC (int8)", None, None,
           False, _head_scratch, _head_terms),
)}
"""qetool's kernels by op. The 1x1 helpers serve the stem's tiles too: both ops are in every
arch.json network."""

ALL_WIDTH_HELPERS = frozenset(h for k in REGISTRY.values() for h in k.width_helpers)
"""Every width helper: what a build for every width renders (the kernel tests, the benches)."""


def layer_variants(op: str, kernel: int, cin: int, bits_in: int, bits_w: int, bits_out: int,
                   residual: bool) -> frozenset[str]:
    """The width helpers one layer needs (Kernel.variants); a model renders the union of its
    layers' (docs/kernels.md)."""
    return REGISTRY[op].variants(kernel, cin, bits_in, bits_w, bits_out, residual)


def kernel(op: str) -> Kernel:
    return REGISTRY[op]


def check_layer(op: str, where: str, kernel_size: int, stride: int, signed_input: bool) -> None:
    """A layer the kernel of `op` cannot run is one clear error (the kernels' own checks at
    entry, in debug builds, are the second line)."""
    k = REGISTRY[op]
    if k.kernels is not None and kernel_size not in k.kernels:
        raise QetoolError(f"{where}: the {op} kernel takes kernels {k.kernels[0]}..{k.kernels[-1]}, "
                          f"not {kernel_size}")
    if k.strides is not None and stride not in k.strides:
        raise QetoolError(f"{where}: the {op} kernel takes stride {k.strides[0]}, not {stride}")
    if k.unsigned_input and signed_input:
        raise QetoolError(f"{where}: the {op} kernel takes unsigned input codes")
