"""Single layers through the optimized kernels and the reference ones (build/src/ref/), built for
the host with the portable definitions of the DSP instructions: both must leave the same arena,
outside the scratch, for every path the optimized kernels take (8-bit, nibble and generic
weights, 8-bit and packed inputs, channel counts that are and are not multiples of 4 and 8,
short tails, tiles grown into room above the scratch, two-channel passes, packed products
(one and two channels a pass, rows of several packed sums, tails, up to twice the sub-tiles),
two channels' codes stored as a pair (4-bit ones a byte, 3-bit ones within a byte or across
two, 5 to 7 bits across two; signed and unsigned), codes saturated at 8 bits and codes that
cross a byte, the stem's tile groups, shifts below and above 32, constant channels, residuals,
clamps narrower than the code range; the head's pool over 8-bit words and the reader, maps past
a 16-bit run). The reference kernels are bit-exact against the golden model in
test_host_exact.py; whole networks run the optimized ones on the host there and in QEMU in
test_emulator.py."""

import random
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from qetool import arch as A
from qetool.compiler.arch_graph import graph_of, graph_plan
from qetool.compiler.calibrate import random_checkpoint
from qetool.compiler.kernels import (ALL_WIDTH_HELPERS, POOL_RUN, SUBTILES, layer_variants, pk_chunk, pk_packed,
                                     pk_shift, tile_config)
from qetool.compiler.hostrun import WARNINGS
from qetool.compiler.lower import code_range, lower
from qetool.compiler.pack import act_bytes, kernel_order, pack_padded
from qetool.compiler.plan import plan, scratch_bytes
from qetool.compiler.render import REFERENCE_DIR, render_sources

from conftest import EXAMPLES

RUNNER = Path(__file__).with_name("kernel_runner.c")
KIND = {"conv1x1": 0, "dwconv": 1, "conv": 2, "head": 3}
CASES = {"conv1x1": 300, "dwconv": 120, "conv": 120, "head": 80}
"""Random layers per op; the 1x1 has the most paths (test_the_cases_reach_every_path)."""


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    """The runner built with the optimized kernels (every width helper) and with the reference
    ones."""
    tmp = tmp_path_factory.mktemp("kernels")
    arch = A.load(EXAMPLES / "paper_256k_1m.json")
    model = lower(random_checkpoint(arch, 0))
    g = graph_of(model)
    sources = render_sources(g, graph_plan(g, plan(arch)), model.model_hash, widths=ALL_WIDTH_HELPERS)
    out = {}
    for kind, name in (("opt", "qe_model_kernels.c"), ("ref", f"{REFERENCE_DIR}/qe_model_kernels.c")):
        d = tmp / kind
        d.mkdir()
        (d / "qe_model_kernels.h").write_text(sources["qe_model_kernels.h"])
        (d / "qe_model_kernels.c").write_text(sources[name])
        exe = d / "runner"
        subprocess.run(["gcc", *WARNINGS, "-O2", "-DQE_DEBUG", f"-I{d}", "-o", str(exe), str(RUNNER),
                        str(d / "qe_model_kernels.c")], check=True)
        out[kind] = exe
    return out


