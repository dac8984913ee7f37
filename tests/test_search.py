"""The evolutionary search: reproducible from its seed, every result fits its budgets."""

import json
import random
import subprocess
import sys

import pytest

from qetool.arch import load
from qetool.compiler.pack import model_flash
from qetool.compiler.plan import plan
from qetool.search import space
from qetool.search.evolve import SearchConfig, evaluate, genome_score, search
from qetool.search.score import qe_score

QETOOL = [sys.executable, "-m", "qetool"]


def test_seed_reproduces_bit_for_bit():
    cfg = SearchConfig(200 * 1024, 600 * 1024, resolution=96, population=32, iterations=1500, seed=7)
    a, b = search(cfg), search(cfg)
    assert a.best == b.best and a.accepted == b.accepted
    other = search(SearchConfig(200 * 1024, 600 * 1024, resolution=96, population=32, iterations=1500, seed=8))
    assert other.best.genome != a.best.genome


@pytest.mark.parametrize("sram,flash,res", [(64 * 1024, 256 * 1024, 64), (256 * 1024, 1024 * 1024, 160),
                                            (24 * 1024, 96 * 1024, 32)])
def test_results_fit_their_budgets(sram, flash, res):
    cfg = SearchConfig(sram, flash, resolution=res, population=64, iterations=2000, seed=1)
    best = search(cfg).best
    arch = space.to_arch(best.genome, cfg.resolution, cfg.num_classes)
    assert plan(arch).arena_bytes == best.peak_sram_bytes <= sram
    assert model_flash(arch, "cortex-m7").total == best.flash_bytes <= flash
    assert qe_score(arch) == best.qe_score


def test_every_evaluated_candidate_agrees_with_the_compiler_side():
    cfg = SearchConfig(128 * 1024, 512 * 1024, resolution=64)
    rng = random.Random(5)
    g = space.initial_genome()
    for _ in range(300):
        g = space.mutate(g, rng)
        c = evaluate(g, cfg, rng)
        if c is None:
            continue
        g = c.genome
        arch = space.to_arch(g, 64, 2)
        assert plan(arch).arena_bytes == c.peak_sram_bytes <= cfg.sram_budget
        assert model_flash(arch, "cortex-m7").total == c.flash_bytes <= cfg.flash_budget
        assert genome_score(g) == qe_score(arch) == c.qe_score


def test_ctrl_c_returns_the_best_so_far():
    def progress(done, best):
        if done == 300:
            raise KeyboardInterrupt

    r = search(SearchConfig(128 * 1024, 512 * 1024, resolution=64, iterations=10_000), progress, 100)
    assert r.interrupted and r.iterations_done == 299 and r.best.qe_score > 0


def test_cli_search_then_score(tmp_path):
    out = tmp_path / "a.json"
    subprocess.run(QETOOL + ["search", "--board", "stm32f746", "--iterations", "3000",
                             "--population", "64", "--seed", "1", "-o", str(out)],
                   check=True, capture_output=True)
    arch = load(out)
    r = subprocess.run(QETOOL + ["score", str(out), "--board", "stm32f746", "--json"],
                       check=True, capture_output=True, text=True)
    doc = json.loads(r.stdout)
    assert doc["peak_sram_bytes"] == plan(arch).arena_bytes <= doc["budget_sram_bytes"]
    assert doc["model_flash_bytes"] <= doc["budget_flash_bytes"]
    assert doc["qe_score"] == qe_score(arch)
    assert [b["name"] for b in doc["blocks"]][:2] == ["stem", "b1"]


@pytest.mark.parametrize("args,message", [
    (["search", "--board", "stm32f746", "--sram", "2KB", "-o", "x.json"], "error: no network fits SRAM 2048 B"),
    (["search", "--board", "nope", "-o", "x.json"], "error: unknown board 'nope'"),
    (["search", "--board", "stm32f746", "--sram", "lots", "-o", "x.json"], "error: Invalid value for '--sram'"),
    (["score", "missing.json"], "error: missing.json: cannot read"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, message):
    r = subprocess.run(QETOOL + args, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_progress_is_reported_at_every_interval():
    seen = []
    search(SearchConfig(128 * 1024, 512 * 1024, resolution=64, population=8, iterations=2000),
           lambda done, best: seen.append(done), 100)
    assert seen == list(range(100, 2001, 100))


def test_cli_and_search_stay_free_of_torch():
    code = ("import sys, qetool.cli, qetool.search.evolve, qetool.search.summary; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in r.stdout
    r = subprocess.run([sys.executable, "-c", "import sys, qetool.cli; print('numpy' in sys.modules)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"  # --help never loads numpy
