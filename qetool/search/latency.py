"""The latency model (docs/latency.md): per layer, instructions = sum over the kernel's cost terms
(qetool.compiler.kernels: loop trips, rows, outputs, calls) of the term times its coefficient;
per network, plus `net.layer` per layer and `net.base` (the runtime between layers). The
coefficients are a board's calibration (`boards/NAME.latency.json`, written by `qetool calibrate`);
milliseconds are instructions / clock x cycles per instruction (the board file's
`cycles_per_instruction`, 1.0 until measured), an estimate.

A layer's shape comes from the arch alone, in closed form: its room is the arena less the
live total of its step plus its own scratch (the two-ended plan leaves exactly that gap free,
plan.py), so the search and the compiler see the same numbers (a test proves it against
GraphPlan.scratch_span).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from qetool.arch import HEAD_BITS, Arch, blocks, layers, out_size, tensors
from qetool.compiler.kernels import REGISTRY, LayerShape, most_room, packed_tiles, tile_config
from qetool.compiler.plan import timeline
from qetool.device.boards import Board, board_names
from qetool.errors import QetoolError
from qetool.fileio import read_json, write_text
from qetool.paths import BOARDS
from qetool.search.cost import is_residual, steps

_NO_PAD = (0, 0, 0, 0)

LATENCY_FORMAT = "qetool-latency/1"
NET_TERMS = ("net.base", "net.layer")
"""The per-network terms: once per inference, once per layer."""


@dataclass(frozen=True)
class LatencyModel:
    """A board's calibration: the coefficient (instructions, or cycles with counter `cycles`)
    of every cost term; how it was measured (target `emulator` or `board`, counter), on which
    core; and the probes' fit: the largest relative error on a probe network."""

    board: str
    core: str
    target: str
    counter: str
    coefficients: dict[str, float]
    probes: int
    max_probe_error: float

    def layer(self, shape: LayerShape) -> float:
        """Instructions (or cycles) of one layer."""
        terms = REGISTRY[shape.op].terms(shape)
        return math.fsum(self.coefficient(k) * v for k, v in terms.items())

    def coefficient(self, term: str) -> float:
        """A term's coefficient; one no probe exercised is an error (calibrate with more
        probes)."""
        c = self.coefficients.get(term)
        if c is None:
            raise QetoolError(f"the {self.board} latency calibration has no term {term} (run qetool "
                              "calibrate again with more --probes)")
        return c

    def network(self, shapes: list[LayerShape]) -> tuple[list[float], float]:
        """Per layer and in total (with the per-network terms)."""
        per = [self.layer(s) for s in shapes]
        c = self.coefficients
        return per, math.fsum(per) + c["net.base"] + c["net.layer"] * len(shapes)

    def to_json(self) -> dict:
        return {"format": LATENCY_FORMAT, "board": self.board, "core": self.core,
                "target": self.target, "counter": self.counter, "probes": self.probes,
                "max_probe_error": self.max_probe_error,
                "coefficients": dict(sorted(self.coefficients.items()))}


def latency_path(board: str) -> Path:
    """Where a shipped board's calibration lives: boards/NAME.latency.json."""
    return BOARDS / f"{board}.latency.json"


def board_latency(board: Board) -> LatencyModel | None:
    """The board's calibration; for a board without one (a user's board file, or a board with
    no emulator), an emulator calibration of a shipped board with the same core (instructions
    depend on the core and the compiler flags alone); None when there is none."""
    own = latency_path(board.name)
    if board.file_text is None and own.is_file():
        return load_latency(own)
    for name in board_names():
        path = latency_path(name)
        if path.is_file():
            model = load_latency(path)
            if model.core == board.core.cpu and model.target == "emulator":
                return model
    return None


def to_ms(model: LatencyModel, count: float, board: Board) -> float:
    """Milliseconds at the board's clock: cycles as measured, or instructions times the board's
    cycles per instruction (an estimate)."""
    cycles = count if model.counter == "cycles" else count * board.cycles_per_instruction
    return 1e3 * cycles / board.clock_hz


def load_latency(path: Path) -> LatencyModel:
    """A calibration file, checked field by field."""
    doc = read_json(path)
    where = str(path)
    if not isinstance(doc, dict) or doc.get("format") != LATENCY_FORMAT:
        raise QetoolError(f"{where}: not a latency calibration ({LATENCY_FORMAT})")
    for key in ("board", "core"):
        if not isinstance(doc.get(key), str):
            raise QetoolError(f"{where}: {key}: missing or not text")
    if (doc.get("target"), doc.get("counter")) not in (("emulator", "instructions"), ("board", "cycles")):
        raise QetoolError(f"{where}: target and counter: emulator with instructions or board with cycles")
    coef = doc.get("coefficients")
    if (not isinstance(coef, dict) or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                              for v in coef.values())
            or not all(k in coef for k in NET_TERMS)):
        raise QetoolError(f"{where}: coefficients: a table of finite numbers with {', '.join(NET_TERMS)}")
    probes, err = doc.get("probes"), doc.get("max_probe_error")
    if type(probes) is not int or not isinstance(err, (int, float)):
        raise QetoolError(f"{where}: probes or max_probe_error missing")
    return LatencyModel(doc["board"], doc["core"], doc["target"], doc["counter"],
                        {k: float(v) for k, v in coef.items()}, probes, float(err))


def save_latency(model: LatencyModel, path: Path) -> None:
    write_text(path, json.dumps(model.to_json(), indent=1) + "\n")


