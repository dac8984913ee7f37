"""A compiled model as the device side sees it, whichever front end built it: its input and
output, its layers (the nodes the firmware counts and traces), how a picture or a raw tensor
becomes its input, and its golden model. ArchProgram wraps an arch.json build, GraphProgram an
imported (.tflite) one."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from qetool.compiler import golden, ir, ir_golden
from qetool.compiler.hostrun import pack_input
from qetool.compiler.ir_plan import GraphPlan
from qetool.compiler.lower import LoweredModel
from qetool.compiler.pack import pack_bits
from qetool.compiler.plan import Plan
from qetool.compiler.render import IOTensor, model_io
from qetool.compiler.render_graph import graph_io
from qetool.compiler.tflm_math import dequantize, quantize_float
from qetool.errors import QetoolError
from qetool.preprocess import image_codes, int8_image_codes


@dataclass(frozen=True)
class LayerInfo:
    """One layer or node: id, op, bits of input and weights (0: none), MACs, output shape
    (H, W, C; None for an arch.json head, whose output is the logits)."""

    id: str
    op: str
    bits_in: int
    bits_w: int
    macs: int
    out_shape: tuple[int, int, int] | None


@dataclass
class Trace:
    """The golden model's codes of every layer output (by layer id), the output and the class."""

    tensors: dict[str, np.ndarray]
    logits: np.ndarray
    label: int


