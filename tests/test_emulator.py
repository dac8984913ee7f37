"""Firmware in QEMU (mps2-an500 linked with the STM32F746's sizes, mps2-an386 with the STM32F412's): bit-exact against the
golden model, the serial protocol under faults, run/profile/flash, link-time budget checks.
Skipped without the Arm toolchain or QEMU, except in CI (CI=true), where a skip is a failure."""

import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLES, ROOT
from helpers import oversized_paper
from test_host_exact import matrix_archs

from qetool import arch as A
from qetool.compiler import golden
from qetool.compiler.calibrate import random_pixels
from qetool.compiler import firmware
from qetool.compiler.compile import compile_model
from qetool.device.boards import load_board
from qetool.preprocess import image_codes
from qetool.device import protocol as P
from qetool.device.builddir import BuildDir
from qetool.device.emulator import Emulator, run_batch
from qetool.compiler.hostrun import build_runner, run_build
from qetool.compiler.kernels import ALL_WIDTH_HELPERS
from qetool.compiler.pack import arch_width_helpers
from qetool.device.profile import model_code_bytes, symbol_sizes
from qetool.device.serial import Device, DeviceError, Link
from qetool.errors import QetoolError
from qetool.device.session import Session

QETOOL = [sys.executable, "-m", "qetool"]
MISSING = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
if MISSING:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {', '.join(MISSING)} (make test installs them)", pytrace=False)
    pytest.skip(f"{', '.join(MISSING)} not installed (Debian: gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi qemu-system-arm)", allow_module_level=True)


def _build(tmp, arch: A.Arch, name: str, seed: int = 0, board: str = "stm32f746"):
    path = tmp / f"{name}.json"
    A.save(arch, path)
    compile_model(path, load_board(board), tmp / name, seed=seed, force=True, build_firmware=True)
    return BuildDir(tmp / name)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("small"), matrix_archs()[1], "small", seed=3)


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("paper"), A.load(EXAMPLES / "paper_256k_1m.json"), "paper")


def _batch_matches_golden_and_host(build: BuildDir, tmp, images: int):
    m = build.model
    imgs = [image_codes(random_pixels(m.arch, 7, i), m.input_bits) for i in range(images)]
    emu = run_batch(build.board.emulator.machine, build.elf("emu"),
                    [build.program.pack(img) for img in imgs], m.arch.num_classes,
                    len(m.layers), build.report["arena_bytes"])
    host = run_build(build.path, build_runner(build.path, tmp / "runner", opt="-O1"), imgs, arena=True)
    for i, img in enumerate(imgs):
        want = golden.run(m, img)
        assert emu.logits[i] == want.logits.tolist() and emu.labels[i] == want.label
        assert emu.arenas[i] == host[i].arena  # every byte the inference left in the arena
    assert emu.counts is not None and len(emu.counts) == images
    c = emu.counts[0]
    assert len(c.layers) == len(m.layers) and 0 < sum(c.layers) < c.total
    return emu


@pytest.mark.parametrize("index", [0, 3, 5])
def test_mixed_precision_archs_are_bit_exact_in_qemu(tmp_path, index):
    """Bit-exact with only the width helpers its layers need in the image (each arch has its own
    set), and their code as the table counts it."""
    build = _build(tmp_path, matrix_archs()[index], f"m{index}", seed=index)
    _batch_matches_golden_and_host(build, tmp_path, images=3)
    elf = build.elf("emu")
    sizes = symbol_sizes(elf, tuple(f"{build.name}_{h}" for h in ALL_WIDTH_HELPERS))
    assert {h for h in ALL_WIDTH_HELPERS if sizes[f"{build.name}_{h}"]} == arch_width_helpers(build.model.arch)
    code = model_code_bytes(elf, build.name)
    assert abs(build.report["code_flash_bytes"] - code) <= 0.05 * code


def test_paper_network_is_bit_exact_in_qemu(paper, tmp_path):
    _batch_matches_golden_and_host(paper, tmp_path, images=2)


def test_counts_repeat_to_the_instruction_on_a_busy_host(small):
    """Per-layer and total counts are the same in every run and for every input: no interrupt
    lands in a counted region and no kernel's cost depends on the data. Two busy processes load
    the machine meanwhile (an idle host could pass by luck)."""
    m = small.model
    inputs = [small.program.pack(image_codes(random_pixels(m.arch, 11, i), m.input_bits))
              for i in range(2)]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        runs = [run_batch(small.board.emulator.machine, small.elf("emu"), inputs, m.arch.num_classes,
                          len(m.layers)).counts for _ in range(3)]
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    counts = [c for run in runs for c in run]
    assert len(counts) == 6 and all(c == counts[0] for c in counts), [c.total for c in counts]


