"""The TFLite front end (docs/ir.md): an int8 .tflite flatbuffer -> the graph IR, every
multiplier computed as TensorFlow Lite Micro's kernels compute it (docs/arithmetic.md).

The flatbuffer is read with the schema the tflite-micro wheel ships (its generated object API);
tflite-micro is imported only here and only when a .tflite file is compiled.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from qetool.compiler import ir
from qetool.compiler.tflm_math import quantize_multiplier, round_away, softmax_params
from qetool.errors import QetoolError

IDENTIFIER = b"TFL3"
"""The flatbuffer file identifier of a TFLite model, at bytes 4..8."""
INT8, INT32, FLOAT32 = 9, 2, 0
"""TensorType codes of the schema."""
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8",
              17: "int4"}
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
             "MAX_POOL_2D", "MEAN", "PAD", "RESHAPE", "SOFTMAX",
             "QUANTIZE (input edge)", "DEQUANTIZE (output edge)")
"""TFLite operators the front end imports."""
MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "PAD": 2, "MEAN": 2}
"""Inputs each operator needs (a bias is optional)."""
OPTIONS = {"CONV_2D": "Conv2DOptionsT", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptionsT",
           "AVERAGE_POOL_2D": "Pool2DOptionsT", "MAX_POOL_2D": "Pool2DOptionsT",
           "SOFTMAX": "SoftmaxOptionsT"}
"""The options table an operator cannot do without (the others have defaults)."""
ADD_LEFT_SHIFT = 20
"""TFLM's int8 ADD shifts both inputs left by this before rescaling."""


def is_tflite(data: bytes) -> bool:
    """A TFLite flatbuffer carries the identifier TFL3 at bytes 4..8."""
    return len(data) >= 8 and data[4:8] == IDENTIFIER


def tflite_file(path: str | Path) -> bool:
    """Whether the file at `path` is a TFLite flatbuffer (False when unreadable: its loader
    reports that)."""
    try:
        with open(path, "rb") as f:
            return is_tflite(f.read(8))
    except OSError:
        return False


def schema() -> Any:
    """The flatbuffers-generated TFLite schema of the tflite-micro wheel."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated
    except ImportError as e:
        raise QetoolError(f"importing a .tflite file needs tflite-micro ({e}): pip install -e .") from None
    return schema_py_generated


def model_hash(data: bytes) -> str:
    """16 hex digits of the file's SHA-256: an imported model is its file."""
    return hashlib.sha256(data).hexdigest()[:16]


def _op_names(s: Any) -> dict[int, str]:
    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}