def layer_shapes(arch: Arch) -> list[LayerShape]:
    """Every layer's LayerShape in execution order (room in closed form, see the module
    docstring)."""
    ls, size, live = timeline(arch)
    totals = [sum(size[n] for n in names) for names in live]
    arena = max(totals)
    ts = tensors(arch)
    out = []
    for layer, total in zip(ls, totals):
        room = arena - total + size[f"{layer.id}.scratch"]
        x = ts[layer.input]
        out.append(LayerShape(layer.op, layer.kernel, layer.stride, layer.cin, layer.cout,
                              layer.h_in, layer.w_in, layer.h_out, layer.w_out, layer.pad,
                              x.bits, layer.bits_w, ts[layer.id].bits,
                              ts[layer.residual].bits if layer.residual else 0, x.signed, room))
    return out


@dataclass(frozen=True)
class Estimate:
    """A network's estimated latency: per layer and per block (stem, b1, ..., head) in
    instructions (cycles for a cycle calibration), the total, milliseconds on the board, and
    how they were obtained."""

    per_layer: list[float]
    per_block: list[float]
    instructions: float
    ms: float
    note: str


def per_block(arch: Arch, per_layer: list) -> list:
    """Per-layer values (in execution order) summed per block: stem, b1, ..., then the head
    (block index len(blocks))."""
    out = [0] * (len(blocks(arch)) + 1)
    for layer, v in zip(layers(arch), per_layer):
        out[layer.block] += v
    return out


def estimate(arch: Arch, board: Board | None) -> Estimate | None:
    """The board's estimate of `arch`; None without a board or a calibration for its core."""
    model = board_latency(board) if board else None
    if model is None:
        return None
    per, total = model.network(layer_shapes(arch))
    if model.counter == "cycles":
        note = f"estimate from {model.board}'s cycle calibration at {board.clock_hz / 1e6:.0f} MHz"
    else:
        note = (f"estimate: {model.board}'s instruction model at {board.clock_hz / 1e6:.0f} MHz x "
                f"{board.cycles_per_instruction:.2f} cycles per instruction")
    return Estimate(per, per_block(arch, per), total, to_ms(model, total, board), note)


class SearchLatency:
    """The latency model in the search's closed form: a candidate's instructions from its block
    geometries (search/cost.Geom), bits and arena, equal to LatencyModel.network(layer_shapes(
    arch)) (a test proves it). Per block and bits the cache holds the block's cost when every
    layer has room for the most tiles, and the smallest arena that gives it that room; a block
    with less room (near the arena's peak) costs its 1x1 and stem layers per tile configuration
    (kernels.tile_config: their room is arena - live total of their step + their scratch),
    also cached."""

    def __init__(self, model: LatencyModel):
        self.model = model
        self._blocks: dict[tuple, tuple] = {}
        self._heads: dict[tuple, float] = {}

    def _block(self, g: tuple, a: int, w: int, an: int, signed_in: bool) -> tuple:
        """Build the cache entry of a block and its bits: (cost with the most tiles everywhere,
        the smallest arena that gives it, fixed cost, its room-dependent layers as [shape, step
        total less scratch, words of a weight row, packed tiles, {tile_config: cost}])."""
        h, cin, btn, cout, k, s = g
        ho, p = out_size(h, s), k // 2
        pad = (p, p, p, p)
        t = steps(g, a, an)
        if btn == 0:
            tiled = [(LayerShape("conv", k, s, cin, cout, h, h, ho, ho, pad, a, w, an, 0, False, 0), 0)]
            fixed = 0.0
        else:
            res = a if is_residual(g) else 0
            tiled = [(LayerShape("conv1x1", 1, 1, cin, btn, h, h, h, h, _NO_PAD, a, w, a, 0, signed_in, 0), 0),
                     (LayerShape("conv1x1", 1, 1, btn, cout, ho, ho, ho, ho, _NO_PAD, a, w, an, res, False, 0), 2)]
            fixed = self.model.layer(LayerShape("dwconv", k, s, btn, btn, h, h, ho, ho, pad, a, w, a, 0,
                                                False, 0))
        layers, full, enough = [], fixed, 0
        for shape, step in tiled:
            pairs, packed = 2 * -(-(shape.kernel * shape.kernel * shape.cin) // 4), packed_tiles(shape)
            live, room = t.totals[step] - t.scratch[step], most_room(pairs, packed)
            cost = self.model.layer(replace(shape, room=room))
            layers.append((shape, live, pairs, packed, {tile_config(room, pairs, packed): cost}))
            full += cost
            enough = max(enough, live + room)
        hit = self._blocks[(g, a, w, an, signed_in)] = (full, enough, fixed, tuple(layers))
        return hit

    def network(self, geoms: list, ba: list[int], bw: list[int], arena: int, classes: int) -> float:
        """Instructions of a candidate: its block instances (stem first), the head, the
        per-network terms."""
        total = 0.0
        cache = self._blocks
        for i, (g, a, w, an) in enumerate(zip(geoms, ba, bw, ba[1:] + [HEAD_BITS])):
            hit = cache.get((g, a, w, an, i > 1))
            full, enough, fixed, tiled = hit if hit is not None else self._block(g, a, w, an, i > 1)
            if arena >= enough:
                total += full
                continue
            total += fixed
            for shape, live, pairs, packed, costs in tiled:
                config = tile_config(arena - live, pairs, packed)
                cost = costs.get(config)
                if cost is None:
                    cost = costs[config] = self.model.layer(replace(shape, room=arena - live))
                total += cost
        h, _, _, cout, _, s = geoms[-1]
        ho = out_size(h, s)
        key = (ho, cout, classes)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = self.model.layer(LayerShape(
                "head", 1, 1, cout, classes, ho, ho, 1, 1, _NO_PAD, HEAD_BITS, HEAD_BITS, HEAD_BITS, 0,
                True, 0))
        c = self.model.coefficients
        return total + head + c["net.base"] + c["net.layer"] * (2 + 3 * (len(geoms) - 1))
