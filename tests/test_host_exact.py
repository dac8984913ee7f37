"""The core correctness test: generated C, built with the host gcc, the optimized kernels and the
reference ones (build/src/ref/) alike, bit-exact against the golden model on every layer's output
and the logits, for every (bits_a, bits_w) pair in 3..8 x 2..8,
strides 1 and 2, kernels 3/5/7, with and without residual, odd channels and resolutions, and for
the paper's network. Also: the sources compile warning-free for the Cortex-M7."""

import os
import random
import shutil
import subprocess

import numpy as np
import pytest
from conftest import EXAMPLES
from helpers import random_arch

from qetool import arch as A
from qetool.compiler import golden
from qetool.compiler.calibrate import random_pixels
from qetool.compiler.compile import compile_model
from qetool.device.boards import load_board
from qetool.compiler.lower import LoweredModel
from qetool.preprocess import image_codes
from qetool.compiler.hostrun import WARNINGS, build_runner, model_sources, run_build

PAIRS = [(a, w) for a in range(3, 9) for w in range(2, 9)]


def matrix_archs() -> list[A.Arch]:
    """Seven small archs whose 42 block instances carry every (bits_a, bits_w) pair once."""
    rng = random.Random(2024)
    out = []
    for g in range(0, len(PAIRS), 6):
        pairs = PAIRS[g:g + 6]
        res = rng.choice((9, 11, 13, 15, 17, 19, 21))
        k = (3, 5, 7)[g // 6 % 3]
        c0, c1, c2 = rng.choice((3, 5, 7)), rng.choice((5, 7, 9, 11)), rng.choice((5, 7, 9))
        c2 = c1 if g // 6 % 2 else c2  # stride 1 and in == out on the first repetition too
        rows = (A.Row("conv", 3, 2, 3, c0, None, 1, pairs[0][0], pairs[0][1]),
                A.Row("mbconv", k, 2, c0, c1, rng.choice((7, 9, 13)), 2,
                      (pairs[1][0], pairs[2][0]), (pairs[1][1], pairs[2][1])),
                A.Row("mbconv", (7, 3, 5)[g // 6 % 3], 1, c1, c2, rng.choice((11, 15)), 3,
                      tuple(p[0] for p in pairs[3:]), tuple(p[1] for p in pairs[3:])))
        out.append(A.Arch(res, rng.choice((2, 3, 5)), rows))
    return out


def test_the_matrix_covers_what_the_issue_asks():
    archs = matrix_archs()
    blocks = [b for a in archs for b in A.blocks(a)]
    assert sorted((b.bits_a, b.bits_w) for b in blocks) == sorted(PAIRS)
    assert {b.kernel for b in blocks if b.index} == {3, 5, 7}
    assert {b.stride for b in blocks} == {1, 2}
    assert any(b.residual for b in blocks) and any(not b.residual for b in blocks if b.index)
    assert any(b.cout % 2 for b in blocks) and any(a.resolution % 2 for a in archs)


def _check(tmp_path, arch: A.Arch, name: str, images: int = 2, seed: int = 0):
    path = tmp_path / f"{name}.json"
    A.save(arch, path)
    build = tmp_path / name
    compile_model(path, load_board("stm32f746"), build, seed=seed, force=True)
    model = LoweredModel.load(build / "lowered.npz")
    imgs = [image_codes(random_pixels(arch, 1000 + seed, i), model.input_bits) for i in range(images)]
    for kernels in ("optimized", "reference"):
        exe = build_runner(build, tmp_path / f"{name}.{kernels}", opt="-O1", reference=kernels == "reference")
        for img, got in zip(imgs, run_build(build, exe, imgs)):
            want = golden.run(model, img)
            for layer in model.layers[:-1]:
                assert np.array_equal(got.tensors[layer.id], want.tensors[layer.id]), f"{name} {kernels}: {layer.id}"
            assert np.array_equal(got.logits, want.logits) and got.label == want.label, f"{name} {kernels}"


@pytest.mark.parametrize("index", range(7))
def test_bit_width_matrix_is_bit_exact(tmp_path, index):
    _check(tmp_path, matrix_archs()[index], f"matrix{index}", seed=index)


@pytest.mark.parametrize("seed", range(6))
def test_random_archs_are_bit_exact(tmp_path, seed):
    _check(tmp_path, random_arch(random.Random(100 + seed)), f"random{seed}", seed=seed)


def test_paper_network_is_bit_exact(tmp_path):
    _check(tmp_path, A.load(EXAMPLES / "paper_256k_1m.json"), "paper", images=2)


def test_sources_build_warning_free_for_cortex_m7(tmp_path):
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("arm-none-eabi-gcc missing in CI (make test installs it)")
        pytest.skip("arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)")
    path = tmp_path / "paper.json"
    shutil.copy(EXAMPLES / "paper_256k_1m.json", path)
    compile_model(path, load_board("stm32f746"), tmp_path / "b")
    src = tmp_path / "b" / "src"
    sources = model_sources(src)
    assert [f.name for f in sources] == ["qe_model.c", "qe_model_kernels.c", "qe_model_weights.c"]
    for f in sources:
        subprocess.run([cc, *WARNINGS, *load_board("stm32f746").core.flags, "-O2", "-c", str(f),
                        "-o", str(tmp_path / f"{f.name}.o")], check=True)
    # the kernels' SIMD path converts no sign implicitly (ACLE takes int32_t lanes)
    subprocess.run([cc, *WARNINGS, "-Wsign-conversion", *load_board("stm32f746").core.flags, "-O2", "-c",
                    str(src / "qe_model_kernels.c"), "-o", str(tmp_path / "k.o")], check=True)


def test_the_arithmetic_shift_is_checked_at_compile_time(tmp_path):
    """The kernels need >> of a negative int64 and int32 to be arithmetic: a negative-size typedef checks it
    under -std=c99 -pedantic -Werror (no _Static_assert there); with the condition turned round
    the same construct stops the build, so the check is live."""
    path = tmp_path / "a.json"
    A.save(matrix_archs()[0], path)
    compile_model(path, load_board("stm32f746"), tmp_path / "b", force=True)
    src = (tmp_path / "b" / "src" / "qe_model_kernels.c").read_text()
    check = ("typedef char qe_model_shift_is_arithmetic[((int64_t)-1 >> 1) == (int64_t)-1 && (-1 >> 1) == -1"
             " ? 1 : -1];")
    assert check in src
    for cond, ok in ((check, True), (check.replace("== (int64_t)-1", "!= (int64_t)-1"), False),
                     (check.replace("(-1 >> 1) == -1", "(-1 >> 1) != -1"), False)):
        (tmp_path / "t.c").write_text(f"#include <stdint.h>\n{cond}\n")
        r = subprocess.run(["gcc", *WARNINGS, "-c", str(tmp_path / "t.c"), "-o", str(tmp_path / "t.o")],
                           capture_output=True, text=True)
        assert (r.returncode == 0) == ok, r.stderr
    assert "-pedantic" in WARNINGS
