"""Packed layouts and their exact byte counts (docs/memory.md, Flash side).

Bit order, for weights and activations alike: a tensor is a little-endian bit stream; element e
(in its layout order) occupies stream bits [e*b, (e+1)*b), stream bit j being bit (j % 8) of byte
j // 8, least significant bit first. Elements cross byte boundaries for b = 3, 5, 6, 7.

Layouts: activations HWC (channel fastest). Conv weights OHWI for the stem and 1x1 convs (one
output channel's weights contiguous); depthwise weights CHW (one channel's k*k taps contiguous,
as the in-place depthwise kernel works one channel plane at a time).
Every array starts on a 4-byte boundary, so each is rounded up to 4 bytes.

Model Flash = packed weights + per-channel data + head + kernel code (`model_flash`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from qetool.arch import Arch, Layer, layers, tensors
from qetool.compiler import ir
from qetool.compiler.ir import arch_op, op_params, own_kernels
from qetool.compiler.kernels import layer_variants
from qetool.errors import QetoolError

ALIGN = 4
"""Every array (weights, per-channel data, activation buffer) starts on this many bytes."""
CHANNEL_BYTES = 9
"""Per output channel: bias int32 + multiplier M int32 + shift n int8 (docs/arithmetic.md)."""
RESIDUAL_CHANNEL_BYTES = 4
"""Extra per output channel of a project with a residual: Mx int32."""

GRAPH_KERNELS = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "avg_pool", "max_pool",
                 "mean", "pad", "softmax")
"""The C functions of an imported model's kernels, after the model's name (render_graph.KERNELS)."""

CODE_SIZES = Path(__file__).with_name("code_sizes.json")
"""Code bytes per kernel and core, measured from the ELF by `make code-sizes` (docs/memory.md)."""
CODE_SIZES_FORMAT = "qetool-code-sizes/2"


@lru_cache(maxsize=None)
def code_table(core: str) -> dict:
    """Code bytes on `core` (a -mcpu name): each op's kernel with its fixed helpers, `widths`
    (each width helper, kernels.Kernel.width_helpers), `runtime` (qe_model_input,
    qe_model_arena, the fixed part of qe_model_run, libc's memset) and `layer` (one layer's call
    in qe_model_run with its hooks, and its descriptor); `graph` holds the same for imported
    models (graph_code_bytes)."""
    doc = json.loads(CODE_SIZES.read_text())
    if doc.get("format") != CODE_SIZES_FORMAT:
        raise QetoolError(f"{CODE_SIZES.name} is not {CODE_SIZES_FORMAT} (run `make code-sizes`)")
    if core not in doc["cores"]:
        raise QetoolError(f"no kernel code sizes for {core} in {CODE_SIZES.name} "
                          f"(measured: {', '.join(doc['cores'])}; run `make code-sizes`)")
    return doc["cores"][core]


def align(n: int) -> int:
    """Round `n` bytes up to ALIGN."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


def packed_bytes(count: int, bits: int) -> int:
    """Bytes of `count` elements of `bits` bits packed densely: ceil(count * bits / 8)."""
    return (count * bits + 7) // 8


def act_bytes(h: int, w: int, c: int, bits: int) -> int:
    """Activation buffer: ceil(H * W * C * bits / 8) rounded up to 4 bytes."""
    return align(packed_bytes(h * w * c, bits))


def weight_bytes(params: int, bits: int) -> int:
    """One layer's packed weights: ceil(params * bits / 8) rounded up to 4 bytes."""
    return align(packed_bytes(params, bits))


def channel_bytes(cout: int, residual: bool) -> int:
    """One layer's per-channel data: 9 bytes a channel (13 with a residual), rounded up to 4."""
    return align(CHANNEL_BYTES * cout) + (RESIDUAL_CHANNEL_BYTES * cout if residual else 0)


def code_bytes(kernels: set[str], widths: frozenset[str], n_layers: int, core: str) -> int:
    """Code bytes on `core`: the runtime, each distinct kernel once, each width helper a layer
    needs once, and one call per layer."""
    t = code_table(core)
    return (t["runtime"] + sum(t[k] for k in kernels) + sum(t["widths"][h] for h in widths)
            + t["layer"] * n_layers)


def graph_code_bytes(kernels: set[str], n_nodes: int, core: str) -> int:
    """Code bytes of an imported model on `core`: its runtime, each distinct graph kernel once,
    and one descriptor and call per node (the table's `graph` entry)."""
    t = code_table(core)["graph"]
    return t["runtime"] + sum(t[k] for k in kernels) + t["node"] * n_nodes


def arch_width_helpers(arch: Arch) -> frozenset[str]:
    """The width helpers an arch.json network's layers need (kernels.layer_variants)."""
    ts = tensors(arch)
    return frozenset().union(*(
        layer_variants(layer.op, layer.kernel, layer.cin, ts[layer.input].bits, layer.bits_w,
                       ts[layer.id].bits, layer.residual is not None) for layer in layers(arch)))


