"""Render the C sources (templates/*.j2) and write build/ (docs/formats.md).

Logic stays here in Python (offsets, symbols, packed bytes); the C text lives in the templates.
The whole build/ directory is written beside its target and swapped in at the end, so a failed
compile never leaves a half-written build/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qetool import arch as A
from qetool.compiler import ir
from qetool.compiler.arch_graph import graph_of
from qetool.compiler.ir import IOTensor, arch_op, graph_io
from qetool.compiler.ir_plan import GraphPlan, tensor_bytes
from qetool.compiler.lower import LoweredModel
from qetool.compiler.kernels import CONV1X1_TILE, POOL_RUN, REGISTRY, SUBTILES, check_layer
from qetool.compiler.pack import GRAPH_KERNELS, graph_width_helpers, pack_padded
from qetool.compiler.plan import Plan
from qetool.compiler.render_graph import SOURCES as GRAPH_SOURCES
from qetool.compiler.render_graph import graph_context
from qetool.compiler.templating import render_files, symbol
from qetool.errors import QetoolError
from qetool.fileio import umask_mode, write_error

REFERENCE_DIR = "ref"
"""build/src/ref/: the reference kernels, the same functions as the optimized NAME_kernels.c
(the tests build either; the firmware links the optimized ones)."""
SOURCES = {"kernels.h": "{}_kernels.h", "kernels.c": "{}_kernels.c",
           "kernels_ref.c": f"{REFERENCE_DIR}/{{}}_kernels.c", "model.h": "{}.h",
           "model.c": "{}.c", "weights.h": "{}_weights.h", "weights.c": "{}_weights.c",
           "app.h": "qe_app.h"}
"""Each template (templates/NAME.j2) and the file it renders, {} standing for the model's name."""
DEFAULT_NAME = "qe_model"
"""The model's name (--name) when none is given: qe_model.h, qe_model_run(), ..."""
MANIFEST_FORMAT = "qetool-build/2"
BOARD_FILE = "board.toml"
"""build/board.toml: the user's board file, for a build made with --board-file."""


def check_name(name: object, where: str = "--name") -> str:
    """A model name: a lower-case C identifier of at most 32 characters, not qe_app (the
    firmware's own names)."""
    if (not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name)
            or name.startswith("qe_app")):
        raise QetoolError(f"{where} {name!r}: give a lower-case C identifier (a-z, 0-9, _; at most "
                          "32 characters, starting with a letter, not qe_app...)")
    return name


def model_symbols(name: str) -> tuple[str, ...]:
    """The ELF symbols that make up a model's code: its kernels (either front end's), its
    functions, its layer table."""
    return (*(f"{name}_{fn}" for k in REGISTRY.values() for fn in (k.function, *k.helpers, *k.width_helpers)),
            *(f"{name}_{fn}" for fn in GRAPH_KERNELS),
            *(f"{name}_{fn}" for fn in ("run", "input", "arena", "layer_output", "layers")))


def model_io(model: LoweredModel) -> tuple[IOTensor, IOTensor]:
    """The input (image codes: pixel >> (8 - bits), docs/arithmetic.md) and the output (int8
    logits) of a lowered arch.json model: its graph IR's."""
    return graph_io(graph_of(model))


@dataclass(frozen=True)
class LayerC:
    """What the templates need of one node of qetool's own kernels (an arch.json network's
    layer), read from the graph IR and its plan: index, C symbol and kernel; geometry (px,
    channels), bits and signedness of input, weights, output and residual; clamp; integer
    constants; arena offsets (bytes), the free span around the scratch (GraphPlan.scratch_span:
    its offset is the kernel's scratch_off) and packed weights."""

    index: int
    id: str
    op: str
    sym: str
    kernel_fn: str
    layout: str
    h_in: int
    w_in: int
    cin: int
    h_out: int
    w_out: int
    cout: int
    kernel: int
    stride: int
    pad: tuple[int, int, int, int]
    bits_x: int
    bits_w: int
    bits_y: int
    bits_r: int
    signed_x: bool
    signed_r: bool
    lo: int
    hi: int
    residual: str | None
    params: int
    bias: list[int]
    m: list[int]
    n: list[int]
    mx: list[int]
    in_off: int
    out_off: int
    out_bytes: int
    res_off: int
    scratch_off: int
    scratch_room: int
    packed: bytes


