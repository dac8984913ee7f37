"""`qetool compile`: build/ layout (docs/formats.md), the report, budgets and errors."""

import json
import re
import subprocess
import sys

from conftest import EXAMPLES
from helpers import oversized_paper

from qetool import arch as A
from qetool import checkpoint
from qetool.compiler.calibrate import random_checkpoint
from qetool.compiler.lower import LoweredModel
from qetool.compiler.pack import model_flash
from qetool.compiler.plan import plan

QETOOL = [sys.executable, "-m", "qetool"]
PAPER = str(EXAMPLES / "paper_256k_1m.json")


def qetool(*args, cwd=None):
    return subprocess.run(QETOOL + list(args), capture_output=True, text=True, cwd=cwd)


def test_compile_writes_the_build_layout(tmp_path):
    out = tmp_path / "build"
    r = qetool("compile", PAPER, "--board", "stm32f746", "-o", str(out))
    assert r.returncode == 0, r.stderr
    arch = A.load(PAPER)
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "report.json").read_text())
    ids = [l.id for l in A.layers(arch)]
    assert manifest["board"] == "stm32f746" and manifest["layers"] == ids
    assert manifest["input"]["bits"] == 8 and manifest["input"]["bytes"] == 160 * 160 * 3
    assert A.from_dict(manifest["arch"]) == arch
    assert report["arena_bytes"] == plan(arch).arena_bytes == manifest["arena_bytes"]
    assert report["model_flash_bytes"] == model_flash(arch, "cortex-m7").total
    assert [l["id"] for l in report["layers"]] == ids
    assert LoweredModel.load(out / "lowered.npz").model_hash == manifest["model_hash"]
    assert {p.name for p in (out / "src").iterdir()} == {
        "qe_model.h", "qe_model.c", "qe_model_weights.h", "qe_model_weights.c", "qe_model_kernels.h",
        "qe_model_kernels.c", "qe_app.h", "ref"}
    assert [p.name for p in (out / "src" / "ref").iterdir()] == ["qe_model_kernels.c"]
    assert f'#define QE_MODEL_ARENA_BYTES {report["arena_bytes"]}u' in (out / "src" / "qe_model.h").read_text()
    # the table on stdout: every layer, then totals against the board
    assert "b18.project" in r.stdout and "per-channel data 89,212 B" in r.stdout
    assert "of stm32f746's 320.0 KB" in r.stdout
    # the random weights are written in the weights-file format and reproduce the same model
    ck = checkpoint.load(out / "weights.npz", arch)
    r2 = qetool("compile", PAPER, "--board", "stm32f746", "--weights", str(out / "weights.npz"),
                "-o", str(tmp_path / "again"))
    assert r2.returncode == 0, r2.stderr
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["model_hash"] == manifest["model_hash"]
    assert ck.steps


def test_seeds_give_different_weights(tmp_path):
    a = qetool("compile", PAPER, "--board", "stm32f746", "--seed", "1", "-o", str(tmp_path / "a"))
    b = qetool("compile", PAPER, "--board", "stm32f746", "--seed", "2", "-o", str(tmp_path / "b"))
    assert a.returncode == b.returncode == 0
    ha = json.loads((tmp_path / "a" / "manifest.json").read_text())["model_hash"]
    hb = json.loads((tmp_path / "b" / "manifest.json").read_text())["model_hash"]
    assert ha != hb


def test_over_budget_is_refused_then_forced(tmp_path):
    path = tmp_path / "big.json"
    A.save(oversized_paper(PAPER), path)
    r = qetool("compile", str(path), "--board", "stm32f746", "-o", str(tmp_path / "b"))
    assert r.returncode == 2
    assert r.stderr.startswith("error: model Flash") and "over the stm32f746 budget" in r.stderr
    assert "--force" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists()
    r = qetool("compile", str(path), "--board", "stm32f746", "--force", "-o", str(tmp_path / "b"))
    assert r.returncode == 0 and "warning: model Flash" in r.stderr
    assert (tmp_path / "b" / "src" / "qe_model_weights.c").exists()


def test_mismatched_weights_name_the_layer(tmp_path):
    arch = A.load(PAPER)
    rows = list(arch.rows)
    rows[1] = A.Row("mbconv", 5, 2, 8, 32, 40, 2, (4, 8), (8, 8))
    other = A.Arch(arch.resolution, arch.num_classes, tuple(rows))
    checkpoint.save(random_checkpoint(other, 0), tmp_path / "w.npz")
    r = qetool("compile", PAPER, "--board", "stm32f746", "--weights", str(tmp_path / "w.npz"),
               "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and not (tmp_path / "b").exists()
    assert "the weights were made for another network: layers[1].btn: 40 against 32" in r.stderr


def test_weights_of_the_same_shapes_for_another_network_are_refused(tmp_path):
    """Another stride, resolution or bits keeps every weight shape: the arch itself must match."""
    arch = A.load(PAPER)
    rows = list(arch.rows)
    rows[2] = A.Row("mbconv", 5, 2, 32, 48, 80, 2, (5, 8), (8, 8))
    for other, where in ((A.Arch(arch.resolution, arch.num_classes, tuple(rows)), "layers[2].stride: 2 against 1"),
                         (A.Arch(128, arch.num_classes, arch.rows), "resolution: 128 against 160")):
        checkpoint.save(random_checkpoint(other, 0), tmp_path / "w.npz")
        r = qetool("compile", PAPER, "--board", "stm32f746", "--weights", str(tmp_path / "w.npz"),
                   "-o", str(tmp_path / "b"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and where in r.stderr, r.stderr
        assert not (tmp_path / "b").exists()


def test_a_failed_compile_keeps_the_previous_build(tmp_path):
    out = tmp_path / "b"
    assert qetool("compile", PAPER, "--board", "stm32f746", "-o", str(out)).returncode == 0
    before = (out / "manifest.json").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "qetool-arch/1"}')
    r = qetool("compile", str(bad), "--board", "stm32f746", "-o", str(out))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "resolution" in r.stderr
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_packed_weights_are_the_flash_count(tmp_path):
    out = tmp_path / "b"
    qetool("compile", PAPER, "--board", "stm32f746", "-o", str(out))
    model = LoweredModel.load(out / "lowered.npz")
    report = json.loads((out / "report.json").read_text())
    src = (out / "src" / "qe_model_weights.c").read_text()
    sizes = [int(n) for n in re.findall(r"const uint8_t qe_model_\w+_w\[(\d+)\]", src)]
    assert len(sizes) == len(model.layers) and all(n % 4 == 0 for n in sizes)
    assert sum(sizes) == report["weights_flash_bytes"]
