"""qetool's kernels against CMSIS-NN's on the same shapes, in one emulator run.

One QEMU image (mps2-an500, Cortex-M7, -O2) holds qetool's kernels and CMSIS-NN's
(arm_convolve_wrapper_s8/_s4, arm_depthwise_conv_wrapper_s8/_s4, and for the head
arm_avgpool_s8 then arm_fully_connected_s8/_s4), built from the sources given by path
(Apache-2.0, kept outside the project). The shapes: those of ../shared/notes/emulator.md
and every distinct layer shape of examples/paper_256k_1m.json and examples/mcunet_style_80.json.
The head runs at 8 bits only: an arch.json head's input always is (arch.HEAD_BITS).
Each kernel call is counted exactly by the TCG plugin between two marks; CMSIS-NN's outputs are
checked against a numpy model of TFLite's arithmetic (qetool.compiler.tflm_math), qetool's
kernels are bit-exact in `make test`. qetool's kernels get their planned scratch and `--room`
bytes more (default 0: a layer at its network's memory peak; in a network most layers have free
arena around their scratch, docs/kernels.md). Prints instructions per MAC per shape and width
and the ratio to CMSIS-NN int8.

    python bench/vs_cmsis_nn.py [--cmsis-nn DIR] [--cmsis-core DIR] [--room BYTES] [--json]
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qetool import arch as A  # noqa: E402
from qetool.arch import HEAD_BITS  # noqa: E402
from qetool.compiler import firmware, tflm_math  # noqa: E402
from qetool.compiler.arch_graph import graph_of, graph_plan  # noqa: E402
from qetool.compiler.calibrate import random_checkpoint  # noqa: E402
from qetool.compiler.kernels import ALL_WIDTH_HELPERS  # noqa: E402
from qetool.compiler.lower import lower  # noqa: E402
from qetool.compiler.pack import act_bytes, kernel_order, pack_padded  # noqa: E402
from qetool.compiler.plan import plan, scratch_bytes  # noqa: E402
from qetool.compiler.render import render_sources  # noqa: E402
from qetool.device.boards import load_board  # noqa: E402
from qetool.device.emulator import MARKER, plugin, read_marks, symbol_address  # noqa: E402
from qetool.paths import FIRMWARE  # noqa: E402
from qetool.table import render  # noqa: E402

SHARED = ROOT.parent / "shared" / "third_party"
HARNESS = Path(__file__).with_name("cmsis_nn") / "harness.c"
WIDTHS = ((8, 8), (6, 6), (4, 4))
"""qetool's (bits_a, bits_w) per shape."""
KINDS = {"conv1x1": 0, "dwconv": 1, "conv": 2, "head": 3}
NN_CONV_S8, NN_DW_S8, NN_CONV_S4, NN_DW_S4, NN_HEAD_S8, NN_HEAD_S4 = 10, 11, 12, 13, 14, 15
CASE = struct.Struct("<17I4i4I")
MARK_PAIR = 3
"""Instructions of an empty pair of marks (../shared/notes/emulator.md)."""


@dataclass(frozen=True)
class Shape:
    """One layer shape: op (conv = the stem, conv1x1, dwconv, head), input H x W x Cin, Cout,
    kernel, stride; padding k // 2 (SAME for odd k). The head is a global average pool and a
    fully connected layer to Cout classes; its MACs count the pool's additions, as qetool's
    profile does."""

    op: str
    h: int
    w: int
    cin: int
    cout: int
    k: int
    stride: int

    @property
    def out(self) -> tuple[int, int]:
        if self.op == "head":
            return 1, 1
        return (self.h - 1) // self.stride + 1, (self.w - 1) // self.stride + 1

    @property
    def macs(self) -> int:
        if self.op == "head":
            return self.h * self.w * self.cin + self.cin * self.cout
        ho, wo = self.out
        per = self.k * self.k * (1 if self.op == "dwconv" else self.cin)
        return ho * wo * self.cout * per

    @property
    def label(self) -> str:
        if self.op == "head":
            return f"head {self.h}x{self.w}x{self.cin}->{self.cout}"
        name = {"conv": f"stem {self.k}x{self.k}", "conv1x1": "1x1",
                "dwconv": f"dw {self.k}x{self.k}"}[self.op]
        return f"{name} s{self.stride} {self.h}x{self.w}x{self.cin}->{self.cout}"

    @property
    def pad(self) -> tuple[int, int, int, int]:
        """top, bottom, left, right: SAME as qetool's arch layers pad (none for the head)."""
        if self.op == "head":
            return 0, 0, 0, 0
        ho, wo = self.out
        ph = max((ho - 1) * self.stride + self.k - self.h, 0)
        pw = max((wo - 1) * self.stride + self.k - self.w, 0)
        return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


