"""Two generated models in one program: every global carries the model's --name, so both link
side by side (C, and C++ through the headers' extern "C"), each bit-exact with its golden model;
the arena and the weights sit in the documented named sections."""

import os
import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from test_host_exact import matrix_archs

from qetool import arch as A
from qetool.compiler import golden
from qetool.compiler.calibrate import random_pixels
from qetool.compiler.compile import compile_model
from qetool.compiler.hostrun import WARNINGS, model_sources
from qetool.device.boards import load_board
from qetool.device.builddir import BuildDir
from qetool.errors import QetoolError
from qetool.preprocess import image_codes

MAIN = """
#include <stdio.h>
#include <string.h>
#include "person.h"
#include "keyword.h"

int main(void)
{
    static int8_t a[PERSON_NUM_CLASSES], b[KEYWORD_NUM_CLASSES];
    unsigned char labels[2];
    if (fread(person_input(), 1, PERSON_INPUT_BYTES, stdin) != PERSON_INPUT_BYTES ||
        fread(keyword_input(), 1, KEYWORD_INPUT_BYTES, stdin) != KEYWORD_INPUT_BYTES) {
        return 2;
    }
    labels[0] = (unsigned char)person_run(a);
    labels[1] = (unsigned char)keyword_run(b);
    fwrite(a, 1, sizeof a, stdout);
    fwrite(b, 1, sizeof b, stdout);
    fwrite(labels, 1, 2, stdout);
    return 0;
}
"""


def _build(tmp_path, index: int, name: str) -> BuildDir:
    path = tmp_path / f"{name}.json"
    A.save(matrix_archs()[index], path)
    compile_model(path, load_board("stm32f746"), tmp_path / name, seed=index, force=True, name=name)
    return BuildDir(tmp_path / name)


@pytest.mark.parametrize("compiler, suffix", [("gcc", "c"), ("g++", "cpp")])
def test_two_models_link_into_one_program(tmp_path, compiler, suffix):
    if shutil.which(compiler) is None:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
            f"{compiler} not installed (make test installs it)")
    builds = [_build(tmp_path, 1, "person"), _build(tmp_path, 4, "keyword")]
    main = tmp_path / f"main.{suffix}"
    main.write_text(MAIN)
    exe = tmp_path / "both"
    objs = []
    for b in builds:  # each model compiled as C; only main is C++ in the second case
        for src in model_sources(b.path / "src"):
            obj = tmp_path / f"{src.stem}.o"
            subprocess.run(["gcc", *WARNINGS, "-O1", "-c", str(src), "-o", str(obj)], check=True)
            objs.append(obj)
    flags = ["-Wall", "-Wextra", "-Werror"] + (["-std=c99"] if suffix == "c" else [])
    subprocess.run([compiler, *flags, *(f"-I{b.path / 'src'}" for b in builds), str(main), *map(str, objs),
                    "-o", str(exe)], check=True)
    codes = [image_codes(random_pixels(b.model.arch, 21, i), b.model.input_bits) for i, b in enumerate(builds)]
    stdin = b"".join(b.program.pack(c) for b, c in zip(builds, codes))
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True).stdout
    pos = 0
    for b, c, label in zip(builds, codes, out[-2:]):
        want = golden.run(b.model, c)
        k = b.model.arch.num_classes
        assert list(struct.unpack(f"{k}b", out[pos:pos + k])) == want.logits.tolist()
        assert label == want.label
        pos += k
    assert pos + 2 == len(out)


def test_the_named_sections(tmp_path):
    b = _build(tmp_path, 2, "person")
    names = set()
    for src in model_sources(b.path / "src"):
        obj = tmp_path / f"{src.stem}.o"
        subprocess.run(["gcc", *WARNINGS, "-O2", "-c", str(src), "-o", str(obj)], check=True)
        with open(obj, "rb") as f:
            names |= {s.name for s in ELFFile(f).iter_sections()}
    assert {".bss.person.arena", ".rodata.person.weights"} <= names
    assert all("qe_model" not in p.name for p in (b.path / "src").iterdir())
    assert 'extern "C"' in (b.path / "src" / "person.h").read_text()


@pytest.mark.parametrize("name", ["Person", "1st", "qe_app", "has-dash", "x" * 33])
def test_bad_names_are_refused(tmp_path, name):
    path = tmp_path / "a.json"
    A.save(matrix_archs()[0], path)
    with pytest.raises(QetoolError, match=r"--name .*lower-case C identifier"):
        compile_model(path, load_board("stm32f746"), tmp_path / "b", name=name)
    assert not (tmp_path / "b").exists()
