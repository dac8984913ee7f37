"""The latency model (docs/latency.md): its closed forms equal the compiler's (room, MACs) and
each other (search and score); the committed calibrations exist and hold within 5 % of the
exact emulator counts on whole networks the probes never saw (the paper's, the searched F746
one, the MCUNet-style one, random search-space networks; a kernel change that breaks the
calibration fails here); the search keeps its budgets; calibrate and the CLI options.

The emulator parts skip without the Arm toolchain or QEMU, except in CI (CI=true)."""

import json
import math
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES
from helpers import random_arch

from qetool import arch as A
from qetool.compiler.arch_graph import graph_of, graph_plan
from qetool.compiler.calibrate import random_checkpoint
from qetool.compiler.kernels import REGISTRY
from qetool.compiler.lower import lower
from qetool.compiler.plan import plan
from qetool.compiler.program import arch_program
from qetool.device.boards import board_names, load_board
from qetool.device.calibrate import measure, network_error, nnls
from qetool.search import cost, space
from qetool.search.latency import (SearchLatency, board_latency, estimate, latency_path, layer_shapes,
                                   load_latency)
from qetool.search.qbr import peak_sram

QETOOL = [sys.executable, "-m", "qetool"]
PAPER = EXAMPLES / "paper_256k_1m.json"
CI = os.environ.get("CI") == "true"
TOLERANCE = 0.05


def qetool(*args):
    return subprocess.run(QETOOL + [str(a) for a in args], capture_output=True, text=True)


def _need_emulator() -> None:
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        (pytest.fail if CI else pytest.skip)(f"{', '.join(missing)} not installed (make test installs them)")


def test_room_in_closed_form_is_the_plans_scratch_span():
    archs = [A.load(PAPER), A.load(EXAMPLES / "mcunet_style_80.json")]
    archs += [random_arch(random.Random(i)) for i in range(25)]
    for arch in archs:
        g = graph_of(lower(random_checkpoint(arch, 0)))
        gp = graph_plan(g, plan(arch))
        for layer, shape in zip(A.layers(arch), layer_shapes(arch)):
            assert shape.room == gp.scratch_span(layer.id)[1], layer.id


def test_macs_in_closed_form_are_the_programs():
    for seed in range(12):
        arch = space.random_arch(seed, resolution=64)
        genome = space.from_arch(arch)
        geoms = space.instances(genome, arch.resolution)
        h, _, _, c, _, s = geoms[-1]
        ho = A.out_size(h, s)
        closed = sum(cost.block_macs(g) for g in geoms) + cost.head_macs(ho, c, arch.num_classes)
        prog = arch_program(lower(random_checkpoint(arch, 0)))
        assert closed == sum(layer.macs for layer in prog.layers)


@pytest.mark.parametrize("board", ["stm32f746", "stm32f412"])
def test_the_search_closed_form_is_the_model(board):
    """SearchLatency (cached per block and tile configuration) gives what the model gives on the
    whole network's shapes, to rounding."""
    model = board_latency(load_board(board))
    timer = SearchLatency(model)
    rng = random.Random(7)
    g = space.initial_genome()
    for _ in range(150):
        g = space.mutate(g, rng)
        arch = space.to_arch(g, 160, 3)
        geoms = space.instances(g, 160)
        ba, bw = space.flat_bits(g)
        h, _, _, c, _, s = geoms[-1]
        arena = peak_sram(geoms, ba, A.HEAD_BITS, cost.head_sram(A.out_size(h, s), c))
        assert arena == plan(arch).arena_bytes
        fast = timer.network(geoms, ba, bw, arena, 3)
        assert math.isclose(fast, model.network(layer_shapes(arch))[1], rel_tol=1e-12)


def test_calibrations_exist_for_every_emulated_board():
    for name in board_names():
        board = load_board(name)
        model = board_latency(board)
        assert model is not None and model.core == board.core.cpu, name
        if board.emulator is not None:
            own = load_latency(latency_path(name))
            assert (own.board, own.target, own.counter) == (name, "emulator", "instructions")
            assert own.probes >= 48 and 0 < own.max_probe_error < 0.1
            assert all(v >= 0 for v in own.coefficients.values())


@pytest.mark.parametrize("board", ["stm32f746", "stm32f412"])
def test_the_calibration_covers_every_term_the_search_reaches(board):
    """The probes exercised every term of the examples and of search-space networks at every
    resolution the search uses, so neither search nor score meets an unknown term."""
    model = board_latency(load_board(board))
    archs = [A.load(p) for p in sorted(EXAMPLES.glob("*.json"))]
    archs += [space.random_arch(seed, res) for seed in range(150) for res in (64, 96, 128, 160, 224)]
    missing = {k for arch in archs for s in layer_shapes(arch) for k in REGISTRY[s.op].terms(s)
               if k not in model.coefficients}
    assert not missing


