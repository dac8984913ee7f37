"""`qetool compile`: arch.json (+ weights) -> lower -> plan -> pack -> render -> build/.

With no weights file, seeded random weights calibrated on a random image (calibrate.py) are
used and written to build/weights.npz in the weights-file format.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from qetool import arch as A
from qetool import checkpoint
from qetool.compiler.calibrate import random_checkpoint
from qetool.compiler.compile_graph import CompiledGraph, compile_tflite
from qetool.compiler.lower import LoweredModel, lower
from qetool.compiler.arch_graph import graph_of, graph_plan
from qetool.compiler.report import over_budget, report
from qetool.compiler.plan import Plan, plan
from qetool.compiler.render import (BOARD_FILE, DEFAULT_NAME, check_name, manifest, render_sources,
                                    to_json, write_build)
from qetool.compiler.tflite import is_tflite
from qetool.errors import QetoolError
from qetool.fileio import read_bytes
from qetool.compiler import firmware
from qetool.device.boards import Board
from qetool.search.latency import Estimate, estimate


@dataclass(frozen=True)
class Compiled:
    """The compiler's outputs in memory (written to build/ by compile_model)."""

    model: LoweredModel
    plan: Plan
    report: dict
    sources: dict[str, str]
    weights: checkpoint.Checkpoint


def build_report(model: LoweredModel, p: Plan, board: Board) -> dict:
    """report.json of an arch.json network (report.report over its graph IR)."""
    g = graph_of(model)
    return report(g, graph_plan(g, p), model.model_hash, board, latency=compile_estimate(model.arch, board))


def compile_estimate(arch: A.Arch, board: Board) -> Estimate | None:
    """The latency estimate for the report; none where the calibration lacks a term of this
    network (a calibration older than the kernels: qetool score says so), so that compiling
    never depends on it."""
    try:
        return estimate(arch, board)
    except QetoolError:
        return None


MAX_LAYERS = 0xFFFF
"""The protocol and the firmware count layers in 16 bits."""


def compile_arch(arch: A.Arch, board: Board, weights: str | Path | None = None,
                 seed: int = 0, class_names: list[str] | None = None,
                 name: str = DEFAULT_NAME) -> Compiled:
    """Everything compile does, in memory. `class_names` (one per class) override the weights
    file's; `name` prefixes every generated C symbol."""
    check_name(name)
    n_layers = len(A.layers(arch))
    if n_layers > MAX_LAYERS:
        raise QetoolError(f"{n_layers:,} layers: the firmware and its protocol count at most {MAX_LAYERS:,}")
    ck = checkpoint.load(weights, arch) if weights else random_checkpoint(arch, seed)
    if class_names is not None:
        ck = replace(ck, class_names=checkpoint.check_class_names(class_names, arch.num_classes,
                                                                  "--class-names"))
    model = lower(ck)
    p = plan(arch)
    g = graph_of(model)
    gp = graph_plan(g, p)
    return Compiled(model, p, report(g, gp, model.model_hash, board, latency=compile_estimate(arch, board)),
                    render_sources(g, gp, model.model_hash, name), ck)


def compile_model(arch_path: str | Path, board: Board, out_dir: str | Path,
                  weights: str | Path | None = None, seed: int | None = None, force: bool = False,
                  build_firmware: bool = False, full_map: bool = False,
                  class_names: list[str] | None = None, name: str = DEFAULT_NAME) -> Compiled | CompiledGraph:
    """Compile and write build/ (manifest.json, lowered.npz, weights.npz, report.json, src/;
    with `build_firmware` also board.elf, board.bin, emu.elf). Over the board's budgets is a
    user error unless `force`. `full_map` links emu.elf with the emulator's whole memory. A
    board from a user's file is copied to build/board.toml, where later commands read it.
    A .tflite file (known by its content) goes to the TFLite front end (compile_graph)."""
    data = read_bytes(arch_path)
    if is_tflite(data):
        if weights is not None or seed is not None:
            raise QetoolError(f"{arch_path}: a .tflite file holds its weights: --weights and --seed do not apply")
        return compile_tflite(arch_path, data, board, out_dir, force, build_firmware, full_map,
                              class_names, name)
    if Path(arch_path).suffix.lower() == ".tflite":
        raise QetoolError(f"{arch_path}: not a TFLite flatbuffer (no TFL3 identifier at byte 4)")
    seed = 0 if seed is None else seed
    arch = A.load(arch_path)
    c = compile_arch(arch, board, weights, seed, class_names, name)
    over = over_budget(c.report)
    if over and not force:
        raise QetoolError("; ".join(over) + " (--force compiles anyway)")
    files: dict[str, bytes | str] = {
        "manifest.json": to_json(manifest(
            c.model, c.plan, board.name, BOARD_FILE if board.file_text is not None else None,
            list(c.weights.class_names) if c.weights.class_names else None, name,
            None if weights else seed)),
        "report.json": to_json(c.report),
        "lowered.npz": c.model.to_bytes(),
        "weights.npz": checkpoint.to_bytes(c.weights),
        **{f"src/{name}": text for name, text in c.sources.items()}}
    if board.file_text is not None:
        files[BOARD_FILE] = board.file_text
    write_build(Path(out_dir), files,
                (lambda d: firmware.build_firmware(d, board, full_map)) if build_firmware else None)
    return c
