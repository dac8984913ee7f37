"""The QE-score (the paper's Eq. 15), exactly.

    QE = sum_l [ ln(K_l^2 * C_l) + ln sigma_A^2(N_x,l) + ln sigma_W^2(N_W,l) - ln sigma_A^2 ]
         + ln sigma_A^2

natural logs, over every convolution in execution order (stem, then expand, depthwise and
project of each block; head left out, residuals ignored). C_l is the layer's input channels
(1 for depthwise), N_x,l the bits of the tensor it reads, N_W,l its weight bits.
sigma_A = 5, sigma_W = 4 (the calibrated initial deviations).

sigma(N) for initial deviation s is the standard deviation of Q = round(clamp(R)), R ~ N(0, s^2),
over the 2^N + 1 levels Q in [-2^(N-1), 2^(N-1)] of the paper's Eq. 11, the end levels taking
the tails. The score is math.fsum of the per-layer terms: exact whatever the grouping, so the
search (which caches terms per block) and `qetool score` agree to the last bit.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable

from qetool.arch import Arch, layers

SIGMA_A = 5.0
SIGMA_W = 4.0
LN_SIGMA_A2 = math.log(SIGMA_A ** 2)


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@lru_cache(maxsize=None)
def quant_sigma(bits: int, s: float) -> float:
    """Std of round(clamp(R)) for R ~ N(0, s^2) over levels -2^(bits-1)..2^(bits-1)."""
    top = 1 << (bits - 1)
    tail = _phi((-top + 0.5) / s)  # P(Q = -top) = P(Q = +top)
    terms = [2.0 * top * top * tail]
    for q in range(1, top):
        terms.append(2.0 * q * q * (_phi((q + 0.5) / s) - _phi((q - 0.5) / s)))
    return math.sqrt(math.fsum(terms))


@lru_cache(maxsize=None)
def layer_term(kernel: int, channels: int, bits_x: int, bits_w: int) -> float:
    """One layer's term: ln(K^2 C) + ln sigma_A^2(N_x) + ln sigma_W^2(N_W) - ln sigma_A^2."""
    return (math.log(kernel * kernel * channels)
            + 2.0 * math.log(quant_sigma(bits_x, SIGMA_A))
            + 2.0 * math.log(quant_sigma(bits_w, SIGMA_W))
            - LN_SIGMA_A2)


@lru_cache(maxsize=None)
def block_terms(kernel: int, cin: int, btn: int, bits_a: int, bits_w: int) -> tuple[float, float, float]:
    """The expand, depthwise and project terms of one mbconv block instance."""
    return (layer_term(1, cin, bits_a, bits_w),
            layer_term(kernel, 1, bits_a, bits_w),
            layer_term(1, btn, bits_a, bits_w))


def qe_from_terms(terms: Iterable[float]) -> float:
    """QE = fsum(layer terms) + ln sigma_A^2 (exact summation: order does not matter)."""
    return math.fsum([*terms, LN_SIGMA_A2])


def layer_terms(arch: Arch) -> list[tuple[str, float]]:
    """(layer id, term) for every convolution of `arch` in execution order."""
    out = []
    for layer in layers(arch):
        if layer.op != "head":
            channels = 1 if layer.depthwise else layer.cin
            out.append((layer.id, layer_term(layer.kernel, channels, layer.bits_x, layer.bits_w)))
    return out


def qe_score(arch: Arch) -> float:
    """The QE-score of `arch`."""
    return qe_from_terms(t for _, t in layer_terms(arch))
