"""qetool against TensorFlow Lite Micro on the same .tflite models, in one run.

For each model (../shared/models/*.tflite by default, or the files given): TFLM's smallest arena
that its interpreter accepts (bisected, each size probed in a subprocess since some sizes crash
it) and its activation plan (the arena's head in its allocation report); qetool's arena split
into activations and scratch; Flash (the flatbuffer TFLM stores; qetool's weights, per-channel
data and measured code); qetool's exact instructions per inference in QEMU (mps2-an500, the
counting plugin); and whether every node of qetool's golden model and the device's output equal
TFLM's, on a random input; the TFLite interpreter's reference kernels give a second opinion.

    python bench/vs_tflm.py [--models DIR] [model.tflite ...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qetool.compiler import ir_golden, tflm_ref  # noqa: E402
from qetool.compiler.compile import compile_model  # noqa: E402
from qetool.device.boards import load_board  # noqa: E402
from qetool.device.builddir import BuildDir  # noqa: E402
from qetool.device.profile import model_code_bytes  # noqa: E402
from qetool.device.session import connect  # noqa: E402
from qetool.table import render  # noqa: E402

PROBE = """
import sys
from tflite_micro.python.tflite_micro import runtime
itp = runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=int(sys.argv[2]))
itp.print_allocations()
"""


def tflm_accepts(path: Path, size: int) -> str | None:
    """TFLM's allocation report for an arena of `size` bytes, None if it refuses (or crashes)."""
    r = subprocess.run([sys.executable, "-c", PROBE, str(path), str(size)], capture_output=True, text=True)
    text = r.stdout + r.stderr   # TFLM's report goes to stderr
    return text if r.returncode == 0 and "allocation total" in text else None


def tflm_smallest_arena(path: Path) -> tuple[int, int]:
    """(smallest accepted arena, its head: the activation plan), by bisection over 16-byte steps."""
    lo, hi = 1024, 1 << 20
    while tflm_accepts(path, hi) is None:
        if hi > 1 << 26:
            sys.exit(f"{path}: TFLM's interpreter refuses every arena up to 64 MB")
        hi *= 2
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if tflm_accepts(path, mid) is None:
            lo = mid
        else:
            hi = mid
    head = int(re.search(r"allocation head (\d+)", tflm_accepts(path, hi)).group(1))
    return hi, head


def litert_second_opinion(path: Path, codes: np.ndarray, want: list[int]) -> str:
    """The TFLite interpreter with its reference kernels (BUILTIN_REF; its default optimized
    kernels differ from TFLM by a few steps) on the same input: "same", "DIFFERENT", "refuses
    the file" or "not installed". ai-edge-litert is the maintained successor of tflite-runtime
    (whose last release, 2.14.0, fails under numpy 2); tflite_runtime is taken when present."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, OpResolverType
        except ImportError:
            return "not installed"
    try:
        itp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        itp.allocate_tensors()
    except (ValueError, RuntimeError):
        return "refuses the file"
    d = itp.get_input_details()[0]
    itp.set_tensor(d["index"], codes.reshape(d["shape"]).astype(d["dtype"]))
    itp.invoke()
    got = itp.get_tensor(itp.get_output_details()[0]["index"]).reshape(-1).tolist()
    return "same" if got == want else "DIFFERENT"


def measure(path: Path, work: Path) -> dict:
    data = path.read_bytes()
    arena, head = tflm_smallest_arena(path)
    out = work / path.stem
    compile_model(path, load_board("stm32f746"), out, force=True, build_firmware=True)
    build = BuildDir(out)
    report, g = build.report, build.graph.graph
    x = np.random.default_rng(0).integers(-128, 128, size=g.input_tensor().hwc)
    ours = ir_golden.run(g, x)
    ref = tflm_ref.TflmReference(data).run(g, x)
    same = tflm_ref.first_difference(g, {n.name: ours[n.output] for n in g.nodes}, ref) is None
    with connect(build, True, None) as session:
        r = session.infer(codes=x)
    want = ref[g.nodes[-1].name].reshape(-1).tolist()
    same &= r.logits == want
    return {"model": path.name, "tflm_arena": arena, "tflm_activations": head,
            "arena": report["arena_bytes"], "activations": report["activation_bytes"],
            "scratch": report["scratch_peak_bytes"], "overhead": report["scratch_overhead_bytes"],
            "flatbuffer": len(data),
            "weights": report["weights_flash_bytes"], "channel": report["channel_data_bytes"],
            "code": model_code_bytes(build.elf("emu"), build.name), "instructions": r.count,
            "macs": sum(l.macs for l in build.program.layers), "exact": same,
            "litert": "n/a (float edges)" if g.float_input else litert_second_opinion(path, x, want)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--models", dest="folder", type=Path, default=ROOT.parent / "shared" / "models")
    args = ap.parse_args()
    paths = args.models or sorted(args.folder.glob("*.tflite"))
    if not paths:
        sys.exit(f"no .tflite models in {args.folder}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(p, Path(tmp)) for p in paths]
    print(render(("model", "TFLM arena B", "qetool arena B", "ratio", "TFLM activations B",
                  "qetool activations B", "qetool largest scratch B (arena beyond activations)"),
                 [(r["model"], f"{r['tflm_arena']:,}", f"{r['arena']:,}", f"{r['arena'] / r['tflm_arena']:.2f}x",
                   f"{r['tflm_activations']:,}", f"{r['activations']:,}", f"{r['scratch']:,} ({r['overhead']:,})")
                  for r in rows]))
    print()
    print(render(("model", "flatbuffer B", "weights B", "per-channel B", "code B", "qetool Flash B",
                  "instructions", "per MAC", "bit-exact", "TFLite ref kernels"),
                 [(r["model"], f"{r['flatbuffer']:,}", f"{r['weights']:,}", f"{r['channel']:,}", f"{r['code']:,}",
                   f"{r['weights'] + r['channel'] + r['code']:,}", f"{r['instructions']:,}",
                   f"{r['instructions'] / r['macs']:.2f}", "yes" if r["exact"] else "NO", r["litert"])
                  for r in rows]))
    if not all(r["exact"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
