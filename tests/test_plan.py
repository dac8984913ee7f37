"""The memory plan and the Flash count: placements never overlap, the arena is exactly the
largest live total, and the search's closed forms equal plan() and model_flash()."""

import random

import pytest
from conftest import EXAMPLES
from helpers import random_arch

from qetool.arch import HEAD_BITS, blocks, load, out_size
from qetool.compiler.pack import code_table, model_flash
from qetool.compiler.plan import plan
from qetool.search import cost, space

CORE = "cortex-m7"


def _check_placement(p):
    for step in p.steps:
        spans = sorted((p.buffers[n].offset, p.buffers[n].end, n) for n in step.live)
        assert spans[0][0] >= 0 and spans[-1][1] <= p.arena_bytes
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            assert end <= start, f"{step.layer}: {a} overlaps {b}"
        assert step.total == sum(p.buffers[n].size for n in step.live)
    assert p.arena_bytes == max(s.total for s in p.steps)
    for off in (b.offset for b in p.buffers.values()):
        assert off % 4 == 0


def _closed_form(arch):
    geoms = space.instances(space.from_arch(arch), arch.resolution)
    bl = blocks(arch)
    ba = [b.bits_a for b in bl] + [HEAD_BITS]
    peaks = [cost.sram_table(g)[ba[i]][ba[i + 1]] for i, g in enumerate(geoms)]
    h, _, _, c, _, s = geoms[-1]
    head = cost.head_sram(out_size(h, s), c)
    bw = [b.bits_w for b in bl]
    flash = (sum(cost.flash_table(g)[w] for g, w in zip(geoms, bw))
             + cost.fixed_flash(c, arch.num_classes, len(bl) - 1, CORE)
             + cost.WidthCode(geoms, ba[:-1], HEAD_BITS, CORE).start(bw))
    return peaks, head, flash


def test_random_archs_plan_and_closed_forms_agree():
    rng = random.Random(11)
    for _ in range(300):
        a = random_arch(rng)
        p = plan(a)
        _check_placement(p)
        peaks, head, flash = _closed_form(a)
        by_block = p.block_peaks()
        assert peaks == [by_block[i] for i in range(len(peaks))]
        assert head == by_block[len(peaks)]
        assert p.arena_bytes == max(peaks + [head])
        assert flash == model_flash(a, CORE).total


def test_the_dw_output_in_place_overlaps_nothing_live():
    """The depthwise output lives in its input's bytes (in place): during the project step that
    reads it, no other live buffer (x kept for the residual, y, scratch) may touch that range."""
    rng = random.Random(5)
    for a in [load(EXAMPLES / "paper_256k_1m.json")] + [random_arch(rng) for _ in range(100)]:
        p = plan(a)
        for step in p.steps:
            if not step.layer.endswith(".project"):
                continue
            dw = p.buffers[step.layer.replace(".project", ".dw")]
            start = p.buffer_of(dw.name).offset
            assert start == p.buffers[step.layer.replace(".project", ".expand")].offset
            end = start + dw.size
            for n in step.live:
                b = p.buffers[n]
                if n != dw.alias:
                    assert b.end <= start or b.offset >= end, f"{step.layer}: {n} overlaps the dw output"