class _Reader:
    """One subgraph being converted; `where` prefixes every error (the file's name)."""

    def __init__(self, s: Any, model: Any, where: str):
        self.s, self.m, self.where = s, model, where
        if not model.subgraphs or len(model.subgraphs) != 1:
            self.fail(f"{len(model.subgraphs or [])} subgraphs: only single-graph models are supported")
        self.g = model.subgraphs[0]
        self.names = _op_names(s)
        self.tensors: dict[str, ir.Tensor] = {}

    def opname(self, op: Any) -> str:
        """The operator's builtin name (e.g. CONV_2D)."""
        if not 0 <= op.opcodeIndex < len(self.m.operatorCodes or []):
            self.fail(f"operator code index {op.opcodeIndex} out of range")
        code = self.m.operatorCodes[op.opcodeIndex]
        n = max(code.builtinCode, code.deprecatedBuiltinCode)
        return self.names.get(n, f"builtin {n}")

    def fail(self, msg: str) -> NoReturn:
        raise QetoolError(f"{self.where}: {msg}")

    def raw(self, index: int) -> Any:
        if not 0 <= index < len(self.g.tensors or []):
            self.fail(f"tensor index {index} out of range")
        return self.g.tensors[index]

    def data(self, index: int, dtype: type, what: str) -> np.ndarray:
        """A constant tensor's values."""
        t = self.raw(index)
        buf = self.m.buffers[t.buffer] if 0 <= t.buffer < len(self.m.buffers or []) else None
        if buf is None or buf.data is None:
            self.fail(f"{what} (tensor {index}) has no constant data")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if min(shape, default=1) < 0:
            self.fail(f"{what} (tensor {index}) has a negative dimension")
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
        want = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(raw) != want:
            self.fail(f"{what} (tensor {index}) holds {len(raw)} bytes, its shape {list(shape)} needs {want}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    def quant(self, t: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
        q = t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            self.fail(f"tensor {index} ({_label(t)}) is not quantized: only int8 models are supported")
        scale = np.asarray(q.scale, dtype=np.float32)
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(scale)), dtype=np.int64)
        if zp.shape != scale.shape:
            self.fail(f"tensor {index} ({_label(t)}): {len(scale)} scales but {len(zp)} zero points")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            self.fail(f"tensor {index} ({_label(t)}): scales must be positive numbers")
        return scale, zp

    def activation(self, index: int) -> str:
        """The IR tensor of an activation (int8, per-tensor quantized)."""
        name = f"t{index}"
        if name in self.tensors:
            return name
        t = self.raw(index)
        if t.type != INT8:
            self.fail(f"tensor {index} ({_label(t)}) is {TYPE_NAMES.get(t.type, t.type)}: only int8 "
                      "models are supported (quantize with int8 activations and weights)")
        scale, zp = self.quant(t, index)
        if len(scale) != 1:
            self.fail(f"tensor {index} ({_label(t)}): activations need one scale, it has {len(scale)}")
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        if not shape or shape[0] != 1 or len(shape) not in (2, 4) or min(shape) < 1:
            self.fail(f"tensor {index} ({_label(t)}): shape {shape}: give batch 1 and NHWC or NC")
        nhwc = tuple(shape) if len(shape) == 4 else (1, 1, 1, shape[1])
        if max(nhwc) > 0xFFFF or int(np.prod(nhwc)) > 1 << 24:
            self.fail(f"tensor {index} ({_label(t)}): shape {shape} is beyond any microcontroller")
        if not -128 <= int(zp[0]) <= 127:
            self.fail(f"tensor {index} ({_label(t)}): zero point {int(zp[0])} outside int8")
        self.tensors[name] = ir.Tensor(name, _label(t), nhwc, 8, True, float(scale[0]), int(zp[0]))
        return name

    def weights(self, index: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """int8 weights and their scales (one, or one per output channel)."""
        t = self.raw(index)
        if t.type != INT8:
            self.fail(f"{what} (tensor {index}) is {TYPE_NAMES.get(t.type, t.type)}: only int8 models are supported")
        scale, zp = self.quant(t, index)
        if (zp != 0).any():
            self.fail(f"{what} (tensor {index}): weights need zero point 0 (symmetric int8)")
        return self.data(index, np.int8, what), scale.astype(np.float64)

    def bias(self, index: int, n: int, what: str) -> np.ndarray:
        """int32 bias of n channels (zeros when the op has none); its own quantization is not read
        (TFLM's kernels ignore it)."""
        if index < 0:
            return np.zeros(n, dtype=np.int64)
        t = self.raw(index)
        if t.type != INT32:
            self.fail(f"{what} bias (tensor {index}) is {TYPE_NAMES.get(t.type, t.type)}, not int32")
        b = self.data(index, np.int32, f"{what} bias").reshape(-1)
        if b.size != n:
            self.fail(f"{what} bias (tensor {index}) has {b.size} values for {n} channels")
        return b.astype(np.int64)


def _label(t: Any) -> str:
    name = t.name
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name or "")


