"""Bad input, odd outputs and faults: one `error:` line and exit 2, nothing half-written or
clobbered, and outputs that leave devices, links and modes as they were."""

import errno
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import EXAMPLES
from test_host_exact import matrix_archs

from qetool import arch as A
from qetool import checkpoint, fileio
from qetool.compiler.calibrate import random_checkpoint
from qetool.errors import QetoolError
from qetool.preprocess import list_images, load_pixels, read_image
from qetool.units import parse_size

QETOOL = [sys.executable, "-m", "qetool"]
PAPER = str(EXAMPLES / "paper_256k_1m.json")
SEARCH = ["search", "--board", "stm32f746", "--iterations", "20", "--population", "4"]


def qetool(*args, **kw):
    return subprocess.run(QETOOL + [str(a) for a in args], capture_output=True, text=True, **kw)


def one_error(r, *words):
    """Exit 2 with exactly one line `error: ...` holding `words` (beside a progress bar), no
    traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip() and not re.search(r"\d+/\d+ \[", line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def small_arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / "small.json"
    A.save(matrix_archs()[1], path)
    return path


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, small_arch):
    out = tmp_path_factory.mktemp("build") / "b"
    r = qetool("compile", small_arch, "--board", "stm32f746", "--force", "-o", out)
    assert r.returncode == 0, r.stderr
    return out


# -- outputs ------------------------------------------------------------------------------------

def test_outputs_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        fileio.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    r = qetool(*SEARCH, "-o", tmp_path / "s.json")
    assert r.returncode == 0 and stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o666 & ~old


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o600)
    fileio.write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symlinked_output_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert qetool(*SEARCH, "-o", link).returncode == 0
    assert link.is_symlink() and A.load(real) == A.load(link)


def test_a_device_output_is_written_not_replaced(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    assert qetool(*SEARCH, "-o", node).returncode == 0
    assert stat.S_ISCHR(node.stat().st_mode)
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full: every write fails
    one_error(qetool(*SEARCH, "-o", full), "no space left on the device")
    assert stat.S_ISCHR(full.stat().st_mode)


def test_a_fifo_output_is_written_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    fileio.write_text(fifo, "through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.parametrize("where, why", [("/proc/qetool-out.json", "cannot write /proc/qetool-out.json"),
                                        ("/sys/qetool-out.json", "cannot write /sys/qetool-out.json")])
def test_outputs_where_nothing_can_be_written(where, why):
    one_error(qetool(*SEARCH, "-o", where), why)


def test_an_output_under_a_file(tmp_path, small_arch):
    (tmp_path / "file").write_text("x")
    one_error(qetool(*SEARCH, "-o", tmp_path / "file" / "a.json"), "Not a directory")
    one_error(qetool("compile", small_arch, "--board", "stm32f746", "--force", "-o", tmp_path / "file"),
              "is a file")
    assert (tmp_path / "file").read_text() == "x"


def test_a_full_disk_leaves_nothing_behind(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "a.json").write_text("old")
    monkeypatch.setattr(fileio.os, "replace", full)
    with pytest.raises(QetoolError, match="no space left on the device"):
        fileio.write_text(tmp_path / "a.json", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "old"


# -- sizes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("256KB", 262144), ("1MB", 1048576), ("1.5KB", 1536), (" 2 mb", 2097152),
                                         ("4GB", 4 * 1024**3), ("327680", 327680)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text, why", [("1TB", "is not a size"), ("9" * 40 + "KB", "more than a Cortex-M can address"),
                                       ("5GB", "more than a Cortex-M can address"), ("0.5B", "whole number"),
                                       ("0", "positive"), ("-1KB", "is not a size"), ("1e3", "is not a size")])
def test_sizes_refused(text, why):
    with pytest.raises(QetoolError, match=why):
        parse_size(text)


def test_a_budget_above_the_board_warns(tmp_path):
    r = qetool(*SEARCH, "--sram", "1MB", "-o", tmp_path / "a.json")
    assert r.returncode == 0
    assert "warning: the SRAM budget 1,048,576 B is above stm32f746's 327,680 B of SRAM" in r.stderr


# -- input files --------------------------------------------------------------------------------

@pytest.mark.parametrize("content, why", [
    ('{"format": "qetool-arch/1"}'.encode("utf-16"), "not a UTF-8 text file"),
    (b"\x1c\x00\x00\x00TFL3\x00\x00\xff\xfe", "a TFLite model; score works on arch.json"),  # a .tflite's first bytes
    (b"\x1c\x00\x00\x00TFL\xff\x00\x00\xff\xfe", "not a UTF-8 text file"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than 8 levels deep"),
    (b'{"format": "qetool-arch/1", "format": "qetool-arch/1"}', "key 'format' appears twice"),
])
def test_arch_files_that_are_not_arch_json(tmp_path, content, why):
    path = tmp_path / "arch.json"
    path.write_bytes(content)
    one_error(qetool("score", path), why)


def _weights(tmp_path, small_arch):
    path = tmp_path / "w.npz"
    checkpoint.save(random_checkpoint(A.load(small_arch), 0), path)
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped"])
def test_damaged_weights_files(tmp_path, small_arch, damage):
    path = _weights(tmp_path, small_arch)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[:len(data) // 2],
                      "flipped": data[:200] + bytes([data[200] ^ 0x40]) + data[201:]}[damage])
    one_error(qetool("compile", small_arch, "--board", "stm32f746", "--weights", path, "-o", tmp_path / "b"),
              str(path))
    assert not (tmp_path / "b").exists()


def test_weights_with_non_finite_steps(tmp_path, small_arch):
    ck = random_checkpoint(A.load(small_arch), 0)
    ck.convs["stem"].w_step[0] = np.nan
    checkpoint.save(ck, tmp_path / "w.npz")
    one_error(qetool("compile", small_arch, "--board", "stm32f746", "--weights", tmp_path / "w.npz",
                     "-o", tmp_path / "b"), "stem.w_step: not every value is finite")


@pytest.mark.parametrize("damage, why", [
    ("missing", "no such file (the lowered model)"), ("empty", "not a readable lowered model"),
    ("truncated", "not a readable lowered model"), ("edited", "damaged or edited")])
def test_damaged_lowered_models(tmp_path, small_build, damage, why):
    b = tmp_path / "b"
    shutil.copytree(small_build, b)
    lowered = b / "lowered.npz"
    data = lowered.read_bytes()
    if damage == "missing":
        lowered.unlink()
    elif damage == "edited":  # a valid npz whose weights were changed: the hash says so
        arrays = dict(np.load(lowered))
        arrays["stem.weights"] = -arrays["stem.weights"]
        np.savez(lowered, **arrays)
    else:
        lowered.write_bytes(b"" if damage == "empty" else data[: len(data) // 3])
    one_error(qetool("eval", b, tmp_path, "--host"), why)
    one_error(qetool("run", b, "--emulator"), why)


@pytest.mark.parametrize("damage, why", [("truncated", "not JSON"), ("list", "not a qetool-build/2 build"),
                                         ("board", "board: missing or not text")])
def test_damaged_manifests_even_for_a_dry_run(tmp_path, small_build, damage, why):
    b = tmp_path / "b"
    shutil.copytree(small_build, b)
    text = (b / "manifest.json").read_text()
    doc = json.loads(text)
    doc["board"] = 7
    (b / "manifest.json").write_text({"truncated": text[: len(text) // 2], "list": "[1, 2]",
                                      "board": json.dumps(doc)}[damage])
    one_error(qetool("flash", b, "--dry-run"), why)


def test_an_edited_manifest_is_refused(tmp_path, small_build):
    b = tmp_path / "b"
    shutil.copytree(small_build, b)
    doc = json.loads((b / "manifest.json").read_text())
    doc["input"]["bytes"] += 4
    (b / "manifest.json").write_text(json.dumps(doc))
    one_error(qetool("eval", b, tmp_path, "--host"), "does not match lowered.npz")


def test_sixteen_bit_pictures_are_scaled(tmp_path):
    from PIL import Image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    px = np.asarray(read_image(tmp_path / "g16.png"))
    assert px.shape == (64, 64, 3) and np.array_equal(px[..., 0], (ramp >> 8).astype(np.uint8))
    assert (load_pixels(tmp_path / "g16.png", 32) == 255).mean() < 0.01


def test_pictures_too_large_to_decode(tmp_path, monkeypatch):
    from PIL import Image

    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(QetoolError, match=r"too large to decode safely \(Image size \(10000 pixels\) exceeds limit"):
        read_image(tmp_path / "big.png")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"not a picture"])
def test_unreadable_pictures(tmp_path, content):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(QetoolError, match="cannot read the image"):
        read_image(tmp_path / "x.png")


def test_hidden_folders_are_not_classes(tmp_path):
    from PIL import Image

    for c in ("a", "b", ".hidden", "a/.thumbs"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / c / "x.png")
    classes, items = list_images(tmp_path)
    assert classes == ["a", "b"] and len(items) == 2


def test_eval_explains_random_weights(tmp_path, small_build):
    from PIL import Image

    classes = json.loads((small_build / "manifest.json").read_text())["num_classes"]
    for c in range(classes):  # one folder per class, as eval expects
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (20, 20), (40, 90, 200)).save(tmp_path / "data" / f"c{c}" / "x.png")
    r = qetool("eval", small_build, tmp_path / "data", "--host")
    assert r.returncode == 0 and "note: this build has seeded random weights (seed 0" in r.stdout


def test_more_layers_than_the_protocol_counts():
    from qetool.compiler.compile import compile_arch
    from qetool.device.boards import load_board

    rows = [A.Row("conv", 3, 2, 3, 4, None, 1, 8, 8)] + [A.Row("mbconv", 3, 1, 4, 4, 4, 64, 4, 4)] * 342
    with pytest.raises(QetoolError, match="65,666 layers: the firmware and its protocol count at most 65,535"):
        compile_arch(A.Arch(8, 2, tuple(rows)), load_board("stm32f746"))


# -- flash --------------------------------------------------------------------------------------

def test_flash_a_build_whose_path_has_a_space(tmp_path, small_build):
    b = tmp_path / "my build"
    shutil.copytree(small_build, b)
    for name in ("board.elf", "board.bin"):
        (b / name).write_bytes(b"\0")
    r = qetool("flash", b, "--dry-run", "--tool", "openocd")
    assert r.returncode == 0, r.stderr
    args = shlex.split(r.stdout)
    assert args[-1] == f"program {{{b / 'board.elf'}}} verify reset exit"
    r = qetool("flash", b, "--dry-run", "--tool", "st-flash")
    assert shlex.split(r.stdout)[-2] == str(b / "board.bin")
    assert "(board.elf with openocd, board.bin with st-flash or pyocd)" in " ".join(qetool("flash", "--help").stdout.split())
