"""Boards: every board file loads and chooses its own core; --board takes names only;
--board-file reads a user's board (and build/ keeps it); bad board files are one error line."""

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLES, ROOT

from qetool.compiler.firmware import images
from qetool.device.boards import CORES, MACHINES, PORT_SOURCES, board_names, load_board, load_board_file
from qetool.device.builddir import BuildDir
from qetool.errors import QetoolError
from qetool.paths import FIRMWARE

QETOOL = [sys.executable, "-m", "qetool"]
PAPER = str(EXAMPLES / "paper_256k_1m.json")
F412 = (ROOT / "boards" / "stm32f412.toml").read_text()


def qetool(*args):
    return subprocess.run(QETOOL + list(args), capture_output=True, text=True)


def test_every_board_loads_with_its_core():
    assert board_names() == ["stm32f412", "stm32f746", "stm32h743"]
    cores = {}
    for name in board_names():
        b = load_board(name)
        assert b.name == name and b.core.cpu in CORES and b.core.fpu in CORES[b.core.cpu]
        assert 0 < b.budget_sram_bytes < b.sram_bytes and 0 < b.budget_flash_bytes < b.flash_bytes
        if b.emulator:
            assert MACHINES[b.emulator.machine] == b.core.cpu
        cores[name] = b.core.flags
    assert cores["stm32f746"] == ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16")
    assert cores["stm32f412"] == ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
    assert cores["stm32h743"][0] == "-mcpu=cortex-m7" and "-mfpu=fpv5-d16" in cores["stm32h743"]


def test_the_f412_is_the_papers_first_budget():
    b = load_board("stm32f412")
    assert (b.sram_bytes, b.flash_bytes, b.clock_hz) == (256 * 1024, 1024 * 1024, 100_000_000)
    assert [i.name for i in images(b)] == ["board", "emu"] and b.emulator.machine == "mps2-an386"


def test_every_port_has_its_files():
    for files in PORT_SOURCES.values():
        assert all((FIRMWARE / f).is_file() for f in files)
    assert {p.stem[len("port_"):] for p in FIRMWARE.glob("port_*.c")} == set(PORT_SOURCES)


@pytest.mark.parametrize("name", ["../boards/stm32f746", "boards/stm32f746.toml", "/etc/passwd", "nope"])
def test_board_takes_names_only(name):
    r = qetool("score", PAPER, "--board", name)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"error: unknown board {name!r}" in r.stderr and "stm32f412, stm32f746, stm32h743" in r.stderr


def test_board_and_board_file_exclude_each_other(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(F412)
    r = qetool("compile", PAPER, "--board", "stm32f412", "--board-file", str(path), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "exactly one of --board NAME and --board-file PATH" in r.stderr


def test_a_board_file_of_ones_own(tmp_path):
    text = F412.replace('name = "stm32f412"', 'name = "myboard"').replace("262_144", "270_336")
    path = tmp_path / "my.toml"
    path.write_text(text)
    out = tmp_path / "build"
    r = qetool("compile", PAPER, "--board-file", str(path), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "of myboard's 264.0 KB" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["board"] == "myboard" and manifest["board_file"] == "board.toml"
    assert (out / "board.toml").read_text() == text
    path.unlink()  # later commands read build/'s copy
    assert BuildDir(out).board.sram_bytes == 270_336
    r = qetool("score", PAPER, "--board-file", str(out / "board.toml"), "--json")
    assert json.loads(r.stdout)["budget_sram_bytes"] == 270_336 - 13_824


@pytest.mark.parametrize("edit, message", [
    (("[core]\ncpu = \"cortex-m4\"", "[core]\ncpu = \"cortex-m0\""), "core.cpu: 'cortex-m0' is not one of cortex-m4, cortex-m7"),
    (("fpu = \"fpv4-sp-d16\"", "fpu = \"fpv5-d16\""), "core.fpu: 'fpv5-d16' is not one of none, fpv4-sp-d16"),
    (("sram_bytes = 262_144", "sram_bytes = \"256KB\""), "physical.sram_bytes: '256KB' is not a non-negative integer"),
    (("machine = \"mps2-an386\"", "machine = \"mps2-an500\""), "emulator.machine: mps2-an500 is a cortex-m7, the board a cortex-m4"),
    (("port = \"stm32f412\"", "port = \"esp32\""), "port: 'esp32' is not one of mps2, stm32f746, stm32f412, stm32h743"),
    (("clock_hz = 100_000_000\n", ""), "clock_hz: missing"),
    (("name = \"stm32f412\"", "name = \"a/b\""), "name: 'a/b' is not a name"),
    (("flash_bytes = 4_096", "flash_bytes = 2_000_000"), "reserved.flash_bytes: not below physical.flash_bytes"),
    (("[physical]", "[physical"), "not a valid TOML file"),
])
def test_bad_board_files_are_one_error_line(tmp_path, edit, message):
    assert edit[0] in F412
    path = tmp_path / "bad.toml"
    path.write_text(F412.replace(*edit))
    r = qetool("score", PAPER, "--board-file", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: {path}: ") and message in r.stderr


def test_unreadable_board_files(tmp_path):
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00name")
    for path, message in ((tmp_path / "missing.toml", "cannot read (No such file or directory)"),
                          (tmp_path / "bin.toml", "not a UTF-8 text file (byte 0): a TOML board file expected")):
        with pytest.raises(QetoolError, match=re.escape(message)):
            load_board_file(path)


def test_the_device_package_imports_on_its_own():
    modules = sorted(p.stem for p in (ROOT / "qetool" / "device").glob("*.py") if p.stem != "__init__")
    assert "boards" in modules and "emulator" in modules
    for m in modules:
        r = subprocess.run([sys.executable, "-c", f"import qetool.device.{m}"], capture_output=True, text=True)
        assert r.returncode == 0, f"qetool.device.{m}: {r.stderr}"
    assert not (ROOT / "qetool" / "target").exists()


def test_help_is_fast():
    qetool("--help")  # warm the file cache
    start = time.perf_counter()
    r = qetool("--help")
    assert r.returncode == 0 and time.perf_counter() - start < 0.5