def _clamp(act: int, t: ir.Tensor, r: _Reader, where: str) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized: NONE, RELU, RELU_N1_TO_1, RELU6 (codes)."""
    def q(f: float) -> int:
        return t.zero_point + round_away(float(np.float32(f) / np.float32(t.scale)))
    lo, hi = -128, 127
    if act == 0:
        return lo, hi
    if act == 1:
        return max(lo, q(0.0)), hi
    if act == 2:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    if act == 3:
        return max(lo, q(0.0)), min(hi, q(6.0))
    r.fail(f"{where}: fused activation {act} is not supported (NONE, RELU, RELU_N1_TO_1, RELU6)")


def _window(padding: int, h: int, w: int, kh: int, kw: int, sh: int, sw: int,
            out: ir.Tensor, r: _Reader, where: str) -> ir.Window:
    """SAME (0: extra row/column at the bottom/right) or VALID (1) padding, as TFLite computes
    it; the output tensor's shape must agree."""
    if min(kh, kw, sh, sw) < 1:
        r.fail(f"{where}: kernel {kh}x{kw} and stride {sh}x{sw} must be positive")
    if padding == 0:
        ho, wo = -(-h // sh), -(-w // sw)
    elif padding == 1:
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    else:
        r.fail(f"{where}: padding {padding} is neither SAME nor VALID")
    if (ho, wo) != out.shape[1:3]:
        r.fail(f"{where}: output is {out.shape[1]}x{out.shape[2]}, the window gives {ho}x{wo}")
    ph = max((ho - 1) * sh + kh - h, 0)
    pw = max((wo - 1) * sw + kw - w, 0)
    return ir.Window(kh, kw, sh, sw, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)


def _requant(acc_scale: np.ndarray, bias: np.ndarray, abs_sums: np.ndarray, out: ir.Tensor,
             lo: int, hi: int, r: _Reader, where: str) -> ir.Requant:
    """Per channel: multiplier and shift of the real scale acc_scale[c] (already divided by the
    output scale), the folded bias in int32. The kernels sum in int32: |bias| + 128 * sum |w|
    (`abs_sums`) must fit."""
    mults, shifts = zip(*(quantize_multiplier(float(a)) for a in acc_scale))
    if (np.abs(bias) + 128 * abs_sums).max(initial=0) > 2**31 - 1:
        r.fail(f"{where}: its sums with the bias can exceed the kernels' int32 accumulators")
    return ir.Requant(bias.astype(np.int32), np.array(mults, np.int32), np.array(shifts, np.int32),
                      out.zero_point, lo, hi)


def _conv(r: _Reader, name: str, op: Any, opts: Any, depthwise: bool) -> ir.Node:
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    w, s_w = r.weights(op.inputs[1], f"{name} filter")
    if w.ndim != 4:
        r.fail(f"{name}: filter shape {list(w.shape)} is not 4-D")
    if opts.dilationHFactor != 1 or opts.dilationWFactor != 1:
        r.fail(f"{name}: dilation {opts.dilationHFactor}x{opts.dilationWFactor} is not supported (1 only)")
    cin, cout = x.shape[3], y.shape[3]
    if depthwise:
        _, kh, kw, wc = w.shape
        mult = opts.depthMultiplier
        if w.shape[0] != 1 or wc != cout or cin * mult != cout:
            r.fail(f"{name}: filter {list(w.shape)} for {cin} -> {cout} channels with depth multiplier {mult}")
        weights = w[0].transpose(2, 0, 1)                      # (cout, kh, kw)
    else:
        o, kh, kw, wi = w.shape
        if o != cout or wi != cin:
            r.fail(f"{name}: filter {list(w.shape)} for {cin} -> {cout} channels")
        weights = w
    if len(s_w) not in (1, cout):
        r.fail(f"{name}: {len(s_w)} filter scales for {cout} channels")
    win = _window(opts.padding, x.shape[1], x.shape[2], kh, kw, opts.strideH, opts.strideW, y, r, name)
    per_channel = weights.reshape(cout, -1).astype(np.int64)
    bias = r.bias(op.inputs[2] if len(op.inputs) > 2 else -1, cout, name) - x.zero_point * per_channel.sum(axis=1)
    scale = float(x.scale) * np.broadcast_to(s_w, (cout,)) / float(y.scale)
    lo, hi = _clamp(opts.fusedActivationFunction, y, r, name)
    return ir.Node(name, "depthwise_conv2d" if depthwise else "conv2d", (x.name,), y.name, win,
                   np.ascontiguousarray(weights),
                   _requant(scale, bias, np.abs(per_channel).sum(axis=1), y, lo, hi, r, name),
                   {"depth_multiplier": opts.depthMultiplier if depthwise else 1})


def _fully_connected(r: _Reader, name: str, op: Any, opts: Any) -> ir.Node:
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    w, s_w = r.weights(op.inputs[1], f"{name} weights")
    if opts is not None and (opts.weightsFormat != 0 or opts.keepNumDims):
        r.fail(f"{name}: only the default weights format without keep_num_dims is supported")
    cout = y.shape[3]
    if w.ndim != 2 or w.shape != (cout, x.elements) or y.elements != cout:
        r.fail(f"{name}: weights {list(w.shape)} for {x.elements} inputs -> {cout} outputs")
    wide = w.astype(np.int64)
    bias = r.bias(op.inputs[2] if len(op.inputs) > 2 else -1, cout, name) - x.zero_point * wide.sum(axis=1)
    if len(s_w) == 1:   # per tensor: the float32 product, then double (TFLM's kernel_util)
        scale = np.full(cout, float(np.float32(x.scale) * np.float32(s_w[0])) / float(y.scale))
    elif len(s_w) == cout:
        scale = float(x.scale) * s_w / float(y.scale)
    else:
        r.fail(f"{name}: {len(s_w)} weight scales for {cout} outputs")
    lo, hi = _clamp(opts.fusedActivationFunction if opts else 0, y, r, name)
    return ir.Node(name, "fully_connected", (x.name,), y.name, None, np.ascontiguousarray(w),
                   _requant(scale, bias, np.abs(wide).sum(axis=1), y, lo, hi, r, name))


def _add(r: _Reader, name: str, op: Any, opts: Any) -> ir.Node:
    a = r.tensors[r.activation(op.inputs[0])]
    b = r.tensors[r.activation(op.inputs[1])]
    y = r.tensors[r.activation(op.outputs[0])]
    if not a.shape == b.shape == y.shape:
        r.fail(f"{name}: shapes {list(a.shape)} + {list(b.shape)} -> {list(y.shape)}: broadcasting is not supported")
    twice_max = 2 * max(float(a.scale), float(b.scale))
    m1, e1 = quantize_multiplier(float(a.scale) / twice_max)
    m2, e2 = quantize_multiplier(float(b.scale) / twice_max)
    mo, eo = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(y.scale)))
    if max(e1, e2, eo) > 0:
        r.fail(f"{name}: the output scale is too small for TFLM's int8 ADD")
    lo, hi = _clamp(opts.fusedActivationFunction if opts else 0, y, r, name)
    attrs = {"zp_a": a.zero_point, "zp_b": b.zero_point, "mult_a": m1, "shift_a": e1,
             "mult_b": m2, "shift_b": e2, "mult_out": mo, "shift_out": eo,
             "zp_out": y.zero_point, "lo": lo, "hi": hi}
    return ir.Node(name, "add", (a.name, b.name), y.name, attrs=attrs)