def test_paper_network_pinned_by_hand():
    a = load(EXAMPLES / "paper_256k_1m.json")
    # Peak: b4 (row 2's second repetition, residual) at its project: input 40x40x48 at 8 bits,
    # expanded 40x40x80 at 8 bits, output 40x40x48 at b5's 4 bits, scratch a tile of 8 pixels'
    # inputs and one weight row, int16: 2 * (8 + 1) * 80.
    scratch = 2 * (8 + 1) * 80
    assert plan(a).arena_bytes == 40 * 40 * 48 + 40 * 40 * 80 + 40 * 40 * 48 * 4 // 8 + scratch == 244_640
    # Flash, from the table: per layer ceil(params * bits / 8) and 9 bytes a channel (13 on a
    # residual project), each array rounded to 4; 8-bit head; code table, with the width helpers
    # of its layers: inputs of 4 to 8 bits, rows of 5-, 7- and 8-bit weights, 8-bit and nibble
    # weights from Flash (the 8-bit ones two channels a pass into b1's 4-bit outputs), 5x5 planes
    # of 8-bit and narrower codes, the last row's 3x3 ones of 8 bits, residuals, paired 1x1
    # outputs of 4 to 7 bits.
    al = lambda n: -(-n // 4) * 4  # noqa: E731
    table = [(5, 2, 8, 32, 32, (8, 8)), (5, 1, 32, 48, 80, (8, 8)), (5, 2, 48, 96, 112, (7, 7)),
             (5, 1, 96, 96, 344, (5, 5)), (5, 2, 96, 96, 280, (5, 5)), (5, 1, 96, 128, 320, (4, 4)),
             (5, 1, 128, 128, 256, (4, 5)), (5, 2, 128, 160, 240, (5, 4)), (3, 1, 160, 160, 192, (5, 5))]
    weights = al(8 * 27 * 8 // 8)
    channel = al(9 * 8)
    exact = 8 * 27
    for k, s, cin, cout, btn, bw in table:
        for rep in range(2):
            c = cin if rep == 0 else cout
            res = (s == 1 or rep == 1) and c == cout
            for params in (c * btn, btn * k * k, btn * cout):
                weights += al(-(-params * bw[rep] // 8))
                exact += -(-params * bw[rep] // 8)
            channel += 2 * al(9 * btn) + al(9 * cout) + (4 * cout if res else 0)
    weights += 160 * 2
    channel += al(9 * 2)
    t = code_table(CORE)
    widths = ("tile_b4", "tile_b5", "tile_b6", "tile_b7", "tile_b8", "row_b5", "row_b7", "row_b8",
              "dot8_w8", "dot2x4_w8", "pass2_direct", "dot8_w4", "dw_k5", "dw_k5_bits", "dw_merge", "dw_k3", "outputs_res",
              "pair_b4", "pair_b5", "pair_b6", "pair_b7")
    code = (t["runtime"] + sum(t[k] for k in ("conv", "conv1x1", "dwconv", "head"))
            + sum(t["widths"][h] for h in widths) + t["layer"] * (2 + 3 * 18))
    f = model_flash(a, CORE)
    assert (f.weights, f.channel, f.code) == (weights, channel, code)
    assert f.total == 682_660  # the README figure
    assert f.weights - 320 <= 1.01 * exact  # packed weights within 1 % of the dense count


@pytest.mark.parametrize("res", [7, 9, 31])
def test_odd_resolutions(res):
    rng = random.Random(res)
    for _ in range(20):
        _check_placement(plan(random_arch(rng, resolution=res)))


def test_the_ir_plan_of_an_arch_graph_is_the_closed_form_and_fits_its_lifetimes():
    """The graph IR built from an arch (arch_graph) is planned with plan.py's placement: the IR
    checks it against the lifetimes it derives from the graph itself, the arena is the search's
    closed form, and the greedy general planner never beats it (it is the largest live total)."""
    from qetool.compiler import ir_plan
    from qetool.compiler.arch_graph import graph_of, graph_plan
    from qetool.compiler.calibrate import random_checkpoint
    from qetool.compiler.lower import lower

    rng = random.Random(12)
    for a in [load(EXAMPLES / "paper_256k_1m.json")] + [random_arch(rng) for _ in range(40)]:
        model = lower(random_checkpoint(a, 0))
        p = plan(a)
        gp = graph_plan(graph_of(model), p)   # raises if two live buffers overlap
        peaks, head, _ = _closed_form(a)
        assert gp.arena_bytes == p.arena_bytes == max(peaks + [head])
        for name, buf in p.buffers.items():
            assert gp.offset(name) == p.buffer_of(name).offset
        assert ir_plan.plan(graph_of(model)).arena_bytes >= gp.arena_bytes


def test_a_placement_that_overlaps_live_buffers_is_refused():
    from qetool.compiler import ir_plan
    from qetool.compiler.arch_graph import graph_of
    from qetool.compiler.calibrate import random_checkpoint
    from qetool.compiler.lower import lower

    a = random_arch(random.Random(3))
    p = plan(a)
    offsets = {n: b.offset for n, b in p.buffers.items() if b.alias is None}
    offsets["stem"] = offsets["image"]   # the stem's output over its input while both live
    with pytest.raises(AssertionError, match="overlap"):
        ir_plan.plan(graph_of(lower(random_checkpoint(a, 0))), offsets, p.arena_bytes)


def test_the_flash_of_an_arch_graph_is_the_closed_form():
    """pack.graph_flash over the graph IR of an arch (what the report and the renderer count)
    equals model_flash(arch), the closed form the search evaluates, layer by layer."""
    from qetool.compiler.arch_graph import graph_of
    from qetool.compiler.calibrate import random_checkpoint
    from qetool.compiler.lower import lower
    from qetool.compiler.pack import graph_flash

    rng = random.Random(13)
    for a in [load(EXAMPLES / "paper_256k_1m.json")] + [random_arch(rng) for _ in range(40)]:
        assert graph_flash(graph_of(lower(random_checkpoint(a, 0))), CORE) == model_flash(a, CORE)


def test_scratch_spans_hold_the_scratch_and_touch_nothing_live():
    """The span a kernel may use (GraphPlan.scratch_span, docs/kernels.md) contains its planned
    scratch, stays inside the arena and overlaps no buffer live at that step, on the paper's
    network and random ones; somewhere it is larger than the scratch (the room is real)."""
    from qetool.compiler.arch_graph import graph_of, graph_plan
    from qetool.compiler.calibrate import random_checkpoint
    from qetool.compiler.lower import lower

    rng = random.Random(21)
    grown = 0
    for a in [load(EXAMPLES / "paper_256k_1m.json")] + [random_arch(rng) for _ in range(30)]:
        g = graph_of(lower(random_checkpoint(a, 0)))
        gp = graph_plan(g, plan(a))
        for i, node in enumerate(g.nodes):
            s = gp.where[f"{node.name}.scratch"]
            start, size = gp.scratch_span(node.name)
            assert start <= s.offset and s.end <= start + size <= gp.arena_bytes and start % 4 == 0
            for b in gp.buffers:
                if b is not s and b.first <= i <= b.last:
                    assert b.end <= start or b.offset >= start + size, (node.name, b.names)
            grown += size > s.size
    assert grown > 100
