"""Packing and integer arithmetic: property tests against big-integer and exact-rational
references, constant channels, calibration ranges, golden vs fake-quant per layer."""

import random
import re
from fractions import Fraction

import numpy as np
import pytest
from conftest import EXAMPLES
from helpers import random_arch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qetool import arch as A
from qetool import checkpoint
from qetool.compiler import golden, ir, ir_golden
from qetool.compiler.calibrate import random_checkpoint, random_pixels
from qetool.compiler.lower import code_range, fold_channel, lower
from qetool.compiler.pack import pack_bits, unpack_bits
from qetool.errors import QetoolError
from qetool.preprocess import image_codes


def test_bit_order_by_hand():
    # 3-bit codes 1, 2, 3: stream 100 010 110 (LSB first) -> byte0 = 1 | 2<<3 | (3&3)<<6, byte1 = 3>>2
    assert pack_bits(np.array([1, 2, 3]), 3) == bytes([1 | 2 << 3 | 3 << 6, 0])
    # signed 5-bit -1, 5: 11111 then 10100 -> byte0 = 0x1f | (5 & 7) << 5, byte1 = 5 >> 3
    assert pack_bits(np.array([-1, 5]), 5) == bytes([0x1F | 5 << 5, 0])
    assert pack_bits(np.array([-128, 127]), 8) == bytes([0x80, 0x7F])