def _same_quant(x: ir.Tensor, y: ir.Tensor, r: _Reader, name: str) -> None:
    if (np.float32(x.scale), x.zero_point) != (np.float32(y.scale), y.zero_point):
        r.fail(f"{name}: input and output quantization differ ({x.scale:g}, {x.zero_point} against "
               f"{y.scale:g}, {y.zero_point}): not supported")


def _pool(r: _Reader, name: str, op: Any, opts: Any, kind: str) -> ir.Node:
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    _same_quant(x, y, r, name)
    if x.shape[3] != y.shape[3]:
        r.fail(f"{name}: {x.shape[3]} channels in, {y.shape[3]} out")
    win = _window(opts.padding, x.shape[1], x.shape[2], opts.filterHeight, opts.filterWidth,
                  opts.strideH, opts.strideW, y, r, name)
    lo, hi = _clamp(opts.fusedActivationFunction, y, r, name)
    return ir.Node(name, kind, (x.name,), y.name, win, attrs={"lo": lo, "hi": hi})


def _pad(r: _Reader, name: str, op: Any, opts: Any) -> ir.Node:
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    _same_quant(x, y, r, name)
    p = r.data(op.inputs[1], np.int32, f"{name} paddings") if r.raw(op.inputs[1]).type == INT32 else None
    if p is None or p.shape != (4, 2) or (p < 0).any() or (p[0] != 0).any() or (p[3] != 0).any():
        r.fail(f"{name}: only non-negative padding of H and W (int32 [4, 2]) is supported")
    (t, b), (left, right) = p[1], p[2]
    if (x.shape[1] + t + b, x.shape[2] + left + right, x.shape[3]) != y.shape[1:]:
        r.fail(f"{name}: padding {p.tolist()} does not give the output shape {list(y.shape)}")
    win = ir.Window(1, 1, 1, 1, int(t), int(b), int(left), int(right))
    return ir.Node(name, "pad", (x.name,), y.name, win, attrs={"value": y.zero_point})


