"""The template context of a graph of TFLM-arithmetic int8 kernels (templates/graph_*.j2, with
model.h.j2 and app.h.j2 shared with qetool's own kernels; render.render_sources renders it):
one descriptor per node, int8 weights and per-channel data in Flash, offsets from the plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qetool.compiler import ir
from qetool.compiler.ir_plan import GraphPlan, tensor_bytes
from qetool.compiler.ir import graph_io, op_params
from qetool.compiler.pack import GRAPH_KERNELS
from qetool.compiler.templating import symbol
from qetool.errors import QetoolError

KERNELS = {"conv2d": "KxK convolution (any kernel and stride), HWC. Scratch: 2*kh*kw*c_in bytes (int16 taps).",
           "depthwise_conv2d": "Depthwise convolution, depth multiplier depth_mult; in place when it is 1. "
                               "Scratch: (h_in+pad_top+pad_bottom)*(w_in+pad_left+pad_right) bytes (one padded plane).",
           "fully_connected": "Fully connected: c_out outputs from h_in*w_in*c_in inputs. No scratch.",
           "add": "Elementwise ADD of two tensors of one shape (TFLM's int8 arithmetic). No scratch.",
           "avg_pool": "Average pool over the in-bounds taps, rounded half away from zero. No scratch.",
           "max_pool": "Max pool over the in-bounds taps. No scratch.",
           "mean": "MEAN over H and W (TFLM's integer path). No scratch.",
           "pad": "Pad H and W with the output zero point. No scratch.",
           "softmax": "TFLM's int8 softmax over channels. No scratch."}
"""The C kernel of each IR op (reshape has none: it is an alias) and its header comment."""
assert tuple(KERNELS) == GRAPH_KERNELS
LAYOUTS = {"conv2d": "OHWI", "depthwise_conv2d": "CHW (C = output channels)", "fully_connected": "OI"}
SOURCES = {"model.h": "{}.h", "graph_model.c": "{}.c", "graph_kernels.h": "{}_kernels.h",
           "graph_kernels.c": "{}_kernels.c", "graph_weights.h": "{}_weights.h",
           "graph_weights.c": "{}_weights.c", "app.h": "qe_app.h"}
"""Each template and the file it renders, {} standing for the model's name."""
MAX_DIM = 0xFFFF
"""Heights, widths and channels are uint16 in the node descriptor."""


@dataclass(frozen=True)
class NodeC:
    """What the templates need of one node."""

    index: int
    node: ir.Node
    sym: str
    kernel: str | None
    x: ir.Tensor
    y: ir.Tensor
    win: tuple[int, ...]
    depth_mult: int
    lo: int
    hi: int
    in_off: int
    in2_off: int
    out_off: int
    out_bytes: int
    scratch_off: int
    weights: list[int]
    channels: int
    params: list[int]
    layout: str


def node_context(g: ir.Graph, p: GraphPlan, name: str) -> list[NodeC]:
    out = []
    for i, n in enumerate(g.nodes):
        x, y = g.tensors[n.inputs[0]], g.tensors[n.output]
        if max(*x.shape, *y.shape) > MAX_DIM:
            raise QetoolError(f"{n.name}: dimensions above {MAX_DIM:,} are not supported")
        w = n.window
        win = (w.kernel_h, w.kernel_w, w.stride_h, w.stride_w, w.pad_top, w.pad_bottom, w.pad_left,
               w.pad_right) if w else (0,) * 8
        if max(win) > 255:
            raise QetoolError(f"{n.name}: windows and padding above 255 pixels are not supported")
        q = n.requant
        lo, hi = (q.lo, q.hi) if q else (n.attrs.get("lo", -128), n.attrs.get("hi", 127))
        scratch = f"{n.name}.scratch"
        out.append(NodeC(
            index=i, node=n, sym=symbol(name, n.name.replace(".", "_")),
            kernel=n.op if n.op in KERNELS else None, x=x, y=y, win=win,
            depth_mult=n.attrs.get("depth_multiplier", 0), lo=lo, hi=hi,
            in_off=p.offset(n.inputs[0]), in2_off=p.offset(n.inputs[1]) if len(n.inputs) > 1 else 0,
            out_off=p.offset(n.output), out_bytes=tensor_bytes(y), scratch_off=p.offset(scratch) if scratch in p.where else 0,
            weights=n.weights.reshape(-1).tolist() if n.weights is not None else [],
            channels=len(q.bias) if q else 0, params=op_params(n), layout=LAYOUTS.get(n.op, "")))
    return out


def graph_context(g: ir.Graph, p: GraphPlan, model_hash: str, name: str, title: str) -> dict:
    """The template context of a graph of TFLM-arithmetic kernels (templates/graph_*.j2, with
    model.h and app.h)."""
    nodes = node_context(g, p, name)
    x, y = graph_io(g)
    return dict(title=title, p=name, P=name.upper(), model_hash=model_hash, x=x, y=y, graph=True,
                num_classes=g.output_tensor().elements, input_bytes=p.where[g.input].size,
                input_offset=p.offset(g.input), output_offset=p.offset(g.output),
                arena_bytes=p.arena_bytes, layers=nodes, nodes=nodes,
                kernels=sorted({n.kernel for n in nodes if n.kernel}), kernel_docs=KERNELS)


def check_clamps(g: ir.Graph) -> None:
    """Every requantization's clamp lies in int8 (a sanity check of the front end)."""
    for n in g.nodes:
        if n.requant is not None and not -128 <= n.requant.lo <= n.requant.hi <= 127:
            raise QetoolError(f"{n.name}: clamp {n.requant.lo}..{n.requant.hi} outside int8")
        if n.requant is not None and (np.asarray(n.requant.shift) > 31).any():
            raise QetoolError(f"{n.name}: a multiplier above 2^31 is not supported")