def _raw(emu, frame: bytes, wait: float = 1.0) -> list[P.Frame]:
    """Send raw bytes, collect the frames that come back within `wait` seconds."""
    emu.port.write(frame)
    d, out, end = P.Decoder(), [], time.monotonic() + wait
    while time.monotonic() < end:
        out += d.feed(emu.port.read(4096))
        if out and wait < 1.0:
            break
    return out


def _error(frames):
    assert len(frames) == 1 and frames[0].type == P.ERROR_TYPE, frames
    return P.Error(frames[0].payload[0])


def test_uart_protocol_in_qemu(small):
    m = small.model
    with Emulator(small.board.emulator.machine, small.elf("emu")) as emu:
        session = Session(small, Device(Link(emu.port)), emu)
        assert session.hello.model_hash == small.manifest["model_hash"]
        assert session.hello.input_bytes == small.input_bytes
        with pytest.raises(DeviceError, match="NO_IMAGE"):
            session.device.infer(m.arch.num_classes, len(m.layers))
        pixels = random_pixels(m.arch, 5)
        r = session.infer(pixels)
        want = golden.run(m, image_codes(pixels, m.input_bits))
        assert r.logits == want.logits.tolist() and r.label == want.label
        assert r.count and len(r.layer_counts) == len(m.layers)

        # corrupted: CRC error, with the frame's seq
        bad = bytearray(P.encode(P.Type.HELLO, 200))
        bad[-2] ^= 0x10
        assert _error(_raw(emu, bytes(bad), 0.5)) == P.Error.CRC
        # oversized length
        over = b"QE" + bytes([P.Type.LOAD, 201]) + (P.MAX_PAYLOAD + 1).to_bytes(4, "little")
        assert _error(_raw(emu, over, 0.5)) == P.Error.OVERSIZE
        # unknown type, bad lengths
        assert _error(_raw(emu, P.encode(0x42, 202), 0.5)) == P.Error.UNKNOWN_TYPE
        assert _error(_raw(emu, P.encode(P.Type.INFER, 203, b""), 0.5)) == P.Error.BAD_LENGTH
        # out of range and out of order chunks
        far = P.LOAD_REQUEST.pack(small.input_bytes) + b"x"
        assert _error(_raw(emu, P.encode(P.Type.LOAD, 204, far), 0.5)) == P.Error.OUT_OF_RANGE
        skip = P.LOAD_REQUEST.pack(8) + b"x"
        assert _error(_raw(emu, P.encode(P.Type.LOAD, 205, skip), 0.5)) == P.Error.OUT_OF_ORDER
        # truncated: nothing comes back; after the frame timeout the next frame is served
        assert _raw(emu, P.encode(P.Type.HELLO, 206)[:7], 0.5) == []
        time.sleep(P.FRAME_TIMEOUT_MS / 1000 + 0.1)
        hello = _raw(emu, P.encode(P.Type.HELLO, 207), 0.5)
        assert [f.seq for f in hello] == [207]
        # garbage of every kind, magic included, then the firmware still answers
        rng = random.Random(1)
        junk = bytes(rng.randrange(256) for _ in range(20000)) + b"QE" * 50
        _raw(emu, junk, 1.0)
        time.sleep(P.FRAME_TIMEOUT_MS / 1000 + 0.1)
        assert session.device.hello().model_hash == small.manifest["model_hash"]
        # a repeated seq is answered from the cache: the inference does not run twice
        session.device.load(small.program.pack(image_codes(pixels, m.input_bits)))
        marks = len(emu.marks())
        infer = P.encode(P.Type.INFER, 99, b"\0")
        first, again = _raw(emu, infer, 0.8), _raw(emu, infer, 0.8)
        assert first == again and first[0].type == P.Type.INFER | P.RESPONSE
        assert len(emu.marks()) - marks == 2 + 2 * len(m.layers)
        stats = session.device.stats()
        assert stats.frames_bad >= 2 and 0 < stats.stack_used_bytes < stats.stack_bytes


