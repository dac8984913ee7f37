"""`qetool compile model.tflite`: the TFLite front end -> graph IR -> plan -> render -> build/
(docs/formats.md). build/ keeps a copy of the .tflite file (model.tflite): the model is its
file, and every later command converts that copy again."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from qetool.compiler import firmware, ir, tflite
from qetool.compiler.ir_plan import GraphPlan, plan
from qetool.compiler.program import Program
from qetool.compiler.ir import graph_io
from qetool.compiler.render import (BOARD_FILE, MANIFEST_FORMAT, check_name, render_sources, to_json,
                                    write_build)
from qetool.compiler.render_graph import check_clamps
from qetool.compiler.report import over_budget, report
from qetool.device.boards import Board
from qetool.errors import QetoolError

MODEL_FILE = "model.tflite"
"""build/'s copy of the imported model."""
MAX_NODES = 0xFFFF


@dataclass(frozen=True)
class CompiledGraph:
    """An imported model in memory: its graph, plan, hash and report; its C sources (named after
    `name`) are rendered when first asked for (later commands read the build without them)."""

    graph: ir.Graph
    plan: GraphPlan
    model_hash: str
    report: dict
    name: str
    title: str

    @property
    def program(self) -> Program:
        return Program(self.graph, self.plan, self.model_hash)

    @cached_property
    def sources(self) -> dict[str, str]:
        return render_sources(self.graph, self.plan, self.model_hash, self.name, self.title)


def graph_manifest(c: CompiledGraph, board: str, board_file: str | None, class_names: list[str] | None,
                   name: str) -> dict:
    """manifest.json of an imported model (docs/formats.md)."""
    x, y = graph_io(c.graph)
    return {
        "format": MANIFEST_FORMAT, "name": name, "board": board, "source": "tflite",
        "model_file": MODEL_FILE, **({"board_file": board_file} if board_file else {}),
        "model_hash": c.model_hash, "num_classes": y.channels * y.height * y.width,
        "class_names": class_names,
        "input": {**x.to_json(), "layout": "HWC, int8", "bytes": c.plan.where[c.graph.input].size,
                  "arena_offset": c.plan.offset(c.graph.input), "float": c.graph.float_input},
        "output": {**y.to_json(), "layout": "int8", "float": c.graph.float_output},
        "arena_bytes": c.plan.arena_bytes,
        "layers": [n.name for n in c.graph.nodes]}


def compile_graph(data: bytes, where: str, board: Board, name: str) -> CompiledGraph:
    """Everything compile does for a .tflite file's bytes, in memory."""
    check_name(name)
    g = tflite.parse(data, where)
    if len(g.nodes) > MAX_NODES:
        raise QetoolError(f"{where}: {len(g.nodes):,} operators: the firmware counts at most {MAX_NODES:,}")
    check_clamps(g)
    p = plan(g)
    h = tflite.model_hash(data)
    return CompiledGraph(g, p, h, report(g, p, h, board, imported=True), name,
                         f"imported {Path(where).name}")


def compile_tflite(path: str | Path, data: bytes, board: Board, out_dir: str | Path, force: bool,
                   build_firmware: bool, full_map: bool, class_names: list[str] | None,
                   name: str) -> CompiledGraph:
    """Compile a .tflite file and write build/ (manifest.json, model.tflite, report.json, src/;
    with `build_firmware` the firmware images too)."""
    from qetool.checkpoint import check_class_names

    c = compile_graph(data, str(path), board, name)
    if class_names is not None:
        class_names = list(check_class_names(class_names, c.graph.output_tensor().elements,
                                             "--class-names"))
    over = over_budget(c.report)
    if over and not force:
        raise QetoolError("; ".join(over) + " (--force compiles anyway)")
    files: dict[str, bytes | str] = {
        "manifest.json": to_json(graph_manifest(c, board.name, BOARD_FILE if board.file_text is not None
                                                else None, class_names, name)),
        "report.json": to_json(c.report), MODEL_FILE: data,
        **{f"src/{n}": text for n, text in c.sources.items()}}
    if board.file_text is not None:
        files[BOARD_FILE] = board.file_text
    write_build(Path(out_dir), files,
                (lambda d: firmware.build_firmware(d, board, full_map)) if build_firmware else None)
    return c
