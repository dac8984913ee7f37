"""The search space (the paper's appendix C) and its genome.

A genome is a tuple of rows `(kernel, stride, cin, cout, btn, bits_a, bits_w)` of plain ints
(bits are tuples, one value per repetition, so repeat = len(bits_a)); row 0 is the stem
(btn = 0). MobileNetV2 inverted-bottleneck blocks in 5 down-sampling stages: the stem and the
first row of each of 4 more stages have stride 2 (overall stride 32); a stage may hold more
stride-1 rows. Mutations: kernel in {3, 5, 7}; width scaled by {2.0, 1.5, 1.25, 0.8, 0.6, 0.5};
expansion ratio btn / cin kept in [1.5, 6]; depth +-1 or +-2; a stride-1 row added to or removed
from a stage; one instance's weight bits. Widths are multiples of 8.
"""

from __future__ import annotations

import random

from qetool.arch import Arch, Row, blocks
from qetool.search.cost import Geom

BITS_A = (3, 4, 5, 6, 8)
"""Activation bits the search draws (never 2)."""
BITS_W = (2, 3, 4, 5, 6, 8)
"""Weight bits the search draws."""
KERNELS = (3, 5, 7)
WIDTH_SCALES = (2.0, 1.5, 1.25, 0.8, 0.6, 0.5)
DEPTH_STEPS = (-2, -1, 1, 2)
EXPANSION = (1.5, 6.0)
MAX_REPEAT = 4
MAX_ROWS_PER_STAGE = 3
WIDTH = (8, 512)
STEM_WIDTH = (8, 64)

GenomeRow = tuple[int, int, int, int, int, tuple[int, ...], tuple[int, ...]]
Genome = tuple[GenomeRow, ...]


def initial_genome(in_channels: int = 3) -> Genome:
    """Small, narrow blocks that fit any budget the search meets: stem 8 wide, four stages."""
    def row(k: int, s: int, cin: int, cout: int, btn: int) -> GenomeRow:
        return (k, s, cin, cout, btn, (4,), (4,))

    return (row(3, 2, in_channels, 8, 0), row(3, 2, 8, 16, 24), row(3, 2, 16, 24, 48),
            row(3, 2, 24, 40, 64), row(3, 2, 40, 64, 96))


def instances(genome: Genome, resolution: int) -> list[Geom]:
    """Geometry of every block instance (stem first), as arch.blocks computes it."""
    out: list[Geom] = []
    h = resolution
    for k, s, cin, cout, btn, ba, _ in genome:
        for rep in range(len(ba)):
            st = s if rep == 0 else 1
            out.append((h, cin if rep == 0 else cout, btn, cout, k, st))
            h = (h - 1) // st + 1
    return out


def flat_bits(genome: Genome) -> tuple[list[int], list[int]]:
    """bits_a and bits_w of every instance, stem first."""
    ba: list[int] = []
    bw: list[int] = []
    for row in genome:
        ba.extend(row[5])
        bw.extend(row[6])
    return ba, bw


def with_flat_bits(genome: Genome, ba: list[int], bw: list[int]) -> Genome:
    """`genome` with per-instance bits replaced."""
    out, i = [], 0
    for k, s, cin, cout, btn, rba, _ in genome:
        n = len(rba)
        out.append((k, s, cin, cout, btn, tuple(ba[i:i + n]), tuple(bw[i:i + n])))
        i += n
    return tuple(out)


def to_arch(genome: Genome, resolution: int, num_classes: int) -> Arch:
    """The arch.json form; a row's bits become an int when its repetitions agree."""
    rows = []
    for r, (k, s, cin, cout, btn, ba, bw) in enumerate(genome):
        rows.append(Row("conv" if r == 0 else "mbconv", k, s, cin, cout, btn or None, len(ba),
                        ba[0] if len(set(ba)) == 1 else ba, bw[0] if len(set(bw)) == 1 else bw))
    return Arch(resolution, num_classes, tuple(rows), genome[0][2])