def graph_width_helpers(g: ir.Graph) -> frozenset[str]:
    """The width helpers of a graph of qetool's own kernels (kernels.layer_variants)."""
    out: set[str] = set()
    for n in g.nodes:
        x, y = g.tensors[n.inputs[0]], g.tensors[n.output]
        out |= layer_variants(arch_op(n), n.window.kernel_h if n.window else 1, x.shape[3], x.bits,
                              n.bits_w, y.bits, len(n.inputs) > 1)
    return frozenset(out)


@dataclass(frozen=True)
class LayerFlash:
    """Flash bytes of one layer: packed weights and per-channel data."""

    id: str
    weights: int
    channel: int


@dataclass(frozen=True)
class Flash:
    """Model Flash (docs/memory.md), in bytes."""

    layers: tuple[LayerFlash, ...]
    code: int

    @property
    def weights(self) -> int:
        return sum(f.weights for f in self.layers)

    @property
    def channel(self) -> int:
        return sum(f.channel for f in self.layers)

    @property
    def total(self) -> int:
        return self.weights + self.channel + self.code


def graph_flash(g: ir.Graph, core: str) -> Flash:
    """Model Flash of a graph IR on `core`, node by node. qetool's own kernels: packed weights
    (weight_bytes) and 9 bytes a channel (13 with a residual: channel_bytes), their code from the
    table's kernels; the TFLM-arithmetic kernels: int8 weights (rounded up to 4), 12 bytes a
    channel and 4 per op parameter, their code from the table's `graph` entry. For an arch.json
    network this equals model_flash(arch) (a test proves it)."""
    rows = []
    for n in g.nodes:
        if own_kernels(n):
            rows.append(LayerFlash(n.name, weight_bytes(n.weights.size, n.bits_w),
                                   channel_bytes(len(n.requant.bias), len(n.inputs) > 1)))
        else:
            w = align(n.weights.size) if n.weights is not None else 0
            ch = 12 * len(n.requant.bias) if n.requant is not None else 0
            rows.append(LayerFlash(n.name, w, ch + 4 * len(op_params(n))))
    if all(own_kernels(n) for n in g.nodes):
        code = code_bytes({arch_op(n) for n in g.nodes}, graph_width_helpers(g), len(g.nodes), core)
    else:
        code = graph_code_bytes({n.op for n in g.nodes if n.op in GRAPH_KERNELS}, len(g.nodes), core)
    return Flash(tuple(rows), code)


def layer_flash(layer: Layer) -> LayerFlash:
    return LayerFlash(layer.id, weight_bytes(layer.params, layer.bits_w),
                      channel_bytes(layer.cout, layer.residual is not None))


def model_flash(arch: Arch, core: str) -> Flash:
    """Every layer's weights and per-channel data (the head included) plus kernel code on
    `core`."""
    ls = layers(arch)
    return Flash(tuple(layer_flash(layer) for layer in ls),
                 code_bytes({layer.op for layer in ls}, arch_width_helpers(arch), len(ls), core))


# ---------------------------------------------------------------------------------------------
# Packing itself (numpy): the bit order above, for any width 1..8.


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack integer codes (signed or unsigned, any shape, C order) into the bit stream.
    Signed codes are stored in two's complement in `bits` bits."""
    flat = np.asarray(codes, dtype=np.int64).reshape(-1) & ((1 << bits) - 1)
    shifts = np.arange(bits, dtype=np.int64)
    stream = ((flat[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(stream, bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int, signed: bool) -> np.ndarray:
    """Inverse of pack_bits: `count` codes as int32."""
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    stream = stream[: count * bits].reshape(count, bits).astype(np.int32)
    vals = (stream << np.arange(bits, dtype=np.int32)).sum(axis=1, dtype=np.int32)
    if signed:
        vals = np.where(vals >= 1 << (bits - 1), vals - (1 << bits), vals)
    return vals.astype(np.int32)


def kernel_order(op: str, w_oihw: np.ndarray) -> np.ndarray:
    """Weight codes (OIHW, as the weights file holds them) in the order the kernel reads them."""
    if op == "conv":
        return w_oihw.transpose(0, 2, 3, 1)
    if op == "dwconv":
        return w_oihw[:, 0]
    return w_oihw.reshape(w_oihw.shape[0], -1)  # 1x1 (O, I, 1, 1) and the head's (K, C)


def pack_padded(codes: np.ndarray, bits: int) -> bytes:
    """pack_bits, zero-padded to ALIGN bytes: an array exactly as the C code stores it."""
    data = pack_bits(codes, bits)
    return data + bytes(align(len(data)) - len(data))