NOTES_SHAPES = (Shape("conv1x1", 40, 40, 32, 96, 1, 1), Shape("conv1x1", 20, 20, 96, 32, 1, 1),
                Shape("dwconv", 40, 40, 96, 96, 5, 1), Shape("dwconv", 40, 40, 96, 96, 3, 2),
                Shape("conv", 80, 80, 3, 16, 3, 2))
"""The shapes whose CMSIS-NN figures ../shared/notes/emulator.md gives."""


def arch_shapes(path: Path) -> list[Shape]:
    return [Shape(layer.op, layer.h_in, layer.w_in, layer.cin, layer.cout, layer.kernel, layer.stride)
            for layer in A.layers(A.load(path))]


def all_shapes() -> list[Shape]:
    out: list[Shape] = []
    for s in (*NOTES_SHAPES, *arch_shapes(ROOT / "examples" / "paper_256k_1m.json"),
              *arch_shapes(ROOT / "examples" / "mcunet_style_80.json")):
        if s not in out:
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# The cases: header and data per kernel call, as harness.c reads them.


@dataclass
class Case:
    shape: Shape
    kind: int
    bits: tuple[int, int]
    header: bytes
    data: bytes
    out_bytes: int
    expect: np.ndarray | None


def _requant(rng: np.random.Generator, cout: int) -> tuple[np.ndarray, np.ndarray]:
    return (rng.integers(1 << 30, (1 << 31) - 1, cout, dtype=np.int64).astype(np.int32),
            rng.integers(-1000, 1000, cout).astype(np.int32))


def qetool_case(s: Shape, a: int, wb: int, rng: np.random.Generator, room: int) -> Case:
    """qetool's kernel at a-bit activations and wb-bit weights, unsigned codes in and out (the
    head: signed 8-bit codes in, as arch.json networks give it, int8 weights and logits), with
    `room` bytes beyond its planned scratch."""
    ho, wo = s.out
    head = s.op == "head"
    wb = 8 if head else wb
    lo_x = -(1 << (a - 1)) if head else 0
    x = rng.integers(lo_x, lo_x + (1 << a), (s.h, s.w, s.cin))
    lo_w, hi_w = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    per = 1 if s.op == "dwconv" else s.cin
    w = rng.integers(lo_w, hi_w + 1, (s.cout, per, s.k, s.k))
    mult, bias = _requant(rng, s.cout)
    shift = np.full(s.cout, 38, np.int32)
    packed_w = pack_padded(kernel_order(s.op, w), wb)
    packed_x = pack_padded(x, a)
    bits_out, lo, hi = (8, -128, 127) if head else (a, 0, (1 << a) - 1)
    out_bytes = s.cout if head else act_bytes(ho, wo, s.cout, a)
    scratch = scratch_bytes(s.op, s.k, s.cin, s.h, s.w, s.pad) + room
    header = CASE.pack(KINDS[s.op], s.h, s.w, s.cin, s.cout, s.k, s.stride, *s.pad, ho, wo, a, wb, bits_out,
                       int(head), lo, hi, 0, 0, len(packed_x), len(packed_w), out_bytes, scratch)
    data = packed_x + packed_w + bias.tobytes() + mult.tobytes() + shift.tobytes()
    return Case(s, KINDS[s.op], (a, wb), header, data, out_bytes, None)