def random_layer(rng: random.Random, op: str) -> dict:
    """A random layer of `op` and its packed data, laid out in one small arena."""
    head = op == "head"
    k = 1 if op in ("conv1x1", "head") else rng.choice((3, 5, 7))
    s = 1 if op in ("conv1x1", "head") else rng.choice((1, 2))
    cin = rng.choice((3, 5, 8, 12, 16, 24, 30, 32, 84, 160)) if op != "conv" else rng.choice((1, 3, 4))
    cout = cin if op == "dwconv" else rng.choice((1, 2, 4, 7, 8, 16, 24))
    h, w = rng.choice((1, 3, 5, 7, 9, 12)), rng.choice((1, 2, 5, 8, 11))
    if head and rng.random() < 0.2:  # more pixels than a 16-bit run of 8-bit codes holds
        h, w = 17, 16
    ho, wo = (1, 1) if head else ((h - 1) // s + 1, (w - 1) // s + 1)
    ph, pw = max((ho - 1) * s + k - h, 0), max((wo - 1) * s + k - w, 0)
    pad = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    bx, bw, by = rng.randint(3, 8), rng.randint(2, 8), rng.randint(3, 8)
    if op == "dwconv":
        by = bx
    if head:  # int8 weights and logits; inputs mostly of 8 bits, as arch.json heads have
        bx = 8 if rng.random() < 0.7 else bx
        bw, by = 8, 8
    sx = op in ("conv1x1", "head") and rng.random() < 0.5
    residual = op == "conv1x1" and rng.random() < 0.3
    sy = head or (rng.random() < 0.5 and op == "conv1x1")
    lo, hi = code_range(by, sy)
    if rng.random() < 0.3:
        hi = rng.randint(lo + 1, hi)
    nr = np.random.default_rng(rng.randrange(1 << 30))
    x = nr.integers(*code_range(bx, sx), endpoint=True, size=(h, w, cin))
    wts = nr.integers(-(1 << (bw - 1)), (1 << (bw - 1)) - 1, endpoint=True,
                      size=(cout, 1 if op == "dwconv" else cin, k, k))
    shifts = (0, 7, 20, 31, 32, 33, 36, 40, 44, 50)
    one = rng.choice(shifts) if rng.random() < 0.3 else None  # a layer's channels often share n
    shift = np.array([one if one is not None else rng.choice(shifts) for _ in range(cout)], np.int8)
    mult = np.array([rng.choice((0, rng.randint(1, 1 << 20), rng.randint(1 << 30, (1 << 31) - 1)))
                     * rng.choice((1, -1)) for _ in range(cout)], np.int32)
    bias = nr.integers(-5000, 5000, size=cout).astype(np.int32)
    if rng.random() < 0.2:  # the int32 extremes: a requantization's largest `round`
        bias[nr.random(cout) < 0.5] = rng.choice((-(1 << 31) + 1, (1 << 31) - 1))
    in_b = act_bytes(h, w, cin, bx)
    out_b = act_bytes(1, 1, cout + 1, 8) if head else act_bytes(ho, wo, cout, by)  # the head: logits, class
    res_bits, res_signed = (rng.randint(3, 8), rng.random() < 0.5) if residual else (0, False)
    res = nr.integers(*code_range(res_bits, res_signed), endpoint=True, size=(ho, wo, cout)) if residual else None
    mres = nr.integers(-(1 << 20), 1 << 20, size=cout).astype(np.int32) if residual else None
    out_off = 0 if op == "dwconv" else in_b
    res_off = in_b if op == "dwconv" else out_off + out_b  # a depthwise output overwrites its input
    scratch_off = res_off + (act_bytes(ho, wo, cout, res_bits) if residual else 0)
    base = scratch_bytes(op, k, cin, h, w, pad)
    room = base + rng.choice((0, 0, 4, base, 8 * base, 2000))
    arena = bytearray(scratch_off + room)
    arena[:in_b] = pack_padded(x, bx)
    if residual:
        arena[res_off:scratch_off] = pack_padded(res, res_bits)
    rnd = nr.integers(0, 256, size=room, dtype=np.uint8).tobytes()
    arena[scratch_off:] = rnd
    if op != "dwconv":
        arena[out_off:out_off + out_b] = nr.integers(0, 256, size=out_b, dtype=np.uint8).tobytes()
    packed = pack_padded(kernel_order(op, wts), bw)
    fields = (KIND[op] | len(packed) << 8, h, w, cin, ho, wo, cout, k, s,
              pad[0] | pad[1] << 8 | pad[2] << 16 | pad[3] << 24, bx, bw, by, res_bits, int(sx),
              int(res_signed), lo & 0xFFFFFFFF, hi & 0xFFFFFFFF, 0 | out_off << 16,
              res_off | scratch_off << 16, room, len(arena))
    blob = (struct.pack("<22I", *fields) + bytes(arena) + packed + bias.tobytes() + mult.tobytes()
            + shift.tobytes() + (mres.tobytes() if residual else b""))
    return dict(blob=blob, scratch_off=scratch_off, op=op, cin=cin, cout=cout, h=ho, w=wo, bx=bx,
                bw=bw, by=by, sx=sx, sy=sy, full=(lo, hi) == code_range(by, sy), shift=shift, residual=residual,
                room=room)


def run(exe, tmp_path, blob: bytes) -> bytes:
    (tmp_path / "case.bin").write_bytes(blob)
    subprocess.run([str(exe), str(tmp_path / "case.bin"), str(tmp_path / "arena.bin")], check=True)
    return (tmp_path / "arena.bin").read_bytes()


@pytest.mark.parametrize("op", ["conv1x1", "dwconv", "conv", "head"])
def test_optimized_kernels_equal_the_reference(runners, tmp_path, op):
    rng = random.Random(zlib.crc32(op.encode()))
    for i in range(CASES[op]):
        case = random_layer(rng, op)
        opt, ref = (run(runners[k], tmp_path, case["blob"])[:case["scratch_off"]] for k in ("opt", "ref"))
        assert opt == ref, f"{op} case {i}"


def output_paths(case: dict) -> set[str]:
    """The output paths of a 1x1 case (docs/kernels.md): two-channel passes with room, the
    byte pair of 4-bit codes, codes saturated at 8 bits (n >= 40 - bits), narrower codes that
    cross a byte, a residual at fixed bit positions, weights straight from Flash (two channels a
    pass for 4-bit codes) and a short tail unpacked; packed products one and two channels a pass,
    over several sums and in a tail."""
    seen = set()
    cin, cout, by, shift = case["cin"], case["cout"], case["by"], case["shift"]
    packed = pk_packed(case["bx"], case["bw"]) and cin % 8 == 0
    two = cout > 1 and tile_config(case["room"], 2 * -(-cin // 4), packed)[1]
    sat = [case["full"] and n >= 40 - by for n in shift]
    pairs = [case["full"] and 32 <= n and (n <= 40 or not case["sy"]) for n in shift]  # qe_pair_kind
    if two and not case["residual"]:
        seen.add("two")
        for o in range(0, cout - 1, 2):
            at = o * by % 8
            if by < 8 and cout * by % 8 == 0 and at + 2 * by <= 16 and pairs[o] and pairs[o + 1]:
                seen.add(f"pair{by}" if by in (3, 4) else "pair5-7")
                seen.add("pair, wide" if at + 2 * by > 8 and by == 3 else "pair")
                seen.add("pair, signed" if case["sy"] else "pair, unsigned")
    if by < 8 and cout * by % 8 == 0 and any(sat):
        seen.add("sat")
        if any((o * by) % 8 + by > 8 for o in range(cout)):
            seen.add("wide")
    if case["residual"] and cout * by % 8 == 0:
        seen.add("residual lanes")
    chunk = pk_chunk(case["bx"], case["bw"], case["sx"])
    if chunk:
        seen.add("packed two" if two else "packed")
        if tile_config(case["room"], 2 * -(-cin // 4), packed)[0] > SUBTILES:
            seen.add("packed, more sub-tiles")
        if -(-cin // 4) > chunk:
            seen.add("packed sums")
        if not two and (case["h"] * case["w"]) % 8 and (case["h"] * case["w"]) % 8 < 4:
            seen.add("packed tail")
    elif not two and cin % 8 == 0 and case["bw"] in (4, 8):
        seen.add("direct pairs" if by == 4 and cout > 1 else "direct")
        if (case["h"] * case["w"]) % 8 and (case["h"] * case["w"]) % 8 < 4:
            seen.add("direct tail")
    return seen


def test_the_cases_reach_every_path():
    """The random layers above cover the paths named in the module docstring."""
    rng = random.Random(zlib.crc32(b"conv1x1"))
    seen = set()
    for _ in range(CASES["conv1x1"]):
        case = random_layer(rng, "conv1x1")
        blob = case["blob"]
        v = struct.unpack_from("<22I", blob)
        cin, bw, bx = v[3], v[11], v[10]
        seen.add(("w8" if bw == 8 and cin % 4 == 0 else "nib" if bw == 4 and cin % 8 == 0
                  else "groups" if cin % 8 == 0 else "reader",
                  "x8" if bx == 8 and cin % 4 == 0 else "x"))
        seen.add("room" if v[20] > scratch_bytes("conv1x1", 1, cin, 1, 1, (0, 0, 0, 0)) * 2 else "tight")
        seen.add("residual" if v[13] else "plain")
        seen |= output_paths(case)
    assert {"w8", "nib", "groups", "reader"} <= {s[0] for s in seen if isinstance(s, tuple)}
    assert {"room", "tight", "residual", "plain"} <= seen
    assert {"two", "pair3", "pair4", "pair5-7", "pair, wide", "pair, signed", "pair, unsigned", "sat", "wide",
            "residual lanes", "direct", "direct pairs", "direct tail"} <= seen
    assert {"packed", "packed two", "packed sums", "packed tail", "packed, more sub-tiles"} <= seen


def test_the_head_cases_reach_every_pool():
    """The random heads above take each of the pool's paths (docs/kernels.md), signed and
    unsigned: 8-bit words, also over more pixels than one 16-bit run holds, the reader."""
    rng = random.Random(zlib.crc32(b"head"))
    seen = set()
    for _ in range(CASES["head"]):
        v = struct.unpack_from("<22I", random_layer(rng, "head")["blob"])
        h, w, cin, bx, signed = v[1], v[2], v[3], v[10], v[14]
        sign = "signed" if signed else "unsigned"
        if bx == 8 and cin % 4 == 0:
            seen.add(("words, long" if h * w > POOL_RUN else "words", sign))
        else:
            seen.add(("reader", sign))
    assert seen == {(path, sign) for path in ("words", "words, long", "reader") for sign in ("signed", "unsigned")}



def test_each_width_pair_alone_renders_kernels_that_compile_cleanly(tmp_path):
    """A model renders only the width helpers its layers need (kernels.layer_variants), so every
    dispatch must compile without a warning when it names few: one block's helpers (expand,
    depthwise, a residual project; Cin 16, nibble rows at 4 bits, or 12) for each of the 42
    (bits_a, bits_w) pairs, the depthwise kernel 3, 5, 7 or 9 (no unrolled plane)."""
    arch = A.load(EXAMPLES / "paper_256k_1m.json")
    model = lower(random_checkpoint(arch, 0))
    g = graph_of(model)
    gp = graph_plan(g, plan(arch))
    pairs = [(a, w) for a in range(3, 9) for w in range(2, 9)]
    for i, (a, w) in enumerate(pairs):
        cin, k = (16, 12)[i % 2], (3, 5, 7, 9)[i % 4]
        widths = (layer_variants("conv1x1", 1, cin, a, w, a, False) | layer_variants("dwconv", k, cin, a, w, a, False)
                  | layer_variants("conv1x1", 1, cin, a, w, a, True))
        sources = render_sources(g, gp, model.model_hash, widths=widths)
        for name in ("qe_model_kernels.h", "qe_model_kernels.c"):
            (tmp_path / name).write_text(sources[name])
        r = subprocess.run(["gcc", *WARNINGS, "-fsyntax-only", f"-I{tmp_path}", str(tmp_path / "qe_model_kernels.c")],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"a{a}/w{w}, Cin {cin}, k {k}: {sorted(widths)}\n{r.stderr}"


def test_packed_sums_fit_their_fields_and_the_c_agrees(tmp_path):
    """Packed products (docs/kernels.md): for every packed pair, signed inputs or not, both lanes'
    values stay within int16 and a sum of `pk_chunk` words keeps its low field in [0, 2^S) and
    its dot product in [-2^(S-1), 2^(S-1)); the kernels' qe_pk_chunk equals kernels.pk_chunk for
    every pair (0: not packed), so the latency model and the C take the same path."""
    expected = []
    for a in range(2, 9):
        for w in range(2, 9):
            for signed in (0, 1):
                n = pk_chunk(a, w, bool(signed))
                expected.append(f"{a} {w} {signed} {n}")
                if not n:
                    assert not pk_packed(a, w)
                    continue
                s = pk_shift(a, w)
                x_lo, x_hi = code_range(a, bool(signed))
                w_lo, w_hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
                assert -(1 << 15) <= x_lo * ((1 << s) + 1) and x_hi * ((1 << s) + 1) < 1 << 15
                assert -(1 << 15) <= w_lo * ((1 << s) + 1) and w_hi * ((1 << s) + 1) < 1 << 15
                p = max(abs(x_lo), x_hi) * -w_lo
                assert 4 * n * p < 1 << (s - 1) and 2 * n * p < 1 << (s - 1)
                assert 4 * (n + 1) * p >= 1 << (s - 1)  # the longest such sum
    assert {(a, w) for a in range(3, 9) for w in range(2, 9) if pk_packed(a, w)} == {
        (3, 2), (3, 3), (4, 2)}
    arch = A.load(EXAMPLES / "paper_256k_1m.json")
    model = lower(random_checkpoint(arch, 0))
    g = graph_of(model)
    sources = render_sources(g, graph_plan(g, plan(arch)), model.model_hash, widths=ALL_WIDTH_HELPERS)
    for name in ("qe_model_kernels.h", "qe_model_kernels.c"):
        (tmp_path / name).write_text(sources[name])
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "qe_model_kernels.c"\nint main(void) {\n'
        '    for (uint32_t a = 2; a <= 8; a++) for (uint32_t w = 2; w <= 8; w++) for (uint32_t s = 0; s < 2; s++)\n'
        '        printf("%u %u %u %u\\n", (unsigned)a, (unsigned)w, (unsigned)s, (unsigned)qe_pk_chunk(a, w, s));\n'
        '    return 0;\n}\n')
    subprocess.run(["gcc", "-O1", f"-I{tmp_path}", "-o", str(tmp_path / "chunks"), str(tmp_path / "main.c")], check=True)
    out = subprocess.run([str(tmp_path / "chunks")], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:-1] == expected
