"""TFLM's integer arithmetic (docs/arithmetic.md, imported models), in numpy int64: the
fixed-point helpers of TFLite's kernel_util and gemmlowp that TFLM's reference kernels use.

A real multiplier r > 0 is a Q31 mantissa M and a shift e with r = M * 2^(e - 31)
(QuantizeMultiplier). Applying it (MultiplyByQuantizedMultiplier) rounds twice:
    y = rounding_divide_by_pot(srdhm(x * 2^max(e, 0), M), max(-e, 0))
srdhm(a, b) = (a * b + nudge) / 2^31 truncated toward zero (nudge 2^30, or 1 - 2^30 below 0),
saturating at a = b = -2^31; rounding_divide_by_pot rounds half away from zero.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_away(x: float) -> int:
    """C's round(): half away from zero (TfLiteRound)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(r: float) -> tuple[int, int]:
    """(M, e) with r ~ M * 2^(e - 31), M in [2^30, 2^31) (TFLite's QuantizeMultiplier): the frexp
    mantissa rounded half away from zero to Q31; a mantissa of 2^31 halves and bumps e; e < -31
    gives (0, 0), as does r = 0."""
    if r == 0.0:
        return 0, 0
    q, e = math.frexp(r)
    m = round_away(q * (1 << 31))
    if m == 1 << 31:
        m //= 2
        e += 1
    if e < -31:
        return 0, 0
    return m, e


def srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul of int32 values (int64 arrays in, int64 out)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))   # C division: toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """x / 2^exponent rounded half away from zero (gemmlowp's RoundingDivideByPOT)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def wrap32(x: np.ndarray) -> np.ndarray:
    """int32 two's-complement wrap-around of int64 values."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply_by_quantized_multiplier(x: np.ndarray, m: np.ndarray | int,
                                     e: np.ndarray | int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier, elementwise (m, e broadcast per channel)."""
    e = np.asarray(e, dtype=np.int64)
    left = np.maximum(e, 0)
    right = np.maximum(-e, 0)
    return rounding_divide_by_pot(srdhm(wrap32(np.asarray(x, np.int64) << left), m), right)


def saturating_shift_left(x: np.ndarray, n: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent n."""
    x = np.asarray(x, dtype=np.int64)
    threshold = (1 << (31 - n)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << n))


def quantize_float(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLM's QUANTIZE to int8: round(x / scale) (float32, half away from zero) + zero point,
    clamped to int8."""
    q = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(q) * np.floor(np.abs(q) + np.float32(0.5))
    return np.clip(r.astype(np.int64) + zero_point, -128, 127)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLM's DEQUANTIZE: float32(double(scale) * (q - zero point))."""
    return (float(np.float32(scale)) * (np.asarray(q, dtype=np.float64) - zero_point)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# gemmlowp fixed point, for the int8 softmax. Q(k) holds k integer bits and 31 - k fraction bits.

def _exp_quarter(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0 in and out (exp_on_interval_between_negative_one_quarter_and_0_excl)."""
    constant_term, one_third = 1895147668, 715827883
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))
"""exp(-2^k) in Q0 for the bits of a negative Q5 argument (gemmlowp's barrel shifter)."""


def exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """exp(a) for a <= 0 given in Q5, result in Q0 (gemmlowp's exp_on_negative_values, 5 integer bits)."""
    a = np.asarray(a, dtype=np.int64)
    frac = 26
    quarter = 1 << (frac - 2)
    a_mod = wrap32((a & (quarter - 1)) - quarter)
    result = _exp_quarter(saturating_shift_left(a_mod, 5))
    remainder = wrap32(a_mod - a)
    for k, mult in _EXP_BARREL:
        result = np.where(remainder & (1 << (frac + k)), srdhm(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """1 / (1 + x) for x in [0, 1) in Q0, result in Q0 (gemmlowp's Newton-Raphson division)."""
    a = np.asarray(a, dtype=np.int64)
    s = a + INT32_MAX
    half_den = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))   # RoundingHalfSum, toward zero
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))            # Q2: 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half_den, x))
        x = wrap32(x + saturating_shift_left(srdhm(x, one_minus), 2))
    return saturating_shift_left(x, 1)


def count_leading_zeros(x: np.ndarray) -> np.ndarray:
    """Leading zero bits of uint32 values (32 for 0): 32 minus the bit length, from frexp's
    exact exponent."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    return 32 - np.frexp(x.astype(np.float64))[1].astype(np.int64)


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """TFLM's int8 softmax preparation: input multiplier, left shift and diff_min."""
    real = min(beta * input_scale * (1 << (31 - 5)), (1 << 31) - 1.0)
    m, shift = quantize_multiplier(real)
    radius = math.floor(((1 << 5) - 1) * (1 << (31 - 5)) / (1 << shift))
    return m, shift, -radius


def softmax_int8(x: np.ndarray, multiplier: int, left_shift: int, diff_min: int) -> np.ndarray:
    """TFLM's int8 -> int8 softmax over the last axis (output scale 1/256, zero point -128)."""
    x = np.asarray(x, dtype=np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    inside = diff >= diff_min
    scaled = srdhm(wrap32(diff << left_shift), multiplier)
    exps = exp_on_negative_values(scaled)
    sum_exps = np.where(inside, rounding_divide_by_pot(exps, 12), 0).sum(axis=-1, keepdims=True)
    sum_exps = wrap32(sum_exps)
    headroom = count_leading_zeros(sum_exps)
    bits_over = 12 - headroom
    shifted = wrap32(((sum_exps & 0xFFFFFFFF) << headroom & 0xFFFFFFFF) - (1 << 31))
    scale = one_over_one_plus_x(shifted)
    out = rounding_divide_by_pot(srdhm(scale, exps), bits_over + 31 - 8) - 128
    return np.where(inside, np.clip(out, -128, 127), -128)