def test_nnls_finds_non_negative_coefficients():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 10, (200, 6))
    truth = np.array([3.0, 0.0, 1.5, 40.0, 0.0, 0.25])
    x = nnls(a, a @ truth)
    assert np.allclose(x, truth, atol=1e-8)
    y = a @ np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])  # the unconstrained optimum is negative
    x = nnls(a, y)
    assert (x >= 0).all() and x[1] == 0
    free = x > 0
    assert np.allclose(a[:, free].T @ (y - a @ x), 0, atol=1e-6)  # optimal on its support


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Exact counts of networks no probe was: the examples, and search-space networks."""
    _need_emulator()
    tmp = tmp_path_factory.mktemp("latency")
    f746, f412 = load_board("stm32f746"), load_board("stm32f412")
    nets = [("paper", A.load(PAPER), f746), ("mcunet_style_80", A.load(EXAMPLES / "mcunet_style_80.json"), f746),
            ("searched_f746", A.load(EXAMPLES / "searched_f746.json"), f746),
            ("paper on the F412", A.load(PAPER), f412)]
    nets += [(f"search space {s}", space.random_arch(s, rng_res), f746)
             for s, rng_res in ((101, 96), (102, 128), (103, 160))]
    nets += [("search space 104 on the F412", space.random_arch(104, 112), f412)]
    out = []
    for i, (name, arch, board) in enumerate(nets):
        work = tmp / str(i)
        work.mkdir()
        out.append((name, board, measure(arch, board, work)))
    return out


def test_estimates_hold_within_5_percent_in_the_emulator(measured):
    errors = {}
    for name, board, m in measured:
        errors[name] = network_error(board_latency(board), m)
    print("\n".join(f"{n}: {100 * e:+.2f} %" for n, e in errors.items()))
    bad = {n: f"{100 * e:+.2f} %" for n, e in errors.items() if abs(e) > TOLERANCE}
    assert not bad, f"the latency calibration no longer holds (qetool calibrate): {bad}"


def test_score_compile_and_profile_show_the_estimate(tmp_path):
    r = qetool("score", PAPER, "--board", "stm32f746", "--json")
    doc = json.loads(r.stdout)
    est = estimate(A.load(PAPER), load_board("stm32f746"))
    assert doc["latency_instructions"] == est.instructions and doc["latency_ms"] == est.ms
    assert math.isclose(sum(b["latency_instructions"] for b in doc["blocks"]) + 0.0,
                        sum(est.per_layer), rel_tol=1e-12)
    assert doc["budget_latency_ms"] == 1000.0
    table = qetool("score", PAPER, "--board", "stm32f746").stdout
    assert "M instr (est.)" in table and "latency budget 1,000.0 ms: OVER" in table
    assert "latency" not in qetool("score", PAPER).stdout.split("QE-score")[1]  # no board: no estimate
    r = qetool("compile", PAPER, "--board", "stm32f746", "-o", tmp_path / "b")
    assert r.returncode == 0 and f"{round(est.instructions):,} instructions" in r.stdout
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [layer["latency_instructions"] for layer in rep["layers"]] == [round(t) for t in est.per_layer]


def _search(tmp_path, *args):
    out = tmp_path / "a.json"
    r = qetool("search", "--board", "stm32f746", "--iterations", 3000, "--population", 32, "--seed", 2,
               "-o", out, *args)
    return r, out


def test_search_keeps_its_latency_mac_and_block_budgets(tmp_path):
    board = load_board("stm32f746")
    r, out = _search(tmp_path, "--latency-ms", 150, "--macs", "40M", "--max-blocks", 9,
                     "--pareto", tmp_path / "front.json")
    assert r.returncode == 0, r.stderr
    assert "of 150 ms" in r.stdout
    arch = A.load(out)
    est = estimate(arch, board)
    assert est.ms <= 150
    assert len(A.blocks(arch)) - 1 <= 9
    prog = arch_program(lower(random_checkpoint(arch, 0)))
    assert sum(layer.macs for layer in prog.layers) <= 40 * 2**20
    front = json.loads((tmp_path / "front.json").read_text())
    pts = front["points"]
    assert front["format"] == "qetool-pareto/1" and pts
    assert all(a["latency_ms"] < b["latency_ms"] and a["qe_score"] < b["qe_score"] for a, b in zip(pts, pts[1:]))
    assert all(p["latency_ms"] <= 150 for p in pts)
    last = A.from_dict(pts[-1]["arch"])
    assert math.isclose(estimate(last, board).instructions, pts[-1]["latency_instructions"], abs_tol=1)
    # without a budget the search goes past it (the board's default is 1,000 ms)
    r, out = _search(tmp_path, "--no-latency-budget")
    assert r.returncode == 0 and estimate(A.load(out), board).ms > 150


def test_an_impossible_latency_budget_is_one_error(tmp_path):
    r, out = _search(tmp_path, "--latency-ms", 0.01)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "compute budgets" in r.stderr
    assert not out.exists()


def test_calibrate_command(tmp_path):
    r = qetool("calibrate", "--board", "stm32f746")
    assert r.returncode == 2 and "exactly one of --emulator and --port" in r.stderr
    r = qetool("calibrate", "--board-file", "boards/stm32f746.toml", "--emulator")
    assert r.returncode == 2 and "-o FILE" in r.stderr
    _need_emulator()
    out = tmp_path / "cal.json"
    r = qetool("calibrate", "--board", "stm32f412", "--emulator", "--probes", 8, "--seed", 9, "-o", out)
    assert r.returncode == 0, r.stderr
    model = load_latency(out)
    assert model.probes == 8 and model.core == "cortex-m4" and f"{100 * model.max_probe_error:.2f} %" in r.stdout
