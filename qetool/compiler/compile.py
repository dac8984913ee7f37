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
from qetool.compiler.pack import model_flash
from qetool.compiler.plan import Plan, plan
from qetool.compiler.render import (BOARD_FILE, DEFAULT_NAME, check_name, manifest, render_sources,
                                    to_json, write_build)
from qetool.compiler.tflite import is_tflite
from qetool.errors import QetoolError
from qetool.fileio import read_bytes
from qetool.compiler import firmware
from qetool.device.boards import Board
from qetool.table import render
from qetool.units import fmt_size


@dataclass(frozen=True)
class Compiled:
    """The compiler's outputs in memory (written to build/ by compile_model)."""

    model: LoweredModel
    plan: Plan
    report: dict
    sources: dict[str, str]
    weights: checkpoint.Checkpoint


def build_report(model: LoweredModel, p: Plan, board: Board) -> dict:
    """report.json (docs/formats.md): Flash split, arena, per-layer rows, board limits."""
    flash = model_flash(model.arch, board.core.cpu)
    layers = []
    for layer, f in zip(model.layers, flash.layers):
        buf = p.buffer_of(layer.id) if layer.op != "head" else None
        layers.append({
            "id": layer.id, "op": layer.op, "bits_in": layer.bits_x, "bits_w": layer.bits_w,
            "bits_out": layer.bits_y, "params": layer.params,
            "weight_bytes": f.weights, "channel_bytes": f.channel,
            "bytes": f.weights + f.channel,
            "arena": {"offset": buf.offset, "bytes": p.buffers[layer.id].size} if buf else None,
            "scratch_bytes": p.buffers[f"{layer.id}.scratch"].size,
            "constant_channels": int((layer.m == 0).sum())})
    return {
        "model_hash": model.model_hash, "board": board.name,
        "model_flash_bytes": flash.total, "weights_flash_bytes": flash.weights,
        "channel_data_bytes": flash.channel, "code_flash_bytes": flash.code,
        "arena_bytes": p.arena_bytes,
        "budget_flash_bytes": board.budget_flash_bytes, "budget_sram_bytes": board.budget_sram_bytes,
        "limit_flash_bytes": board.flash_bytes, "limit_sram_bytes": board.sram_bytes,
        "layers": layers}


def over_budget(report: dict) -> list[str]:
    """What exceeds the board's budgets, and by how many bytes."""
    out = []
    for what, used, budget in (("model Flash", report["model_flash_bytes"], report["budget_flash_bytes"]),
                               ("arena SRAM", report["arena_bytes"], report["budget_sram_bytes"])):
        if used > budget:
            out.append(f"{what} {used:,} B is over the {report['board']} budget {budget:,} B "
                       f"by {used - budget:,} B")
    return out


def report_table(report: dict) -> str:
    """The report as a table: per layer, then totals against the board."""
    rows = []
    for r in report["layers"]:
        arena = r["arena"]
        rows.append((r["id"], r["op"], f"a{r['bits_in']}/w{r['bits_w']}", f"{r['params']:,}",
                     f"{r['weight_bytes']:,}", f"{r['channel_bytes']:,}",
                     f"{arena['offset']:,}-{arena['offset'] + arena['bytes']:,}" if arena else "-"))
    foot = [("total", "", "", f"{sum(r['params'] for r in report['layers']):,}",
             f"{report['weights_flash_bytes']:,}", f"{report['channel_data_bytes']:,}",
             f"{report['arena_bytes']:,}")]
    lines = [render(("layer", "op", "bits", "params", "weights B", "channel B", "arena slice"), rows, foot), ""]
    wf, cd = report["weights_flash_bytes"], report["channel_data_bytes"]
    lines.append(f"per-channel data {cd:,} B ({100 * cd / max(1, wf):.1f} % of the packed weights)")
    for what, used, budget, limit in (
            ("model Flash", report["model_flash_bytes"], report["budget_flash_bytes"], report["limit_flash_bytes"]),
            ("arena SRAM ", report["arena_bytes"], report["budget_sram_bytes"], report["limit_sram_bytes"])):
        lines.append(f"{what} {used:>10,} B ({fmt_size(used)}): {100 * used / budget:5.1f} % of the "
                     f"budget {budget:,} B, {100 * used / limit:5.1f} % of {report['board']}'s {fmt_size(limit)}")
    return "\n".join(lines)


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
    return Compiled(model, p, build_report(model, p, board), render_sources(model, p, name), ck)


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
