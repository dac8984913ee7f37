"""QE-score: the sigma table against the issue's vectors, a hand-computed two-block net, and
the paper's network scored by an independent implementation."""

import math

import pytest
from conftest import EXAMPLES

from qetool.arch import Arch, Row, load
from qetool.search import space
from qetool.search.evolve import genome_score
from qetool.search.score import qe_score, quant_sigma

SIGMA_4 = [1.7388228634059972, 2.8903940182483057, 3.8504712566997665, 4.010172973403067,
           4.010403138505318, 4.010403138505321, 4.010403138505321]
SIGMA_5 = [1.7924496624207404, 3.112192524683381, 4.528190206368193, 5.0020480504267,
           5.008326399730913, 5.008326400438906, 5.008326400438906]


@pytest.mark.parametrize("s,expected", [(4.0, SIGMA_4), (5.0, SIGMA_5)])
def test_sigma_vectors(s, expected):
    for bits, want in zip(range(2, 9), expected):
        assert abs(quant_sigma(bits, s) - want) < 1e-12


def _sigma_independent(bits: int, s: float) -> float:
    """Variance summed over all 2^N + 1 levels, both signs, tails by erfc (no symmetry)."""
    top = 2 ** (bits - 1)
    cdf = lambda x: 0.5 * math.erfc(-x / (s * math.sqrt(2)))  # noqa: E731
    var = 0.0
    for q in range(-top, top + 1):
        lo = -math.inf if q == -top else q - 0.5
        hi = math.inf if q == top else q + 0.5
        p = (1.0 if hi == math.inf else cdf(hi)) - (0.0 if lo == -math.inf else cdf(lo))
        var += q * q * p
    return math.sqrt(var)


def test_two_block_net_by_hand():
    # stem 3x3, 3 -> 8, bits_a 8 (image) bits_w 6; b1: 8 -> 16 btn 24 k5, a 4 w 3;
    # b2: 16 -> 16 btn 32 k3, a 5 w 2.
    arch = Arch(32, 2, (Row("conv", 3, 2, 3, 8, None, 1, 8, 6),
                        Row("mbconv", 5, 2, 8, 16, 24, 1, 4, 3),
                        Row("mbconv", 3, 1, 16, 16, 32, 1, 5, 2)))
    sa, sw = _sigma_independent, _sigma_independent
    ln = math.log

    def term(kk_c, a, w):
        return ln(kk_c) + ln(sa(a, 5) ** 2) + ln(sw(w, 4) ** 2) - ln(25)

    terms = [term(9 * 3, 8, 6),
             term(8, 4, 3), term(25, 4, 3), term(24, 4, 3),
             term(16, 5, 2), term(9, 5, 2), term(32, 5, 2)]
    assert qe_score(arch) == pytest.approx(sum(terms) + ln(25), abs=1e-10)


def test_paper_network_score_independent():
    arch = load(EXAMPLES / "paper_256k_1m.json")
    # Rows of the paper's Table 1 as printed: k, s, in, out, btn, bits_a, bits_w.
    table = [(5, 8, 32, 32, (4, 8), (8, 8)), (5, 32, 48, 80, (5, 8), (8, 8)),
             (5, 48, 96, 112, (4, 8), (7, 7)), (5, 96, 96, 344, (6, 6), (5, 5)),
             (5, 96, 96, 280, (7, 8), (5, 5)), (5, 96, 128, 320, (8, 8), (4, 4)),
             (5, 128, 128, 256, (8, 8), (4, 5)), (5, 128, 160, 240, (8, 8), (5, 4)),
             (3, 160, 160, 192, (8, 8), (5, 5))]
    terms = [math.log(9 * 3) + 2 * math.log(_sigma_independent(8, 5))
             + 2 * math.log(_sigma_independent(8, 4)) - math.log(25)]
    for k, cin, cout, btn, ba, bw in table:
        for rep in range(2):
            c = cin if rep == 0 else cout
            la, lw = 2 * math.log(_sigma_independent(ba[rep], 5)), 2 * math.log(_sigma_independent(bw[rep], 4))
            for kk_c in (c, k * k, btn):
                terms.append(math.log(kk_c) + la + lw - math.log(25))
    assert qe_score(arch) == pytest.approx(math.fsum(terms) + math.log(25), abs=1e-9)
    assert qe_score(arch) == pytest.approx(384.13565195394, abs=1e-9)


def test_search_and_score_agree_exactly():
    arch = load(EXAMPLES / "paper_256k_1m.json")
    assert genome_score(space.from_arch(arch)) == qe_score(arch)