def layer_context(g: ir.Graph, p: GraphPlan, name: str) -> list[LayerC]:
    """Per-node template data of a graph of qetool's own kernels: geometry, constants, plan
    offsets and packed weights."""
    out = []
    for i, node in enumerate(g.nodes):
        x, y = g.tensors[node.inputs[0]], g.tensors[node.output]
        r = g.tensors[node.inputs[1]] if len(node.inputs) > 1 else None
        w, q, op = node.window, node.requant, arch_op(node)
        check_layer(op, node.name, w.kernel_h if w else 1, w.stride_h if w else 1, x.signed)
        scratch_off, scratch_room = p.scratch_span(node.name)
        head = op == "head"
        out.append(LayerC(
            index=i, id=node.name, op=op, sym=symbol(name, node.name),
            kernel_fn=f"{name}_{REGISTRY[op].function}", layout=REGISTRY[op].layout,
            h_in=x.shape[1], w_in=x.shape[2], cin=x.shape[3],
            h_out=y.shape[1], w_out=y.shape[2], cout=y.shape[3],
            kernel=w.kernel_h if w else 1, stride=w.stride_h if w else 1,
            pad=(w.pad_top, w.pad_bottom, w.pad_left, w.pad_right) if w else (0, 0, 0, 0),
            bits_x=x.bits, bits_w=node.bits_w, bits_y=y.bits, bits_r=r.bits if r else 0,
            signed_x=x.signed, signed_r=r.signed if r else False, lo=q.lo, hi=q.hi,
            residual=r.name if r else None, params=int(node.weights.size),
            bias=q.bias.tolist(), m=q.mult.tolist(), n=q.shift.tolist(),
            mx=q.mult_res.tolist() if r else [],
            in_off=p.offset(x.name), out_off=0 if head else p.offset(y.name),
            out_bytes=0 if head else tensor_bytes(y),
            res_off=p.offset(r.name) if r else 0, scratch_off=scratch_off, scratch_room=scratch_room,
            packed=pack_padded(node.weights, node.bits_w)))
    return out


def _own_context(g: ir.Graph, p: GraphPlan, model_hash: str, name: str, title: str,
                 widths: frozenset[str]) -> dict:
    """The template context of a graph of qetool's own kernels (templates/kernels.*, model.c,
    weights.*); `widths` the width helpers to render."""
    layers = layer_context(g, p, name)
    x, y = graph_io(g)
    return dict(title=title, p=name, P=name.upper(), model_hash=model_hash, x=x, y=y,
                num_classes=g.output_tensor().elements,
                input_bytes=p.where[g.input].size, input_offset=p.offset(g.input),
                arena_bytes=p.arena_bytes, layers=layers, kernels=sorted({l.op for l in layers}),
                widths=widths, conv1x1_tile=CONV1X1_TILE, subtiles=SUBTILES, pool_run=POOL_RUN)


def render_sources(g: ir.Graph, p: GraphPlan, model_hash: str, name: str = DEFAULT_NAME,
                   title: str | None = None, widths: frozenset[str] | None = None) -> dict[str, str]:
    """The generated C files of a graph IR and its plan, by file name; every global symbol
    starts with `name`. The kernel family follows the graph's requantization: qetool's own
    sub-byte kernels (single rounding: templates kernels.*, model.c, weights.*), with the width
    helpers its layers need (pack.graph_width_helpers; `widths` overrides them: the kernel tests
    and benches render kernels.ALL_WIDTH_HELPERS), or the TFLM-arithmetic int8 ones (double
    rounding: templates graph_*, render_graph)."""
    own = {ir.own_kernels(n) for n in g.nodes}
    if own == {True}:
        return render_files(SOURCES, name, _own_context(
            g, p, model_hash, name, title or f"qetool model {model_hash}",
            graph_width_helpers(g) if widths is None else widths))
    if True in own:
        raise QetoolError("a graph mixing qetool's sub-byte kernels with TFLM-arithmetic ones "
                          "cannot be rendered yet")
    return render_files(GRAPH_SOURCES, name, graph_context(g, p, model_hash, name, title or model_hash))


def write_build(out_dir: Path, files: dict[str, bytes | str],
                finish: Callable[[Path], object] | None = None) -> None:
    """Write `files` (relative paths) as the new content of `out_dir`, swapped in whole;
    `finish(staging_dir)` runs before the swap (the firmware build)."""
    shown, out_dir = out_dir, Path(os.path.realpath(out_dir))  # a symlinked build/ stays a link
    if out_dir.exists() and not out_dir.is_dir():
        raise QetoolError(f"cannot write {shown}/: it is a file, not a folder")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        os.chmod(tmp, umask_mode(0o777))
    except OSError as e:
        raise write_error(shown, e) from None
    try:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                path.write_bytes(content)
        if finish is not None:
            finish(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except OSError as e:
        raise write_error(shown, e) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def manifest(model: LoweredModel, p: Plan, board: str, board_file: str | None = None,
             class_names: list[str] | None = None, name: str = DEFAULT_NAME,
             random_seed: int | None = None) -> dict:
    """manifest.json (docs/formats.md); `board_file` names build/'s copy of a user's board file,
    `class_names` the outputs' names (None: not known), `name` the C symbols' prefix,
    `random_seed` the seed of the random weights (None: a weights file)."""
    image = p.buffers["image"]
    x, y = model_io(model)
    return {
        "format": MANIFEST_FORMAT, "name": name, "board": board, "random_weights_seed": random_seed,
        **({"board_file": board_file} if board_file else {}), "arch": A.to_dict(model.arch),
        "model_hash": model.model_hash, "num_classes": model.arch.num_classes,
        "class_names": class_names,
        "input": {**x.to_json(), "layout": "HWC, packed LSB first", "bytes": image.size,
                  "arena_offset": image.offset},
        "output": {**y.to_json(), "layout": "int8 per class"},
        "arena_bytes": p.arena_bytes,
        "layers": [layer.id for layer in model.layers]}


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"
