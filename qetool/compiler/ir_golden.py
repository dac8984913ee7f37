"""The golden model of the graph IR: a numpy interpreter computing every node as TFLM's
reference kernels do (docs/ir.md), the executable specification of the generated C.
Tensors are int32 code arrays (H, W, C)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qetool.compiler import ir
from qetool.compiler.tflm_math import multiply_by_quantized_multiplier, softmax_int8


@dataclass
class Trace:
    """An inference's codes: every layer's output (keyed by layer or tensor name), the output
    (an arch network's int8 logits) and the class."""

    tensors: dict[str, np.ndarray]
    logits: np.ndarray
    label: int


def argmax(logits: np.ndarray) -> int:
    """The class: the largest output, ties to the lowest index."""
    return int(np.argmax(logits))


def _padded(x: np.ndarray, w: ir.Window, value: int) -> np.ndarray:
    return np.pad(x, ((w.pad_top, w.pad_bottom), (w.pad_left, w.pad_right), (0, 0)),
                  constant_values=value)


def _taps(x: np.ndarray, w: ir.Window, ho: int, wo: int):
    """(dy, dx, the input pixels under tap (dy, dx) for every output pixel) over the window."""
    for dy in range(w.kernel_h):
        for dx in range(w.kernel_w):
            yield dy, dx, x[dy:dy + w.stride_h * (ho - 1) + 1:w.stride_h,
                            dx:dx + w.stride_w * (wo - 1) + 1:w.stride_w, :]


def round_shift(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(v + 2^(n-1)) >> n with an arithmetic shift; v for n = 0 (int64, broadcast)."""
    n = n.astype(np.int64)
    half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0)
    return np.right_shift(v + half, n)


def requantize(acc: np.ndarray, q: ir.Requant, res: np.ndarray | None = None) -> np.ndarray:
    """Per channel (last axis), by q.rounding (ir.Requant): "double", TFLM's
    clamp(MultiplyByQuantizedMultiplier(acc + bias) + zero point); "single", qetool's
    clamp(round_shift(M ? (acc + bias) * M : bias [+ res * Mx], n)). int64 in, int64 out."""
    bias, m = q.bias.astype(np.int64), q.mult.astype(np.int64)
    if q.rounding == "double":
        v = multiply_by_quantized_multiplier(acc + bias, m, q.shift.astype(np.int64)) + q.zero_point
    else:
        v = np.where(m != 0, (acc + bias) * m, bias)
        if res is not None:
            v = v + res.astype(np.int64) * q.mult_res.astype(np.int64)
        v = round_shift(v, q.shift)
    return np.clip(v, q.lo, q.hi)


def window_sums(x: np.ndarray, weights: np.ndarray, w: ir.Window, depth_multiplier: int | None,
                zp: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Sums of products (Ho, Wo, O) of codes x (H, W, C) and weight codes (OHWI; depthwise CHW
    with `depth_multiplier`, None for a full convolution), padded taps reading `zp`. Computed in
    float64, exact while |sums| < 2^53."""
    xp = _padded(x, w, zp).astype(np.float64)
    ho, wo = out_hw
    wt = weights.astype(np.float64)
    acc = np.zeros((ho, wo, wt.shape[0]))
    if depth_multiplier is None:
        for dy, dx, patch in _taps(xp, w, ho, wo):
            acc += patch @ wt[:, dy, dx, :].T
    else:
        xp = np.repeat(xp, depth_multiplier, axis=2)
        for dy, dx, patch in _taps(xp, w, ho, wo):
            acc += patch * wt[:, dy, dx]
    return acc.astype(np.int64)


def conv_acc(node: ir.Node, x: np.ndarray, zp: int, out_hw: tuple[int, int]) -> np.ndarray:
    """A conv2d or depthwise_conv2d node's sums of products, int64 (window_sums)."""
    dm = node.attrs["depth_multiplier"] if node.op == "depthwise_conv2d" else None
    return window_sums(x, node.weights, node.window, dm, zp, out_hw)


def pool(node: ir.Node, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Average or max over each window's in-bounds taps (padding is left out)."""
    w = node.window
    ho, wo = out_hw
    h_in, w_in, _ = x.shape
    out = np.zeros((ho, wo, x.shape[2]), dtype=np.int64)
    for oy in range(ho):
        y0 = oy * w.stride_h - w.pad_top
        ys = slice(max(0, y0), min(h_in, y0 + w.kernel_h))
        for ox in range(wo):
            x0 = ox * w.stride_w - w.pad_left
            win = x[ys, max(0, x0):min(w_in, x0 + w.kernel_w)].reshape(-1, x.shape[2]).astype(np.int64)
            if node.op == "max_pool":
                out[oy, ox] = win.max(axis=0)
            else:
                n, s = len(win), win.sum(axis=0)
                out[oy, ox] = np.where(s > 0, (s + n // 2) // n, -((-s + n // 2) // n))
    return np.clip(out, node.attrs["lo"], node.attrs["hi"])


def add(node: ir.Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLM's int8 ADD: offsets, << 20, two input rescales, one output rescale."""
    t = node.attrs
    sa = multiply_by_quantized_multiplier((a.astype(np.int64) - t["zp_a"]) << 20, t["mult_a"], t["shift_a"])
    sb = multiply_by_quantized_multiplier((b.astype(np.int64) - t["zp_b"]) << 20, t["mult_b"], t["shift_b"])
    v = multiply_by_quantized_multiplier(sa + sb, t["mult_out"], t["shift_out"]) + t["zp_out"]
    return np.clip(v, t["lo"], t["hi"])


def run_node(g: ir.Graph, node: ir.Node, values: dict[str, np.ndarray]) -> np.ndarray:
    """One node's output codes (H, W, C) from its inputs' codes."""
    x = values[node.inputs[0]]
    tx, ty = g.tensors[node.inputs[0]], g.tensors[node.output]
    hw = ty.shape[1:3]
    if node.op in ("conv2d", "depthwise_conv2d"):
        res = values[node.inputs[1]] if len(node.inputs) > 1 else None
        out = requantize(conv_acc(node, x, tx.zero_point, hw), node.requant, res)
    elif node.op == "head":
        sums = x.astype(np.int64).sum(axis=(0, 1))
        out = requantize(node.weights.astype(np.int64) @ sums, node.requant)
    elif node.op == "fully_connected":
        acc = node.weights.astype(np.int64) @ x.reshape(-1).astype(np.int64)
        out = requantize(acc, node.requant)
    elif node.op in ("avg_pool", "max_pool"):
        out = pool(node, x, hw)
    elif node.op == "add":
        out = add(node, x, values[node.inputs[1]])
    elif node.op == "mean":
        t = node.attrs
        acc = (x.astype(np.int64) - t["zp_in"]).sum(axis=(0, 1))
        out = np.clip(multiply_by_quantized_multiplier(acc, t["mult"], t["shift"]) + t["zp_out"], -128, 127)
    elif node.op == "pad":
        out = _padded(x, node.window, node.attrs["value"])
    elif node.op == "reshape":
        out = x
    elif node.op == "softmax":
        t = node.attrs
        out = softmax_int8(x.reshape(-1, tx.shape[3]), t["mult"], t["shift"], t["diff_min"])
    else:
        raise AssertionError(node.op)
    return np.asarray(out, dtype=np.int32).reshape(ty.hwc)


def run(g: ir.Graph, input_codes: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's codes, the input's included, by tensor name."""
    values = {g.input: np.asarray(input_codes, dtype=np.int32).reshape(g.input_tensor().hwc)}
    for node in g.nodes:
        values[node.output] = run_node(g, node, values)
    return values