def from_arch(arch: Arch) -> Genome:
    """The genome of an arch (any arch, not only those the search space reaches)."""
    bl = blocks(arch)
    out, i = [], 0
    for row in arch.rows:
        inst = bl[i:i + row.repeat]
        i += row.repeat
        out.append((row.kernel, row.stride, row.cin, row.cout, row.btn or 0,
                    tuple(b.bits_a for b in inst), tuple(b.bits_w for b in inst)))
    return tuple(out)


def _round8(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(x / 8.0)) * 8))


def _btn_range(cin: int) -> tuple[int, int]:
    lo = -(-int(EXPANSION[0] * cin) // 8) * 8
    return lo, max(lo, int(EXPANSION[1] * cin) // 8 * 8)


def _clamp_btn(row: list) -> None:
    lo, hi = _btn_range(row[2])
    row[4] = min(hi, max(lo, row[4]))


def _stage_rows(rows: list[list], r: int) -> int:
    """How many rows the stage of row r holds (a stage starts at a stride-2 row)."""
    start = r
    while rows[start][1] != 2:
        start -= 1
    end = start + 1
    while end < len(rows) and rows[end][1] != 2:
        end += 1
    return end - start


def mutate(genome: Genome, rng: random.Random) -> Genome:
    """One random mutation of `genome` (a new genome; the stem's kernel stays 3)."""
    rows = [list(r) for r in genome]
    n = len(rows)
    op = rng.randrange(6)
    if op == 0:  # kernel
        r = rng.randrange(1, n)
        rows[r][0] = rng.choice([k for k in KERNELS if k != rows[r][0]])
    elif op == 1:  # width of one row; the next row's input follows
        r = rng.randrange(n)
        lo, hi = STEM_WIDTH if r == 0 else WIDTH
        rows[r][3] = _round8(rows[r][3] * rng.choice(WIDTH_SCALES), lo, hi)
        if r + 1 < n:
            rows[r + 1][2] = rows[r][3]
            _clamp_btn(rows[r + 1])
    elif op == 2:  # expansion ratio, kept in EXPANSION
        r = rng.randrange(1, n)
        rows[r][4] = int(round(rows[r][4] * rng.choice(WIDTH_SCALES) / 8.0)) * 8
        _clamp_btn(rows[r])
    elif op == 3:  # depth
        r = rng.randrange(1, n)
        reps = min(MAX_REPEAT, max(1, len(rows[r][5]) + rng.choice(DEPTH_STEPS)))
        for j in (5, 6):
            bits = rows[r][j]
            rows[r][j] = bits[:reps] + (bits[-1],) * (reps - len(bits))
    elif op == 4:  # add a stride-1 row after row r, or remove a stride-1 row
        r = rng.randrange(1, n)
        if rows[r][1] == 1 and rng.random() < 0.5:
            removed = rows.pop(r)
            if r < len(rows):
                rows[r][2] = removed[2]
                _clamp_btn(rows[r])
        elif _stage_rows(rows, r) < MAX_ROWS_PER_STAGE:
            k, _, _, cout, btn, ba, bw = rows[r]
            new = [k, 1, cout, cout, btn, ba[-1:], bw[-1:]]
            _clamp_btn(new)
            rows.insert(r + 1, new)
    else:  # one instance's weight bits
        r = rng.randrange(n)
        i = rng.randrange(len(rows[r][6]))
        bw = list(rows[r][6])
        bw[i] = rng.choice([b for b in BITS_W if b != bw[i]])
        rows[r][6] = tuple(bw)
    return tuple(tuple(r) for r in rows)  # type: ignore[return-value]


def random_arch(seed: int, resolution: int = 128, num_classes: int = 2) -> Arch:
    """A network of this space for tests and benches: a random walk of 20-60 of the search's own
    mutations from its start, then random bits for every instance."""
    rng = random.Random(seed)
    g = initial_genome()
    for _ in range(rng.randint(20, 60)):
        g = mutate(g, rng)
    ba, bw = flat_bits(g)
    g = with_flat_bits(g, [rng.choice(BITS_A) for _ in ba], [rng.choice(BITS_W) for _ in bw])
    return to_arch(g, resolution, num_classes)
