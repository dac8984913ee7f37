"""QBR: each branch of Algorithm 1 as qetool fixes it."""

import random

from qetool.compiler.pack import code_table
from qetool.search import cost, qbr
from qetool.search.space import BITS_A, BITS_W

# Two blocks at 40x40: b1 8 -> 16 (btn 48, k3, s1), b2 16 -> 16 (btn 48, k3, s1, residual).
G1 = (40, 8, 48, 16, 3, 1)
G2 = (40, 16, 48, 16, 3, 1)


def peak(g, a, an):
    return cost.sram_table(g)[a][an]


def test_activation_pass_raises_to_the_largest_that_fits():
    ba = [3, 3]
    qbr.activation_pass([G1, G2], ba, 10**9, BITS_A, 8)
    assert ba == [8, 8]


def test_activation_pass_lowers_until_it_fits():
    budget = peak(G2, 5, 8)  # b2 fits at 5 bits, not at 6
    assert peak(G2, 6, 8) > budget
    ba = [8, 8]
    qbr.activation_pass([G1, G2], ba, budget, BITS_A, 8)
    assert ba[1] == 5
    # b1 is the largest that fits both its own peak and nothing else
    assert peak(G1, ba[0], ba[1]) <= budget
    bigger = [b for b in BITS_A if b > ba[0]]
    assert not bigger or peak(G1, bigger[0], ba[1]) > budget


def test_activation_pass_honours_the_previous_block():
    # b2's bits also size b1's output: a budget b1 only meets when b2 is low.
    budget = peak(G1, 3, 4)
    ba = [3, 8]
    qbr.activation_pass([G1, G2], ba, budget, BITS_A, 8)
    assert peak(G1, ba[0], ba[1]) <= budget and ba[1] <= 4


def test_activation_pass_gives_the_minimum_when_nothing_fits():
    ba = [8, 8]
    qbr.activation_pass([G1, G2], ba, 1000, BITS_A, 8)
    assert ba == [3, 3]


def _flash(gs, bw):
    return sum(cost.flash_table(g)[b] for g, b in zip(gs, bw))


def test_weight_pass_over_budget_lowers_largest_first():
    gs = [G1, G2]  # G2 has more weights (16 * 48 > 8 * 48)
    bw = [8, 8]
    budget = _flash(gs, [8, 8]) - 1
    total = qbr.weight_pass(gs, bw, budget, 0, BITS_W, random.Random(0))
    assert bw[0] == 8 and bw[1] < 8  # one step on the largest was enough
    assert total == _flash(gs, bw) <= budget


def test_weight_pass_over_budget_skips_blocks_at_the_minimum():
    gs = [G1, G2]
    bw = [8, 2]
    total = qbr.weight_pass(gs, bw, 1, 0, BITS_W, random.Random(0))
    assert bw[1] == 2 and bw[0] < 8 and total > 1  # cannot fit: the final check rejects


def test_weight_pass_under_budget_raises_smallest_first_and_stops():
    gs = [G1, G2]  # G1 has fewer weights: it is raised first
    for seed in range(20):
        bw = [2, 2]
        budget = _flash(gs, [8, 2])  # room for any raise of G1, then only what is left
        total = qbr.weight_pass(gs, bw, budget, 0, BITS_W, random.Random(seed))
        assert bw[0] > 2 and total == _flash(gs, bw) <= budget
        if bw[0] == 8:  # no room left: G2 is not raised, and the pass stopped there
            assert bw[1] == 2


def test_weight_pass_under_budget_skips_blocks_at_the_maximum():
    gs = [G1, G2]
    bw = [8, 2]
    qbr.weight_pass(gs, bw, 10**9, 0, BITS_W, random.Random(0))
    assert bw[0] == 8 and bw[1] > 2


def test_refine_rejects_what_cannot_fit():
    rng = random.Random(0)
    assert qbr.refine([G1, G2], [8, 8], [8, 8], 1000, 10**9, 0, 0, 8, BITS_A, BITS_W, rng) is None
    assert qbr.refine([G1, G2], [8, 8], [8, 8], 10**9, 10, 0, 0, 8, BITS_A, BITS_W, rng) is None
    r = qbr.refine([G1, G2], [8, 8], [8, 8], 10**9, 10**9, 0, 0, 8, BITS_A, BITS_W, rng)
    assert r is not None and r.bits_a == [8, 8]


def test_width_code_follows_every_move_of_the_weight_pass():
    """WidthCode's running bytes after any sequence of bits_w moves are at least a fresh count of
    the helpers the blocks then need (a move frees nothing until settle) and settle makes them
    exactly that count (the model's code counts each helper once)."""
    gs = [(40, 3, 0, 8, 3, 2), G1, G2, (20, 16, 64, 24, 5, 2)]
    ba = [8, 4, 6, 5]
    rng = random.Random(3)
    code = cost.WidthCode(gs, ba, 8, "cortex-m7")
    bw = [8, 8, 8, 8]
    total = code.start(bw)
    for step in range(200):
        i, b = rng.randrange(len(gs)), rng.choice(BITS_W)
        total += code.delta(i, b)
        code.move(i, b)
        bw[i] = b
        fresh = cost.WidthCode(gs, ba, 8, "cortex-m7").start(bw)
        assert total >= fresh
        if step % 10 == 0:
            total += code.settle(bw)
            assert total == fresh
    # G1 and G2 at 8-bit activations share row_b5 at 5-bit weights; at 4 bits (Cin 8, 16 and 48)
    # both read nibble rows from Flash (dot8_w4) and unpack none
    t = code_table("cortex-m7")["widths"]
    shared = cost.WidthCode([G1, G2], [8, 8], 8, "cortex-m7")
    shared.start([5, 5])
    assert shared.delta(0, 4) == t["dot8_w4"]
    shared.move(0, 4)
    assert shared.delta(1, 4) == 0  # dot8_w4 is counted already
    shared.move(1, 4)
    assert shared.settle([4, 4]) == -t["row_b5"]  # no block reads 5-bit rows any more


def test_weight_pass_counts_the_width_helpers_exactly():
    """With the helpers' code, the weight pass returns exact model Flash within the budget."""
    gs = [(40, 3, 0, 8, 3, 2), G1, G2]
    ba = [8, 8, 8]
    for seed in range(20):
        bw = [8, 8, 8]
        code = cost.WidthCode(gs, ba, 8, "cortex-m7")
        budget = _flash(gs, [5, 5, 5]) + 4000 + 300 * seed
        total = qbr.weight_pass(gs, bw, budget, 1000, BITS_W, random.Random(seed), code)
        assert total == 1000 + _flash(gs, bw) + cost.WidthCode(gs, ba, 8, "cortex-m7").start(bw)
        assert total <= budget