@given(st.integers(1, 8), st.booleans(), st.data())
@settings(max_examples=200, deadline=None)
def test_pack_unpack_round_trip(bits, signed, data):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    codes = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=64)))
    packed = pack_bits(codes, bits)
    assert len(packed) == -(-len(codes) * bits // 8)
    assert np.array_equal(unpack_bits(packed, bits, len(codes), signed), codes)
    # element e occupies stream bits e*b .. e*b+b-1
    as_int = int.from_bytes(packed, "little")
    for e, c in enumerate(codes.tolist()):
        assert (as_int >> (e * bits)) & ((1 << bits) - 1) == c & ((1 << bits) - 1)


def _bigint_requant(acc, bias, m, n, x, mx, lo, hi):
    v = (acc + bias) * m if m else bias
    v += x * mx
    if n:
        v = (v + (1 << (n - 1))) // (1 << n)  # floor division: an arithmetic shift
    return max(lo, min(hi, v))


@given(st.integers(-2**26, 2**26), st.integers(-2**31 + 1, 2**31 - 1),
       st.integers(-2**31 + 1, 2**31 - 1), st.integers(0, 62), st.integers(-128, 255),
       st.integers(-2**31 + 1, 2**31 - 1), st.integers(3, 8), st.booleans())
@settings(max_examples=500, deadline=None)
def test_requantize_matches_big_integers(acc, bias, m, n, x, mx, bits, signed):
    assume(abs((acc + bias) * m) + abs(x * mx) < 2**62)  # the lowering never emits more (fold_channel)
    lo, hi = code_range(bits, signed)
    q = ir.Requant(np.array([bias]), np.array([m]), np.array([n], np.int8), 0, lo, hi, "single",
                   np.array([mx]))
    got = ir_golden.requantize(np.array([acc], np.int64), q, np.array([x]))
    assert int(got[0]) == _bigint_requant(acc, bias, m, n, x, mx, lo, hi)


@given(st.floats(1e-6, 1.0), st.floats(-50.0, 50.0), st.floats(1e-3, 1.0), st.booleans(),
       st.lists(st.integers(-5000, 5000), min_size=1, max_size=20), st.floats(1e-3, 1.0))
@settings(max_examples=300, deadline=None)
def test_fold_is_within_one_step_of_exact(ratio, b, s_y, neg, accs, s_res):
    # one accumulator unit is at most one output step (|A / s_y| <= 1), as in real layers
    a = (-ratio if neg else ratio) * s_y
    f = fold_channel(a, b, s_y, 5000, s_res, 128)
    for acc in accs:
        x = acc % 97 - 48
        v = (acc + f.bias) * f.m if f.m else f.bias
        v += x * f.mx
        got = (v + (1 << (f.n - 1))) >> f.n if f.n else v
        exact = (Fraction(a) * acc + Fraction(b) + Fraction(s_res) * x) / Fraction(s_y)
        assert abs(got - exact) <= 1 + Fraction(1, 10**3)  # one step, plus M's rounding of acc


def _tiny():
    return A.Arch(12, 3, (A.Row("conv", 3, 2, 3, 5, None, 1, 6, 5),
                          A.Row("mbconv", 3, 1, 5, 5, 9, 2, (5, 4), (3, 6))))


def test_constant_and_negative_gamma_channels():
    arch = _tiny()
    ck = random_checkpoint(arch, 1)
    g = ck.convs["b1.expand"].bn_gamma
    g[0], g[1], g[2], g[3] = 1e-8, -0.7, 0.0, 1e-12
    g = ck.convs["b2.project"].bn_gamma  # a residual project: constant plus x
    g[0], g[2], g[3] = 1e-8, 0.0, -1.3
    m = lower(ck)
    layer = {l.id: l for l in m.layers}
    e, p = layer["b1.expand"], layer["b2.project"]
    assert e.m[1] < 0 and e.m[2] == 0 and e.m[3] == 0
    assert p.m[2] == 0 and p.m[3] < 0
    img = image_codes(random_pixels(arch, 9), m.input_bits)
    tr = golden.run(m, img)
    for al in A.layers(arch):
        fq = golden.fake_quant_layer(ck, al, tr.tensors[al.input],
                                     tr.tensors[al.residual] if al.residual else None)
        assert np.abs(fq - tr.tensors[al.id]).max() <= 1, al.id
    # gamma = 0: the code is beta / step in float64, ReLU6-clamped
    c = ck.convs["b1.expand"]
    want = np.clip(np.floor(np.clip(c.bn_beta[2], 0, 6) / ck.steps["b1.expand"] + 0.5),
                   0, ck.clamps["b1.expand"])
    assert (tr.tensors["b1.expand"][..., 2] == want).all()


@pytest.mark.parametrize("seed", range(6))
def test_golden_vs_fake_quant_per_layer_within_one_step(seed):
    rng = random.Random(seed)
    arch = random_arch(rng)
    ck = random_checkpoint(arch, seed)
    m = lower(ck)
    tr = golden.run(m, image_codes(random_pixels(arch, 50 + seed), m.input_bits))
    for al in A.layers(arch):
        fq = golden.fake_quant_layer(ck, al, tr.tensors[al.input],
                                     tr.tensors[al.residual] if al.residual else None)
        assert np.abs(fq - tr.tensors[al.id]).max() <= 1, al.id


def test_calibrated_codes_use_their_range():
    arch = A.load(EXAMPLES / "paper_256k_1m.json")
    ck = random_checkpoint(arch, 0)
    m = lower(ck)
    ts = A.tensors(arch)
    tr = golden.run(m, image_codes(random_pixels(arch, 77), m.input_bits))
    for layer in m.layers[:-1]:
        y = tr.tensors[layer.id]
        full = (1 << ts[layer.id].bits) - 1
        assert y.max() - y.min() >= full / 2, layer.id


@pytest.mark.parametrize("other, where", [
    (A.Arch(12, 3, (A.Row("conv", 3, 2, 3, 5, None, 1, 6, 5), A.Row("mbconv", 3, 1, 5, 5, 11, 2, (5, 4), (3, 6)))),
     "layers[1].btn: 11 against 9"),
    # the same weight shapes, another network: stride, resolution, bits
    (A.Arch(12, 3, (A.Row("conv", 3, 1, 3, 5, None, 1, 6, 5), A.Row("mbconv", 3, 1, 5, 5, 9, 2, (5, 4), (3, 6)))),
     "layers[0].stride: 1 against 2"),
    (A.Arch(16, 3, _tiny().rows), "resolution: 16 against 12"),
    (A.Arch(12, 3, (A.Row("conv", 3, 2, 3, 5, None, 1, 6, 5), A.Row("mbconv", 3, 1, 5, 5, 9, 2, (5, 5), (3, 6)))),
     "layers[1].bits_a[1]: 5 against 4"),
])
def test_weights_for_another_network_are_refused(tmp_path, other, where):
    path = tmp_path / "w.npz"
    checkpoint.save(random_checkpoint(other, 0), path)
    with pytest.raises(QetoolError, match=re.escape(f"the weights were made for another network: {where} "
                                                    "(weights file against arch.json)")):
        checkpoint.load(path, _tiny())


def test_weights_whose_arrays_contradict_their_own_arch(tmp_path):
    ck = random_checkpoint(_tiny(), 0)
    ck.convs["b1.expand"].w = np.zeros((11, 5, 1, 1), np.int8)
    checkpoint.save(ck, tmp_path / "w.npz")
    with pytest.raises(QetoolError, match=re.escape("b1.expand.w: int8[11, 5, 1, 1], expected int8[9, 5, 1, 1]")):
        checkpoint.load(tmp_path / "w.npz", _tiny())


def test_checkpoint_round_trip(tmp_path):
    arch = _tiny()
    ck = random_checkpoint(arch, 3)
    checkpoint.save(ck, tmp_path / "w.npz")
    back = checkpoint.load(tmp_path / "w.npz", arch)
    assert back.steps == ck.steps and back.clamps == ck.clamps
    assert lower(back).model_hash == lower(ck).model_hash


def test_an_accumulator_beyond_int32_is_refused():
    # a 2048-wide head on a 16 x 16 map: sums of 8-bit codes times 8-bit weights pass 2^31
    arch = A.Arch(64, 2, (A.Row("conv", 3, 2, 3, 8, None, 1, 8, 8),
                          A.Row("mbconv", 3, 2, 8, 2048, 16, 1, 8, 8)))
    with pytest.raises(QetoolError, match=r"head: its sums of products can reach [\d,]+, beyond the kernels' int32"):
        lower(random_checkpoint(arch, 0))