def _tflm_head(s: Shape, x: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: np.ndarray,
               shift: np.ndarray, in_off: int, out_off: int) -> np.ndarray:
    """CMSIS-NN's average pool over the whole map (sum / count rounded half away from zero,
    int8 with zero point -in_off) and TFLite's int8 fully connected layer (w: K x C, one
    multiplier and shift)."""
    total, count = x.astype(np.int64).sum(axis=(0, 1)), s.h * s.w
    pooled = np.clip(np.sign(total) * ((np.abs(total) + count // 2) // count), -128, 127)
    acc = (pooled + in_off) @ w.T.astype(np.int64) + bias
    y = tflm_math.multiply_by_quantized_multiplier(acc, mult[0], shift[0]) + out_off
    return np.clip(y, -128, 127).astype(np.int8)


def _tflm_conv(s: Shape, x: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: np.ndarray,
               shift: np.ndarray, in_off: int, out_off: int) -> np.ndarray:
    """TFLite's int8 convolution (w: O x kh x kw x I) or depthwise (w: 1 x kh x kw x C)."""
    t, b, left, r = s.pad
    xp = np.pad(x.astype(np.int64) + in_off, ((t, b), (left, r), (0, 0)))
    ho, wo = s.out
    acc = np.zeros((ho, wo, s.cout), np.int64)
    for ky in range(s.k):
        for kx in range(s.k):
            win = xp[ky:ky + s.stride * (ho - 1) + 1:s.stride, kx:kx + s.stride * (wo - 1) + 1:s.stride]
            if s.op == "dwconv":
                acc += win * w[0, ky, kx]
            else:
                acc += win @ w[:, ky, kx, :].T.astype(np.int64)
    y = tflm_math.multiply_by_quantized_multiplier(acc + bias, mult, shift) + out_off
    return np.clip(y, -128, 127).astype(np.int8)


def cmsis_case(s: Shape, int4: bool, rng: np.random.Generator) -> Case:
    """CMSIS-NN's int8 kernel (int4 weights with `int4`), its expected output from numpy; the
    head is arm_avgpool_s8 then arm_fully_connected_s8 (_s4), with one multiplier and shift."""
    ho, wo = s.out
    x = rng.integers(-128, 128, (s.h, s.w, s.cin)).astype(np.int8)
    wshape = {"dwconv": (1, s.k, s.k, s.cout), "head": (s.cout, s.cin)}.get(s.op, (s.cout, s.k, s.k, s.cin))
    w = rng.integers(-8, 8, wshape) if int4 else rng.integers(-127, 128, wshape)
    mult, bias = _requant(rng, s.cout)
    shift = np.full(s.cout, -9, np.int32)
    in_off, out_off = 128, -128
    if s.op == "head":
        mult[:] = mult[0]
    flat = w.astype(np.int8).reshape(-1)
    if int4:  # two weights a byte, the first in the low nibble
        flat = np.concatenate([flat, np.zeros(len(flat) % 2, np.int8)]).astype(np.int16) & 0xF
        wbytes = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    else:
        wbytes = flat.tobytes()
    kind = {("dwconv", False): NN_DW_S8, ("dwconv", True): NN_DW_S4, ("head", False): NN_HEAD_S8,
            ("head", True): NN_HEAD_S4}.get((s.op, int4), NN_CONV_S4 if int4 else NN_CONV_S8)
    out_bytes = ho * wo * s.cout
    header = CASE.pack(kind, s.h, s.w, s.cin, s.cout, s.k, s.stride, *s.pad, ho, wo, 8, 4 if int4 else 8,
                       8, 1, -128, 127, in_off, out_off, x.size, len(wbytes), out_bytes, 0)
    data = x.tobytes() + wbytes + bias.tobytes() + mult.tobytes() + shift.tobytes()
    expect = (_tflm_head if s.op == "head" else _tflm_conv)(s, x, w, bias, mult, shift, in_off, out_off)
    return Case(s, kind, (8, 4 if int4 else 8), header, data, out_bytes, expect)


# ---------------------------------------------------------------------------------------------
# Build and run.


def kernel_sources(out: Path) -> None:
    """qetool's generated kernels with every width helper (the kernels do not depend on the
    network they come with)."""
    arch = A.load(ROOT / "examples" / "mcunet_style_80.json")
    model = lower(random_checkpoint(arch, 0))
    g = graph_of(model)
    sources = render_sources(g, graph_plan(g, plan(arch)), model.model_hash, widths=ALL_WIDTH_HELPERS)
    for name, text in sources.items():
        if name.startswith("qe_model_kernels"):
            (out / name).write_text(text)


def build(work: Path, cmsis_nn: Path, cmsis_core: Path) -> Path:
    board = load_board("stm32f746")
    image = firmware.images(board, full_map=True)[0]
    (work / "bench.ld").write_text(firmware.linker_script(board, image))
    kernel_sources(work)
    nn = [p for p in sorted((cmsis_nn / "Source").rglob("*.c"))
          if not p.stem.endswith(("_f16", "_f32"))]
    elf = work / "bench.elf"
    cmd = ["arm-none-eabi-gcc", *board.core.flags, firmware.OPT, "-ffunction-sections", "-fdata-sections",
           f"-I{cmsis_nn / 'Include'}", f"-I{cmsis_core}", f"-I{work}", "-nostartfiles",
           "--specs=nano.specs", "-Wl,--gc-sections", f"-Wl,-T,{work / 'bench.ld'}", "-o", str(elf),
           str(FIRMWARE / "startup.c"), str(HARNESS), str(work / "qe_model_kernels.c"), *map(str, nn)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"error: the benchmark image did not build: {r.stderr.strip()[:2000]}")
    return elf


def run(elf: Path, work: Path, cases: list[Case]) -> list[int]:
    """Instructions of each case's kernel call; checks CMSIS-NN's outputs."""
    with open(work / "cases.bin", "wb") as f:
        f.write(struct.pack("<I", len(cases)))
        for c in cases:
            f.write(c.header + c.data)
    lib = plugin()
    if lib is None:
        sys.exit("error: the counting plugin needs a host gcc")
    counts = work / "counts.txt"
    cmd = ["qemu-system-arm", "-M", "mps2-an500", "-nographic", "-monitor", "none", "-kernel", str(elf),
           "-semihosting-config", "enable=on,target=native", "-serial", "null",
           "-plugin", f"{lib},marker={symbol_address(elf, MARKER):#x},out={counts}"]
    r = subprocess.run(cmd, cwd=work, capture_output=True, timeout=600)
    if r.returncode:
        sys.exit(f"error: the benchmark image exited with {r.returncode}")
    marks = read_marks(counts)
    out = (work / "outputs.bin").read_bytes()
    pos, result = 0, []
    for i, c in enumerate(cases):
        got = np.frombuffer(out[pos:pos + c.out_bytes], np.int8)
        pos += c.out_bytes
        if c.expect is not None and not np.array_equal(got, c.expect.reshape(-1)):
            sys.exit(f"error: CMSIS-NN's output differs from the reference on {c.shape.label}")
        result.append(marks[2 * i + 1] - marks[2 * i] - MARK_PAIR)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cmsis-nn", type=Path, default=SHARED / "CMSIS-NN")
    ap.add_argument("--cmsis-core", type=Path, default=SHARED / "CMSIS-Core" / "CMSIS" / "Core" / "Include")
    ap.add_argument("--room", type=int, default=0, metavar="BYTES",
                    help="free arena beyond each qetool kernel's planned scratch")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    if args.room < 0 or args.room % 4:
        sys.exit(f"error: --room {args.room}: give a multiple of 4 bytes, 0 or more")
    for d in (args.cmsis_nn / "Include", args.cmsis_core):
        if not d.is_dir():
            sys.exit(f"error: {d}: no such folder (--cmsis-nn DIR, --cmsis-core DIR)")
    rng = np.random.default_rng(0)
    shapes = all_shapes()
    per_shape = [[cmsis_case(s, False, rng), cmsis_case(s, True, rng),
                  *(qetool_case(s, a, w, rng, args.room) if s.op != "head" or a == HEAD_BITS else None
                    for a, w in WIDTHS)] for s in shapes]  # an arch.json head's input is 8-bit
    cases = [c for row in per_shape for c in row if c is not None]
    with tempfile.TemporaryDirectory(prefix="qetool-vs-cmsis-") as tmp:
        work = Path(tmp)
        counts = iter(run(build(work, args.cmsis_nn, args.cmsis_core), work, cases))
    rows, doc = [], []
    for s, row in zip(shapes, per_shape):
        base = [next(counts) / s.macs if c is not None else None for c in row]
        rec = {"shape": asdict(s), "label": s.label, "macs": s.macs, "cmsis_nn_s8": base[0],
               "cmsis_nn_s4": base[1], **{f"qetool_a{a}w{w}": v for (a, w), v in zip(WIDTHS, base[2:])}}
        doc.append(rec)
        rows.append((s.label, f"{s.macs:,}", f"{base[0]:.2f}", f"{base[1]:.2f}",
                     *(f"{v:.2f} ({v / base[0]:.2f}x)" if v is not None else "-" for v in base[2:])))
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print("instructions per MAC, QEMU mps2-an500 (Cortex-M7), -O2, exact counts; (ratio to CMSIS-NN s8);"
          f" qetool's room beyond its planned scratch: {args.room:,} B")
    print(render(("shape", "MACs", "CMSIS-NN s8", "CMSIS-NN s4",
                  *(f"qetool a{a}w{w}" for a, w in WIDTHS)), rows))


if __name__ == "__main__":
    main()
