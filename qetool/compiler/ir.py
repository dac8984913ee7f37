"""The graph IR (docs/ir.md): what a front end (a .tflite file, qetool.compiler.tflite) hands to
the golden model, the memory plan and the renderer.

Tensors are N x H x W x C (N = 1; a vector is 1 x 1 x 1 x C), integer codes of `bits` bits;
code q stands for the real value scale * (q - zero_point). Nodes run in list order; each reads
tensors produced earlier (or the graph input) and writes one new tensor.

Every node with a requantization carries it folded to integers (Requant): the input zero point
is already folded into the bias (bias - z_x * sum(w)), padded taps read the input zero point,
and the output zero point and fused activation are in the clamp.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Mapping

import numpy as np

OPS = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "avg_pool", "max_pool", "mean",
       "pad", "reshape", "softmax", "head")
"""The IR's operators (docs/ir.md gives each one's arithmetic)."""
ROUNDINGS = ("double", "single")
"""How a Requant rounds: "double" is TFLM's (a rounding doubling high multiply, then a rounding
shift), "single" qetool's own (one int64 multiply and one rounding shift): docs/arithmetic.md."""


@dataclass(frozen=True)
class Tensor:
    """An activation tensor: `name` (t<index in the source file>), `label` (its name there),
    shape (N, H, W, C), bits and signedness of its codes, scale and zero point."""

    name: str
    label: str
    shape: tuple[int, int, int, int]
    bits: int
    signed: bool
    scale: float
    zero_point: int

    @property
    def elements(self) -> int:
        n, h, w, c = self.shape
        return n * h * w * c

    @property
    def hwc(self) -> tuple[int, int, int]:
        return self.shape[1:]


@dataclass(frozen=True)
class Window:
    """A sliding window: kernel and stride per axis, padding per side in input pixels."""

    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int


@dataclass(frozen=True, eq=False)
class Requant:
    """Per output channel, bias and mult int32, lo and hi in output codes (the fused activation).
    "double": y = clamp(MultiplyByQuantizedMultiplier(acc + bias, mult, shift) + zero_point),
    shift the exponent e of mult * 2^(e - 31) (int32).
    "single": v = mult ? (acc + bias) * mult : bias, plus residual * mult_res with a second
    input; y = clamp(round_shift(v, shift)), shift n in 0..62 (int8), zero point 0."""

    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    zero_point: int
    lo: int
    hi: int
    rounding: str = "double"
    mult_res: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Node:
    """One operator: `op` (OPS), input and output tensor names, a window for convs and pools,
    weight codes of `bits_w` bits in the order the reference kernels read them (conv2d OHWI,
    depthwise_conv2d CHW with C = output channels, fully_connected and head OI), its
    requantization, and op-specific integers (`attrs`, docs/ir.md). `head` is an arch.json
    network's global sum over H x W followed by its fully connected layer."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    window: Window | None = None
    weights: np.ndarray | None = None
    requant: Requant | None = None
    attrs: Mapping[str, int] = field(default_factory=dict)
    bits_w: int = 8


def own_kernels(node: Node) -> bool:
    """Whether a node runs on qetool's own sub-byte kernels (single rounding), not the
    TFLM-arithmetic ones."""
    return node.requant is not None and node.requant.rounding == "single"


def arch_op(node: Node) -> str:
    """The arch.json op of a node of qetool's own kernels: conv (the stem), conv1x1, dwconv, head."""
    if node.op == "conv2d":
        return "conv1x1" if node.window.kernel_h == 1 and node.window.kernel_w == 1 else "conv"
    return {"depthwise_conv2d": "dwconv", "head": "head"}[node.op]


def op_params(node: Node) -> list[int]:
    """A node's op-specific integers in the order its kernel reads them (Flash, 4 bytes each):
    ADD zp_b, mult_a, shift_a, mult_b, shift_b, mult_out, shift_out; SOFTMAX mult, left shift,
    diff_min; MEAN mult, shift."""
    t = node.attrs
    if node.op == "add":
        return [t["zp_b"], t["mult_a"], t["shift_a"], t["mult_b"], t["shift_b"], t["mult_out"], t["shift_out"]]
    if node.op == "softmax":
        return [t["mult"], t["shift"], t["diff_min"]]
    if node.op == "mean":
        return [t["mult"], t["shift"]]
    return []


@dataclass(frozen=True, eq=False)
class Graph:
    """Tensors by name, nodes in execution order, the graph's input and output tensor; a float
    input is quantized and a float output dequantized on the host (`float_input`,
    `float_output`: the model's QUANTIZE and DEQUANTIZE edges). `picture` says how a picture
    becomes the input: "offset", int8 = pixel - 128 (gray for one channel), as TFLM's examples
    feed camera pixels; "shift", codes pixel >> (8 - bits) (arch.json networks)."""

    tensors: Mapping[str, Tensor]
    nodes: tuple[Node, ...]
    input: str
    output: str
    float_input: bool = False
    float_output: bool = False
    picture: str = "offset"

    @cached_property
    def producer(self) -> dict[str, int]:
        """The index of the node writing each tensor (the input has none)."""
        return {n.output: i for i, n in enumerate(self.nodes)}

    @cached_property
    def consumers(self) -> dict[str, tuple[int, ...]]:
        """The indices of the nodes reading each tensor, in order."""
        out: dict[str, list[int]] = {t: [] for t in self.tensors}
        for i, n in enumerate(self.nodes):
            for t in dict.fromkeys(n.inputs):
                out[t].append(i)
        return {t: tuple(v) for t, v in out.items()}

    def input_tensor(self) -> Tensor:
        return self.tensors[self.input]

    def output_tensor(self) -> Tensor:
        return self.tensors[self.output]


@dataclass(frozen=True)
class IOTensor:
    """A model input or output as the host sees it: shape H x W x C (HWC), bits, signedness;
    code q stands for the real value scale * (q - zero_point)."""

    height: int
    width: int
    channels: int
    bits: int
    signed: bool
    scale: float
    zero_point: int

    @property
    def scale_bits(self) -> int:
        """The scale as IEEE-754 single-precision bits (how model.h and HELLO carry it)."""
        return struct.unpack("<I", struct.pack("<f", self.scale))[0]

    def to_json(self) -> dict:
        return asdict(self)


def graph_io(g: Graph) -> tuple[IOTensor, IOTensor]:
    """The graph's input and output as the host sees them."""
    def io(t: Tensor) -> IOTensor:
        _, h, w, c = t.shape
        return IOTensor(h, w, c, t.bits, t.signed, t.scale, t.zero_point)
    return io(g.input_tensor()), io(g.output_tensor())