def _reshape(r: _Reader, name: str, op: Any, opts: Any) -> ir.Node:
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    _same_quant(x, y, r, name)
    if x.elements != y.elements:
        r.fail(f"{name}: {x.elements} elements reshaped to {y.elements}")
    return ir.Node(name, "reshape", (x.name,), y.name)


def _mean(r: _Reader, name: str, op: Any, opts: Any) -> ir.Node:
    """MEAN over H and W: TFLM's integer path, the multiplier of s_x / s_y pre-divided by the
    count N: M' = (M << k) / N, e' = e - k with k = min(floor(log2 N), 32, 31 + e)."""
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    axes = r.data(op.inputs[1], np.int32, f"{name} axes") if r.raw(op.inputs[1]).type == INT32 else None
    if axes is None or sorted(int(a) % 4 for a in axes.reshape(-1)) != [1, 2]:
        r.fail(f"{name}: only MEAN over H and W (axes 1 and 2) is supported")
    if y.elements != x.shape[3]:
        r.fail(f"{name}: {x.shape[3]} channels in, {y.elements} values out")
    n = x.shape[1] * x.shape[2]
    m, e = quantize_multiplier(float(x.scale) / float(y.scale))
    shift = min(int(math.floor(math.log2(n))), 32, 31 + e)
    return ir.Node(name, "mean", (x.name,), y.name,
                   attrs={"zp_in": x.zero_point, "zp_out": y.zero_point,
                          "mult": (m << shift) // n, "shift": e - shift})


def _softmax(r: _Reader, name: str, op: Any, opts: Any) -> ir.Node:
    x = r.tensors[r.activation(op.inputs[0])]
    y = r.tensors[r.activation(op.outputs[0])]
    if (np.float32(y.scale), y.zero_point) != (np.float32(1 / 256), -128):
        r.fail(f"{name}: softmax output must have scale 1/256 and zero point -128 (TFLM's int8 softmax)")
    if x.shape != y.shape:
        r.fail(f"{name}: shape {list(x.shape)} -> {list(y.shape)}")
    m, shift, diff_min = softmax_params(float(opts.beta), float(x.scale))
    return ir.Node(name, "softmax", (x.name,), y.name,
                   attrs={"mult": m, "shift": shift, "diff_min": diff_min})


_CONVERT = {
    "CONV_2D": lambda r, n, op, o: _conv(r, n, op, o, False),
    "DEPTHWISE_CONV_2D": lambda r, n, op, o: _conv(r, n, op, o, True),
    "FULLY_CONNECTED": _fully_connected, "ADD": _add,
    "AVERAGE_POOL_2D": lambda r, n, op, o: _pool(r, n, op, o, "avg_pool"),
    "MAX_POOL_2D": lambda r, n, op, o: _pool(r, n, op, o, "max_pool"),
    "MEAN": _mean, "PAD": _pad, "RESHAPE": _reshape, "SOFTMAX": _softmax}
"""Each supported operator's converter: (reader, node name, operator, options) -> Node."""


def parse(data: bytes, where: str) -> ir.Graph:
    """A .tflite file's bytes -> the graph IR; anything unsupported or malformed is one
    QetoolError naming the file and, where there is one, the operator."""
    if not is_tflite(data):
        raise QetoolError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
    s = schema()
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:   # the generated reader raises anything on a damaged buffer
        raise QetoolError(f"{where}: malformed flatbuffer ({type(e).__name__}: {str(e)[:80]})") from None
    return _convert(_Reader(s, model, where))


def _edges(r: _Reader, ops: list[tuple[int, Any]]) -> tuple[int, int, bool, bool, list[tuple[int, Any]]]:
    """A float model's QUANTIZE at the input and DEQUANTIZE at the output run on the host (the C
    stays integer-only): the graph starts at the QUANTIZE's int8 output and ends at the
    DEQUANTIZE's int8 input. Returns input and output tensor indices, whether each edge is
    float, and the remaining operators."""
    g = r.g
    x, y = int(g.inputs[0]), int(g.outputs[0])
    float_in = float_out = False
    if ops and r.opname(ops[0][1]) == "QUANTIZE" and int(ops[0][1].inputs[0]) == x \
            and r.raw(x).type == FLOAT32:
        x, float_in, ops = int(ops[0][1].outputs[0]), True, ops[1:]
    if ops and r.opname(ops[-1][1]) == "DEQUANTIZE" and int(ops[-1][1].outputs[0]) == y \
            and r.raw(y).type == FLOAT32:
        y, float_out, ops = int(ops[-1][1].inputs[0]), True, ops[:-1]
    return x, y, float_in, float_out, ops


def _convert(r: _Reader) -> ir.Graph:
    g = r.g
    if g.inputs is None or g.outputs is None or len(g.inputs) != 1 or len(g.outputs) != 1:
        r.fail("the model needs exactly one input and one output")
    x, y, float_in, float_out, ops = _edges(r, list(enumerate(g.operators or [])))
    r.activation(x)
    nodes: list[ir.Node] = []
    written = {f"t{x}"}
    for k, op in ops:
        opname = r.opname(op)
        if opname in ("QUANTIZE", "DEQUANTIZE"):
            r.fail(f"operator {k} ({opname}) is supported only as the model's first (QUANTIZE of a "
                   "float input) or last (DEQUANTIZE to a float output) operator")
        if opname not in _CONVERT:
            r.fail(f"operator {k} ({opname}) is not supported; supported: {', '.join(SUPPORTED)}")
        want = MIN_INPUTS.get(opname, 1)
        if op.outputs is None or len(op.outputs) != 1 or op.inputs is None or len(op.inputs) < want:
            r.fail(f"operator {k} ({opname}): needs {want} input(s) and exactly one output")
        if opname in OPTIONS and type(op.builtinOptions).__name__ != OPTIONS[opname]:
            r.fail(f"operator {k} ({opname}): its options are missing or of another operator")
        node = _CONVERT[opname](r, f"{k}.{opname.lower()}", op, op.builtinOptions)
        for t in node.inputs:
            if t not in written:
                r.fail(f"operator {k} ({opname}) reads tensor {t[1:]} before any operator writes it")
        if node.output in written:
            r.fail(f"operator {k} ({opname}) writes tensor {node.output[1:]} a second time")
        written.add(node.output)
        nodes.append(node)
    if not nodes:
        r.fail("the model has no operators")
    if f"t{y}" not in written or y == x:
        r.fail("the model's output is not written by any operator")
    return ir.Graph(dict(r.tensors), tuple(nodes), f"t{x}", f"t{y}", float_in, float_out)

