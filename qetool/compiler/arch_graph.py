"""The arch.json front end's last step: a lowered model (lower.py) as a graph IR (docs/ir.md).

Each arch layer becomes one node named by its layer id, writing the tensor of that name (the
image is the input): the stem and the 1x1 layers are conv2d (a project with a residual reads it
as its second input, Requant.mult_res), the depthwise layers depthwise_conv2d, the head `head`.
Tensors keep their bits and signedness; their zero point is 0; only the image and the logits
carry a scale (the integer model needs no other). Every Requant rounds "single".
"""

from __future__ import annotations

from qetool import arch as A
from qetool.compiler import ir, ir_plan
from qetool.compiler.ir_plan import GraphPlan
from qetool.compiler.lower import LoweredLayer, LoweredModel
from qetool.compiler.pack import kernel_order
from qetool.compiler.plan import Plan
from qetool.preprocess import image_step


def _node(layer: LoweredLayer) -> ir.Node:
    q = ir.Requant(layer.bias, layer.m, layer.n, 0, layer.lo, layer.hi, "single", layer.mx)
    if layer.op == "head":
        return ir.Node(layer.id, "head", (layer.input,), layer.id, None, layer.weights, q,
                       {"block": layer.block}, layer.bits_w)
    t, b, left, r = layer.pad
    win = ir.Window(layer.kernel, layer.kernel, layer.stride, layer.stride, t, b, left, r)
    w = kernel_order(layer.op, layer.weights)
    if layer.op == "dwconv":
        return ir.Node(layer.id, "depthwise_conv2d", (layer.input,), layer.id, win, w, q,
                       {"depth_multiplier": 1, "block": layer.block}, layer.bits_w)
    ohwi = w.reshape(layer.cout, 1, 1, layer.cin) if layer.op == "conv1x1" else w
    inputs = (layer.input, layer.residual) if layer.residual else (layer.input,)
    return ir.Node(layer.id, "conv2d", inputs, layer.id, win, ohwi, q, {"block": layer.block},
                   layer.bits_w)


def graph_of(model: LoweredModel) -> ir.Graph:
    """The lowered model as a graph IR (see the module docstring)."""
    tensors = {}
    for name, t in A.tensors(model.arch).items():
        scale = image_step(model.input_bits) if name == "image" else model.logit_step if name == "head" else 0.0
        tensors[name] = ir.Tensor(name, name, (1, t.h, t.w, t.c), t.bits, t.signed, scale, 0)
    return ir.Graph(tensors, tuple(_node(layer) for layer in model.layers), "image", "head",
                    picture="shift")


def graph_plan(g: ir.Graph, p: Plan) -> GraphPlan:
    """The IR plan of an arch network's graph with plan.py's placement (`p`, the closed form the
    search evaluates), checked against the graph's lifetimes."""
    offsets = {n: b.offset for n, b in p.buffers.items() if b.alias is None}
    return ir_plan.plan(g, offsets, p.arena_bytes)