def test_cli_run_check_profile_and_flash(small, tmp_path):
    r = subprocess.run(QETOOL + ["run", str(small.path), "--emulator", "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sample picture: class" in r.stdout and "instructions, golden: same" in r.stdout
    exact = int(r.stdout.split("logits")[1].split(", ")[-2].split()[0].replace(",", ""))
    # without the counting plugin: a SysTick estimate under -icount, labelled as such
    r = subprocess.run(QETOOL + ["run", str(small.path), "--emulator", "--check"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "QETOOL_NO_PLUGIN": "1"})
    assert r.returncode == 0, r.stderr
    assert "instructions (SysTick estimate: no counting plugin), golden: same" in r.stdout
    estimate = int(r.stdout.split("logits")[1].split("], ")[1].split()[0].replace(",", ""))
    assert abs(estimate - exact) <= 0.01 * exact
    r = subprocess.run(QETOOL + ["flash", str(small.path), "--dry-run", "--tool", "st-flash"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == f"st-flash --reset write {small.path}/board.bin 0x8000000"
    # a device running another model is refused by its hash
    other = tmp_path / "other"
    shutil.copytree(small.path, other)
    shutil.copy(_build(tmp_path, matrix_archs()[2], "x").elf("emu"), other / "emu.elf")
    r = subprocess.run(QETOOL + ["run", str(other), "--emulator"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "emu.elf runs model" in r.stderr and "compile with --build again" in r.stderr


def test_check_names_the_first_layer_that_differs(small, tmp_path):
    """A firmware whose b1.project weights differ from the build's (one byte flipped in its
    weights.c, rebuilt): --check fails and names that layer, from a traced inference."""
    bad = tmp_path / "bad"
    shutil.copytree(small.path, bad)
    src = (bad / "src" / "qe_model_weights.c").read_text()
    at = re.search(r"qe_model_b1_project_w\[\d+\] QE_MODEL_WEIGHTS = \{\n    0x", src).end()
    flipped = f"{int(src[at:at + 2], 16) ^ 0x11:02x}"
    (bad / "src" / "qe_model_weights.c").write_text(src[:at] + flipped + src[at + 2:])
    firmware.build_firmware(bad, small.board)
    r = subprocess.run(QETOOL + ["run", str(bad), "--emulator", "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "golden: DIFFERENT" in r.stdout and "first difference at layer b1.project" in r.stdout
    assert "error: the device's logits differ from the golden model" in r.stderr


def _children(pid: int, name: str) -> list[int]:
    """Pids of the live processes called `name` whose parent is `pid` (from /proc)."""
    out = []
    for stat_file in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat_file).read().rsplit(")", 1)
            comm = fields[0].split("(", 1)[1]
            state, ppid = fields[1].split()[:2]
        except (OSError, IndexError):
            continue
        if comm == name[:15] and int(ppid) == pid and state != "Z":
            out.append(int(stat_file.split("/")[2]))
    return out


def test_sigterm_stops_the_emulator_and_cleans_up(paper, tmp_path):
    """SIGTERM to `run --emulator`: exit 143, QEMU gone with it, its temporary folder removed."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(QETOOL + ["run", str(paper.path), "--emulator"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _children(proc.pid, "qemu-system-arm") and time.monotonic() < deadline:
        time.sleep(0.05)
    qemu = _children(proc.pid, "qemu-system-arm")
    assert qemu, "QEMU did not start"
    assert glob.glob(str(tmp_path / "qetool-emu-*"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and b"error: terminated" in err
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{qemu[0]}") or not _children(proc.pid, "qemu-system-arm")
    assert not glob.glob(str(tmp_path / "qetool-emu-*"))


def test_no_emulator_installed_leaves_nothing(small, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": str(tmp_path)}
    r = subprocess.run(QETOOL + ["run", str(small.path), "--emulator"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "error: qemu-system-arm not found" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_emulator_killed_mid_session(small):
    with pytest.raises(QetoolError, match="lost the connection to the emulator"):
        with Emulator(small.board.emulator.machine, small.elf("emu")) as emu:
            session = Session(small, Device(Link(emu.port, name="the emulator")), emu)
            emu.proc.kill()
            emu.proc.wait()
            session.device.hello()


def test_a_deep_network_with_4090_classes_runs(tmp_path):
    """1,082 layers (6 rows of 60 repeats) and 4,090 classes: per-layer counts (4,328 bytes) and
    outputs go out in READ chunks; the class is a u16 (above 255 here)."""
    rows = [A.Row("conv", 3, 2, 3, 4, None, 1, 8, 8)] + [A.Row("mbconv", 3, 1, 4, 4, 4, 60, 4, 4)] * 6
    build = _build(tmp_path, A.Arch(8, 4090, tuple(rows)), "deep")
    assert len(build.model.layers) == 1082
    r = subprocess.run(QETOOL + ["run", str(build.path), "--emulator", "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "golden: same" in r.stdout, r.stdout[-300:] + r.stderr
    label = int(r.stdout.split("class ")[1].split(",")[0])
    assert label > 255


def test_profile_of_the_paper_network(paper):
    r = subprocess.run(QETOOL + ["profile", str(paper.path), "--emulator", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for key in ("elf_flash_bytes", "sram_bytes", "stack_bytes", "arena_bytes", "limit_flash_bytes",
                "limit_sram_bytes", "instructions", "layers"):
        assert key in doc
    assert doc["elf_flash_bytes"] <= doc["limit_flash_bytes"] and doc["sram_bytes"] <= doc["limit_sram_bytes"]
    assert doc["arena_bytes"] == paper.report["arena_bytes"]
    assert sum(l["instructions"] for l in doc["layers"]) < doc["instructions"]
    assert [l["id"] for l in doc["layers"]] == paper.manifest["layers"]
    # the per-kernel code table (pack.KERNEL_CODE_BYTES) stays within 5 % of the ELF
    assert abs(doc["estimate_code_bytes"] - doc["model_code_bytes"]) <= 0.05 * doc["model_code_bytes"]
    # the board file reserves what the runtime really needs beside the model
    board = paper.board
    assert doc["runtime_flash_bytes"] <= board.reserved_flash_bytes
    static = doc["data_bytes"] + doc["bss_bytes"] - doc["arena_bytes"]
    assert static + doc["stack_reserved_bytes"] <= board.reserved_sram_bytes


def test_over_the_board_fails_at_link_time(tmp_path):
    path = tmp_path / "big.json"
    A.save(oversized_paper(EXAMPLES / "paper_256k_1m.json"), path)
    r = subprocess.run(QETOOL + ["compile", str(path), "--board", "stm32f746", "--force", "--build",
                                 "-o", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "error: board.elf does not fit stm32f746 (1,048,576 B Flash, 327,680 B SRAM): over in Flash by" in r.stderr
    assert not (tmp_path / "b").exists()


def test_paper_network_on_the_f412_in_qemu_an386(tmp_path):
    """The issue's flow on the Cortex-M4 board: the paper's network still fits its budget, links
    with its limits, runs bit-exact in mps2-an386; the M4 code table holds for its ELF."""
    out = tmp_path / "f412"
    r = subprocess.run(QETOOL + ["compile", str(EXAMPLES / "paper_256k_1m.json"), "--board", "stm32f412",
                                 "--build", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    build = BuildDir(out)
    assert build.board.core.cpu == "cortex-m4" and build.board.emulator.machine == "mps2-an386"
    assert build.report["arena_bytes"] <= build.board.budget_sram_bytes
    r = subprocess.run(QETOOL + ["run", str(out), "--emulator", "--check"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "golden: same" in r.stdout, r.stderr
    _batch_matches_golden_and_host(build, tmp_path, images=1)
    for elf in ("board", "emu"):
        code = model_code_bytes(build.elf(elf), build.name)
        assert abs(build.report["code_flash_bytes"] - code) <= 0.05 * code


def _reset_handler(elf) -> str:
    dump = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True)
    return dump.stdout.split("<Reset_Handler>:")[1].split("\n\n")[0]


def test_the_board_file_chooses_the_fpu(tmp_path):
    """A soft-float variant of the F412 (fpu = "none", --board-file) builds with -mfloat-abi=soft,
    leaves the FPU off at reset and still runs bit-exact; the F412 itself enables it (CPACR)."""
    text = (ROOT / "boards" / "stm32f412.toml").read_text()
    soft = tmp_path / "soft.toml"
    soft.write_text(text.replace('fpu = "fpv4-sp-d16"', 'fpu = "none"').replace('"stm32f412"', '"f412soft"', 1))
    path = tmp_path / "m.json"
    A.save(matrix_archs()[1], path)
    builds = {}
    for name, option in (("soft", ["--board-file", str(soft)]), ("hard", ["--board", "stm32f412"])):
        r = subprocess.run(QETOOL + ["compile", str(path), *option, "--build", "--force", "-o", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        builds[name] = BuildDir(tmp_path / name)
    assert builds["soft"].board.core.flags[-1] == "-mfloat-abi=soft"
    assert "0xd88" not in _reset_handler(builds["soft"].elf("emu"))
    assert "0xd88" in _reset_handler(builds["hard"].elf("emu"))
    _batch_matches_golden_and_host(builds["soft"], tmp_path, images=1)


def test_h743_image_builds_and_links(tmp_path):
    build = _build(tmp_path, matrix_archs()[4], "h7", board="stm32h743")
    assert (build.path / "board.bin").stat().st_size > 0 and not (build.path / "emu.elf").exists()
    # a small network's code matches the table too (fewer layers, other kernels' share)
    code = model_code_bytes(build.elf("board"), build.name)
    assert abs(build.report["code_flash_bytes"] - code) <= 0.05 * code
