"""The golden model of an arch.json network: its graph IR run by the IR's integer interpreter
(ir_golden, the executable specification of every C kernel), and a float64 fake-quant
reference of the same network computed from the weights file.

Both take image codes (H, W, C) and walk the layers in order. Tensors are int codes, HWC.
Agreement (docs/testing.md): golden vs C bit-exact; golden vs fake-quant within one output
step per layer when fed the same input codes.
"""

from __future__ import annotations


import numpy as np

from qetool import arch as A
from qetool.checkpoint import Checkpoint
from qetool.compiler import ir, ir_golden
from qetool.compiler.arch_graph import graph_of
from qetool.compiler.ir_golden import Trace, argmax, window_sums
from qetool.compiler.lower import LoweredModel, code_range, tensor_step


def conv_acc(x: np.ndarray, w: np.ndarray, stride: int, pad: tuple[int, int, int, int],
             depthwise: bool) -> np.ndarray:
    """Integer convolution sums, int64 (Ho, Wo, O), of codes x (H, W, C) and weight codes w
    (OIHW, as the weights file holds them). Padding is code 0 (ir_golden.window_sums)."""
    t, b, left, r = pad
    k = w.shape[2]
    win = ir.Window(k, k, stride, stride, t, b, left, r)
    ho = (x.shape[0] + t + b - k) // stride + 1
    wo = (x.shape[1] + left + r - k) // stride + 1
    ordered = w[:, 0] if depthwise else w.transpose(0, 2, 3, 1)
    return window_sums(x, ordered, win, 1 if depthwise else None, 0, (ho, wo))


def channel_sums(x: np.ndarray) -> np.ndarray:
    """The head's int32 sum over H*W of each channel's codes."""
    return x.astype(np.int64).sum(axis=(0, 1))


def run(model: LoweredModel, image_codes: np.ndarray) -> Trace:
    """The integer model on image codes (H, W, C): its graph IR (arch_graph.graph_of) through
    the IR's golden model."""
    values = ir_golden.run(graph_of(model), image_codes)
    logits = values["head"].reshape(-1)
    return Trace({**values, "head": logits}, logits, argmax(logits))


# ---------------------------------------------------------------------------------------------
# Float fake-quant reference (float64), from the weights file


def conv_real(ck: Checkpoint, layer: A.Layer, x: np.ndarray) -> np.ndarray:
    """A conv layer's real output before BatchNorm: input codes convolved with the weight codes,
    times the input step and the per-channel weight steps."""
    c = ck.convs[layer.id]
    s_x = tensor_step(ck, layer.input, A.tensors(ck.arch)[layer.input].bits)
    return conv_acc(x, c.w, layer.stride, layer.pad, layer.depthwise) * (s_x * c.w_step.astype(np.float64))


def output_real(ck: Checkpoint, layer: A.Layer, pre: np.ndarray,
                res: np.ndarray | None = None) -> np.ndarray:
    """A layer's real output before its tensor's quantizer. For a conv, `pre` is conv_real:
    BatchNorm, then ReLU6 or the residual (codes `res`) added. For the head, `pre` is the input
    codes: global average, then the FC with dequantized weights and the float bias."""
    ts = A.tensors(ck.arch)
    if layer.op == "head":
        s_x = tensor_step(ck, layer.input, ts[layer.input].bits)
        pooled = channel_sums(pre) * s_x / (layer.h_in * layer.w_in)
        return (ck.head.w.astype(np.float64) * ck.head.w_step[:, None]) @ pooled + ck.head.bias
    c = ck.convs[layer.id]
    inv = c.bn_gamma.astype(np.float64) / np.sqrt(c.bn_var.astype(np.float64) + c.bn_eps)
    real = (pre - c.bn_mean) * inv + c.bn_beta
    if layer.relu6:
        return np.clip(real, 0.0, 6.0)
    if res is not None:
        real = real + res * tensor_step(ck, layer.residual, ts[layer.residual].bits)
    return real


def quantize_output(ck: Checkpoint, layer: A.Layer, real: np.ndarray) -> np.ndarray:
    """Codes of a layer's output: round half up to its step, clamped (ReLU6: to its clamp code)."""
    t = A.tensors(ck.arch)[layer.id]
    lo, hi = (0, ck.clamps[layer.id]) if layer.relu6 else code_range(t.bits, True)
    return np.clip(np.floor(real / ck.steps[layer.id] + 0.5), lo, hi).astype(np.int32)


def fake_quant_layer(ck: Checkpoint, layer: A.Layer, x: np.ndarray,
                     res: np.ndarray | None = None) -> np.ndarray:
    """One layer in float: dequantize the input codes, convolve with dequantized weights,
    BatchNorm, ReLU6 (or + residual), quantize to the output step (round half up, clamp)."""
    pre = x if layer.op == "head" else conv_real(ck, layer, x)
    return quantize_output(ck, layer, output_real(ck, layer, pre, res))


def run_fake_quant(ck: Checkpoint, image_codes: np.ndarray) -> Trace:
    """The whole network in float fake-quant, each layer fed its own previous codes."""
    t: dict[str, np.ndarray] = {"image": np.asarray(image_codes, dtype=np.int32)}
    for layer in A.layers(ck.arch):
        t[layer.id] = fake_quant_layer(ck, layer, t[layer.input],
                                       t[layer.residual] if layer.residual else None)
    return Trace(t, t["head"], argmax(t["head"]))
