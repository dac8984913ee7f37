"""`qetool calibrate`: fit a board's latency model (docs/latency.md) to exact counts.

Probe networks are generated from a seed (disjoint from every network the tests check the model
on: those are examples/ and seeds of their own), compiled and built, and run once each; every
layer's count is one sample of its kernel's cost terms (qetool.compiler.kernels), every
network's total minus its layers one sample of the per-network terms. The coefficients are the
non-negative least-squares fit per kernel, each sample weighted by 1 / sqrt(count) so that small
layers count too. In the emulator the counts are exact instructions; on a board, DWT cycles.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from qetool import arch as A
from qetool.compiler.calibrate import random_pixels
from qetool.compiler.compile import compile_model
from qetool.compiler.kernels import REGISTRY, LayerShape
from qetool.device.boards import Board
from qetool.device.builddir import BuildDir
from qetool.device.flash import flash
from qetool.device.protocol import Counter
from qetool.device.session import connect
from qetool.errors import QetoolError
from qetool.search.latency import (NET_TERMS, LatencyModel, latency_path, layer_shapes,
                                   save_latency)


@dataclass(frozen=True)
class Measured:
    """One network's exact counts: per layer and the whole inference."""

    arch: A.Arch
    layers: tuple[int, ...]
    total: int


def probe_arch(rng: random.Random) -> A.Arch:
    """A random network of the search space's kind and of MCUNet's and the paper's sizes:
    32-128 px, a 3x3 stride-2 stem, 3-6 rows of kernels 3/5/7, strides 1/2 (ending at 6 px or
    less), 8-96 channels (mostly multiples of 8, as the search draws them, some odd counts),
    expansion 2-6, 1-3 repetitions, every width pair; a quarter are narrow (below)."""
    res = rng.choice((32, 40, 48, 64, 80, 96, 112, 128))
    scale = 64 / res

    # one probe in four is narrow (8-16 channels, expansion 2), so the stem's step is the arena's
    # peak and the stem runs one pixel at a time (no room for a tile), as in searched networks
    # with an 8-wide stem
    narrow = rng.random() < 0.25

    def width() -> int:
        if narrow:
            return rng.choice((8, 16))
        c = max(3, int(rng.randint(8, 96) * min(1.0, scale * 1.6)))
        return c if rng.random() < 0.15 else max(8, c // 8 * 8)
    cout = 8 if narrow else width()
    image_bits = rng.choice((8, rng.randint(5, 7))) if narrow else rng.randint(3, 8)  # the stem's bits_a
    stem_w = rng.choice((8, rng.randint(2, 7))) if narrow else rng.randint(2, 8)
    rows = [A.Row("conv", 3, 2, 3, cout, None, 1, image_bits, stem_w)]
    h = (res - 1) // 2 + 1
    if narrow:  # the stem's step outweighs this block's expand step: image bits > 4/3 of its bits
        first = 3 if image_bits == 5 else rng.randint(3, 4)
        rows.append(A.Row("mbconv", rng.choice((3, 5, 7)), 2, 8, 8, 16, 1, first, rng.randint(2, 8)))
        h = (h - 1) // 2 + 1
    n = rng.randint(3, 6)
    for i in range(n):
        halvings = math.ceil(math.log2(h / 6)) if h > 6 else 0  # end at 6 px or less
        stride = 2 if h >= 4 and (rng.random() < 0.45 or halvings >= n - i) else 1
        h = (h - 1) // stride + 1
        cin, cout = cout, width()
        rep = rng.randint(1, 3)
        btn = max(cin, cout) * (2 if narrow else rng.randint(2, 6)) // (2 if cin > 48 else 1)
        rows.append(A.Row("mbconv", rng.choice((3, 5, 7)), stride, cin, cout,
                          btn if rng.random() < 0.2 else max(8, btn // 8 * 8), rep,
                          tuple(rng.randint(3, 8) for _ in range(rep)),
                          tuple(rng.randint(2, 8) for _ in range(rep))))
    return A.Arch(res, rng.randint(2, 10), tuple(rows))


def measure(arch: A.Arch, board: Board, work: Path, seed: int = 0, port: str | None = None,
            baud: int = 115200, tool: str | None = None) -> Measured:
    """Compile, build, and count one inference of a random picture: in the emulator (exact
    instructions), or on the board at `port` after flashing it with `tool` (DWT cycles)."""
    if port is None and board.emulator is None:
        raise QetoolError(f"{board.name} has no emulator (docs/boards.md): calibrate it with --port")
    path = work / "probe.json"
    A.save(arch, path)
    compile_model(path, board, work / "build", seed=seed, force=port is None, build_firmware=True,
                  full_map=port is None)
    build = BuildDir(work / "build")
    if port is not None:
        flash(build.path, board, tool)
    with connect(build, port is None, port, baud) as session:
        r = session.infer(random_pixels(arch, seed, 0))
    want = Counter.CYCLES if port else Counter.INSTRUCTIONS
    if r.counter != want or r.layer_counts is None:
        raise QetoolError(f"calibration needs exact counts ({want.name.lower()}): "
                          + ("the QEMU counting plugin could not be built (it needs the host gcc "
                             "and QEMU's plugin header)" if port is None else "the board gave none"))
    return Measured(arch, tuple(r.layer_counts), r.count)


def fit(samples: list[Measured]) -> dict[str, float]:
    """The coefficients of every term (see the module docstring)."""
    by_op: dict[str, list[tuple[dict[str, float], int]]] = {}
    net: list[tuple[int, int]] = []
    for m in samples:
        shapes = layer_shapes(m.arch)
        for s, count in zip(shapes, m.layers):
            by_op.setdefault(s.op, []).append((REGISTRY[s.op].terms(s), count))
        net.append((len(shapes), m.total - sum(m.layers)))
    coef: dict[str, float] = {}
    for op, rows in by_op.items():
        names = sorted({k for t, _ in rows for k in t})
        a = np.array([[t.get(k, 0.0) for k in names] for t, _ in rows], dtype=np.float64)
        y = np.array([c for _, c in rows], dtype=np.float64)
        w = 1.0 / np.sqrt(np.maximum(y, 1.0))
        coef.update(zip(names, (float(v) for v in nnls(a * w[:, None], y * w))))
    a = np.array([[1.0, n] for n, _ in net])
    base, per = nnls(a, np.array([float(d) for _, d in net]))
    coef.update({NET_TERMS[0]: float(base), NET_TERMS[1]: float(per)})
    return coef


def nnls(a: np.ndarray, y: np.ndarray, iterations: int = 500) -> np.ndarray:
    """argmin |a x - y| subject to x >= 0 (Lawson and Hanson's active-set method): no term
    costs fewer than zero instructions. Columns are scaled to unit norm for the solve."""
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    n = a.shape[1]
    x = np.zeros(n)
    free = np.zeros(n, dtype=bool)
    for _ in range(iterations):
        grad = a.T @ (y - a @ x)
        if free.all() or grad[~free].max(initial=0.0) <= 1e-10 * max(1.0, np.abs(grad).max()):
            break
        free[np.argmax(np.where(free, -np.inf, grad))] = True
        while True:
            z = np.zeros(n)
            z[free] = np.linalg.lstsq(a[:, free], y, rcond=None)[0]
            if (z[free] > 0).all():
                x = z
                break
            neg = free & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            free &= x > 1e-12
            x[~free] = 0.0
    return x / scale


def calibrate(board: Board, probes: int, seed: int, port: str | None = None, baud: int = 115200,
              tool: str | None = None,
              progress: Callable[[int], None] | None = None) -> tuple[LatencyModel, list[Measured]]:
    """Measure `probes` probe networks from `seed` (emulator, or the board at `port`) and fit
    the board's model; `progress(done)` after each."""
    rng = random.Random(seed)
    samples = []
    with tempfile.TemporaryDirectory(prefix="qetool-calibrate-") as d:
        for i in range(probes):
            samples.append(measure(probe_arch(rng), board, Path(d), i, port, baud, tool))
            if progress:
                progress(i + 1)
    target, counter = ("board", "cycles") if port else ("emulator", "instructions")
    coef = fit(samples)
    model = LatencyModel(board.name, board.core.cpu, target, counter, coef, probes, 0.0)
    worst = max(abs(network_error(model, m)) for m in samples)
    return replace(model, max_probe_error=round(worst, 5)), samples


def calibrate_with_progress(board: Board, probes: int, seed: int, port: str | None, baud: int,
                            tool: str | None, output: str | None) -> tuple[LatencyModel, Path]:
    """`qetool calibrate`: calibrate with a progress bar and write the calibration file."""
    with tqdm(total=probes, unit="probe", desc="calibrate") as bar:
        model, _ = calibrate(board, probes, seed, port, baud, tool, lambda n: bar.update(n - bar.n))
    path = Path(output) if output else latency_path(board.name)
    save_latency(model, path)
    return model, path


def network_error(model: LatencyModel, m: Measured) -> float:
    """Relative error of the model's whole-network estimate against a measurement."""
    return model.network(layer_shapes(m.arch))[1] / m.total - 1


def layer_errors(model: LatencyModel, m: Measured) -> list[tuple[LayerShape, int, float]]:
    """Per layer: shape, measured count, estimate."""
    shapes = layer_shapes(m.arch)
    return [(s, c, model.layer(s)) for s, c in zip(shapes, m.layers)]