class Program:
    """The common interface (see the module docstring)."""

    model_hash: str
    input: IOTensor
    output: IOTensor
    input_bytes: int
    layers: list[LayerInfo]

    @property
    def picture_size(self) -> tuple[int, int]:
        return self.input.height, self.input.width

    def check_input_file(self, codes: np.ndarray, where: str) -> np.ndarray:
        """A raw input tensor (--input FILE.npy): the input's shape (H, W, C, or with a batch of
        1) and integer codes in its range. int8 files for a signed input and uint8 ones for
        an unsigned one are taken as they are; a uint8 file for an int8 input is its bytes
        (as TFLM's tests feed a picture's raw bytes)."""
        x = self.input
        a = np.asarray(codes)
        want = (x.height, x.width, x.channels)
        if a.shape in (want, (1, *want)) and a.dtype.kind == "f":
            return self.quantize_input(a, where).reshape(want).astype(np.int32)
        if a.shape not in (want, (1, *want)) or a.dtype.kind not in "iu":
            raise QetoolError(f"{where}: the input tensor is {a.dtype}{list(a.shape)}; the model "
                              f"takes integers of shape {list(want)}")
        if x.signed and x.bits == 8 and a.dtype == np.uint8:
            a = a.view(np.int8)
        lo, hi = (-(1 << (x.bits - 1)), (1 << (x.bits - 1)) - 1) if x.signed else (0, (1 << x.bits) - 1)
        if a.size and (a.min() < lo or a.max() > hi):
            raise QetoolError(f"{where}: values outside {lo}..{hi} ({x.bits}-bit codes)")
        return a.reshape(want).astype(np.int32)

    def picture_codes(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def quantize_input(self, values: np.ndarray, where: str) -> np.ndarray:
        """A float input tensor's codes (only models with a float input take one)."""
        raise QetoolError(f"{where}: float values, but the model's input is {self.input.bits}-bit codes")

    def output_values(self, codes: np.ndarray) -> list[float] | None:
        """The output's real values where the model's own output is float, else None."""
        return None

    def pack(self, codes: np.ndarray) -> bytes:
        raise NotImplementedError

    def golden(self, codes: np.ndarray) -> Trace:
        raise NotImplementedError

    def layer_crcs(self, t: Trace) -> list[int]:
        """CRC-32 of every layer's output as the device holds it (0 where it has none)."""
        raise NotImplementedError


class ArchProgram(Program):
    def __init__(self, model: LoweredModel, p: Plan):
        self.model, self.plan = model, p
        self.model_hash = model.model_hash
        self.input, self.output = model_io(model)
        self.input_bytes = p.buffers["image"].size
        self.layers = [LayerInfo(l.id, l.op, l.bits_x, l.bits_w, _arch_macs(l),
                                 None if l.op == "head" else (l.h_out, l.w_out, l.cout))
                       for l in model.layers]

    def picture_codes(self, pixels: np.ndarray) -> np.ndarray:
        return image_codes(pixels, self.model.input_bits)

    def pack(self, codes: np.ndarray) -> bytes:
        return pack_input(self.model, codes, self.input_bytes)

    def golden(self, codes: np.ndarray) -> Trace:
        t = golden.run(self.model, codes)
        return Trace(t.tensors, t.logits, t.label)

    def layer_crcs(self, t: Trace) -> list[int]:
        return [0 if l.op == "head" else zlib.crc32(pack_bits(t.tensors[l.id], l.bits_y))
                for l in self.model.layers]


def _arch_macs(layer) -> int:
    """Multiply-accumulates of one arch layer (the head: its sums and its FC)."""
    if layer.op == "head":
        return layer.h_in * layer.w_in * layer.cin + layer.cin * layer.cout
    per_out = layer.kernel * layer.kernel * (1 if layer.depthwise else layer.cin)
    return layer.h_out * layer.w_out * layer.cout * per_out


def node_macs(g: ir.Graph, n: ir.Node) -> int:
    """Multiply-accumulates of a conv or FC node; a pool's or ADD's additions count as one each."""
    y = g.tensors[n.output]
    if n.op == "conv2d":
        _, kh, kw, cin = n.weights.shape
        return y.elements * kh * kw * cin
    if n.op == "depthwise_conv2d":
        return y.elements * n.window.kernel_h * n.window.kernel_w
    if n.op == "fully_connected":
        return n.weights.size
    if n.op in ("avg_pool", "max_pool"):
        return y.elements * n.window.kernel_h * n.window.kernel_w
    if n.op == "mean":
        return g.tensors[n.inputs[0]].elements
    return y.elements if n.op in ("add", "softmax") else 0


class GraphProgram(Program):
    def __init__(self, g: ir.Graph, p: GraphPlan, model_hash: str):
        self.graph, self.plan, self.model_hash = g, p, model_hash
        self.input, self.output = graph_io(g)
        self.input_bytes = p.where[g.input].size
        self.layers = [LayerInfo(n.name, n.op, g.tensors[n.inputs[0]].bits,
                                 8 if n.weights is not None else 0, node_macs(g, n),
                                 g.tensors[n.output].hwc) for n in g.nodes]

    def picture_codes(self, pixels: np.ndarray) -> np.ndarray:
        return int8_image_codes(pixels, self.input.channels)

    def quantize_input(self, values: np.ndarray, where: str) -> np.ndarray:
        if not self.graph.float_input:
            return super().quantize_input(values, where)
        if not np.isfinite(values).all():
            raise QetoolError(f"{where}: the input holds NaN or infinite values")
        return quantize_float(values, self.input.scale, self.input.zero_point)

    def output_values(self, codes: np.ndarray) -> list[float] | None:
        if not self.graph.float_output:
            return None
        return dequantize(codes, self.output.scale, self.output.zero_point).tolist()

    def pack(self, codes: np.ndarray) -> bytes:
        data = np.asarray(codes, dtype=np.int8).tobytes()
        return data + bytes(self.input_bytes - len(data))

    def golden(self, codes: np.ndarray) -> Trace:
        values = ir_golden.run(self.graph, codes)
        out = values[self.graph.output].reshape(-1)
        return Trace({n.name: values[n.output] for n in self.graph.nodes}, out, int(np.argmax(out)))

    def layer_crcs(self, t: Trace) -> list[int]:
        return [zlib.crc32(np.asarray(t.tensors[n.name], np.int8).tobytes()) for n in self.graph.nodes]
