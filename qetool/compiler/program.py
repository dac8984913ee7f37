"""A compiled model as the device side sees it, whichever front end built it: its graph IR and
plan, its input and output, its layers (the nodes the firmware counts and traces), how a picture
or a raw tensor becomes its input, and its golden model."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from qetool.compiler import ir, ir_golden
from qetool.compiler.arch_graph import graph_of, graph_plan
from qetool.compiler.ir import graph_io
from qetool.compiler.ir import arch_op, own_kernels
from qetool.compiler.ir_golden import Trace, argmax
from qetool.compiler.ir_plan import GraphPlan
from qetool.compiler.lower import LoweredModel
from qetool.compiler.pack import pack_bits, pack_padded
from qetool.compiler.plan import Plan, plan
from qetool.compiler.tflm_math import dequantize, quantize_float
from qetool.errors import QetoolError
from qetool.preprocess import image_codes, int8_image_codes


@dataclass(frozen=True)
class LayerInfo:
    """One layer (node): id, op (an arch.json network's ops by their arch names), bits of input
    and weights (0: none), MACs, output shape (H, W, C; None for a head, whose output is the
    logits, outside the arena)."""

    id: str
    op: str
    bits_in: int
    bits_w: int
    macs: int
    out_shape: tuple[int, int, int] | None


def node_macs(g: ir.Graph, n: ir.Node) -> int:
    """Multiply-accumulates of a node: conv, depthwise and FC products; a head's sums and FC;
    a pool's, ADD's and softmax's elements (one each)."""
    y = g.tensors[n.output]
    if n.op == "conv2d":
        _, kh, kw, cin = n.weights.shape
        return y.elements * kh * kw * cin
    if n.op == "depthwise_conv2d":
        return y.elements * n.window.kernel_h * n.window.kernel_w
    if n.op == "fully_connected":
        return n.weights.size
    if n.op == "head":
        return g.tensors[n.inputs[0]].elements + n.weights.size
    if n.op in ("avg_pool", "max_pool"):
        return y.elements * n.window.kernel_h * n.window.kernel_w
    if n.op == "mean":
        return g.tensors[n.inputs[0]].elements
    return y.elements if n.op in ("add", "softmax") else 0


def _op_name(n: ir.Node) -> str:
    return arch_op(n) if own_kernels(n) else n.op


class Program:
    """See the module docstring. `model_hash` names the model on the device."""

    def __init__(self, g: ir.Graph, p: GraphPlan, model_hash: str):
        self.graph, self.plan, self.model_hash = g, p, model_hash
        self.input, self.output = graph_io(g)
        self.input_bytes = p.where[g.input].size
        self.layers = [LayerInfo(n.name, _op_name(n), g.tensors[n.inputs[0]].bits,
                                 n.bits_w if n.weights is not None else 0, node_macs(g, n),
                                 None if n.op == "head" else g.tensors[n.output].hwc)
                       for n in g.nodes]

    @property
    def picture_size(self) -> tuple[int, int]:
        return self.input.height, self.input.width

    def picture_codes(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB pixels -> input codes, as the model's front end defines it (Graph.picture)."""
        if self.graph.picture == "shift":
            return image_codes(pixels, self.input.bits)
        return int8_image_codes(pixels, self.input.channels)

    def check_input_file(self, codes: np.ndarray, where: str) -> np.ndarray:
        """A raw input tensor (--input FILE.npy): the input's shape (H, W, C, or with a batch of
        1) and integer codes in its range; float values for a model whose own input is float,
        quantized as TFLM's QUANTIZE does. A uint8 file for an int8 input is its bytes (as
        TFLM's tests feed a picture's raw bytes)."""
        x = self.input
        a = np.asarray(codes)
        want = (x.height, x.width, x.channels)
        if a.shape in (want, (1, *want)) and a.dtype.kind == "f":
            if not self.graph.float_input:
                raise QetoolError(f"{where}: float values, but the model's input is {x.bits}-bit codes")
            if not np.isfinite(a).all():
                raise QetoolError(f"{where}: the input holds NaN or infinite values")
            return quantize_float(a, x.scale, x.zero_point).reshape(want).astype(np.int32)
        if a.shape not in (want, (1, *want)) or a.dtype.kind not in "iu":
            raise QetoolError(f"{where}: the input tensor is {a.dtype}{list(a.shape)}; the model "
                              f"takes integers of shape {list(want)}")
        if x.signed and x.bits == 8 and a.dtype == np.uint8:
            a = a.view(np.int8)
        lo, hi = (-(1 << (x.bits - 1)), (1 << (x.bits - 1)) - 1) if x.signed else (0, (1 << x.bits) - 1)
        if a.size and (a.min() < lo or a.max() > hi):
            raise QetoolError(f"{where}: values outside {lo}..{hi} ({x.bits}-bit codes)")
        return a.reshape(want).astype(np.int32)

    def output_values(self, codes: np.ndarray) -> list[float] | None:
        """The output's real values where the model's own output is float, else None."""
        if not self.graph.float_output:
            return None
        return dequantize(codes, self.output.scale, self.output.zero_point).tolist()

    def pack(self, codes: np.ndarray) -> bytes:
        """Input codes packed as the input slot holds them (docs/memory.md), input_bytes long."""
        data = pack_padded(np.asarray(codes).reshape(-1), self.input.bits)
        return data + bytes(self.input_bytes - len(data))

    def golden(self, codes: np.ndarray) -> Trace:
        values = ir_golden.run(self.graph, codes)
        out = values[self.graph.output].reshape(-1)
        return Trace({n.name: values[n.output] for n in self.graph.nodes}, out, argmax(out))

    def layer_crcs(self, t: Trace) -> list[int]:
        """CRC-32 of every layer's output as the device holds it, packed (0 for a head)."""
        g = self.graph
        return [0 if n.op == "head" else zlib.crc32(pack_bits(t.tensors[n.name], g.tensors[n.output].bits))
                for n in g.nodes]


def arch_program(model: LoweredModel, p: Plan | None = None) -> Program:
    """An arch.json network's lowered model (with its plan, computed when not given) as the
    device side sees it."""
    g = graph_of(model)
    return Program(g, graph_plan(g, p or plan(model.arch)), model.model_hash)
