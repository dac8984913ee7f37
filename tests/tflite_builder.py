"""Synthetic int8 TFLite models for the import tests, written with the flatbuffers object API
of the tflite-micro wheel: random weights, and every tensor's quantization calibrated from a
float forward pass over random inputs, so that almost all outputs lie strictly inside int8."""

from __future__ import annotations

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

OPS = s.BuiltinOperator
ACT = {"none": 0, "relu": 1, "relu6": 3}


class Builder:
    """Add tensors and operators in order; `finish()` gives the .tflite bytes. Values flow as
    float arrays (H, W, C) of a batch of random inputs so that each new tensor's scale and
    zero point follow its real range."""

    def __init__(self, shape: tuple[int, int, int], seed: int = 0, in_zp: int = 0, in_scale: float = 0.02):
        self.rng = np.random.default_rng(seed)
        self.tensors: list = []
        self.buffers = [s.BufferT()]
        self.ops: list = []
        self.codes: dict[int, int] = {}
        self.real: dict[int, np.ndarray] = {}
        self.q: dict[int, tuple[float, int]] = {}
        x = (self.rng.integers(-128, 128, size=(16, *shape)) - in_zp) * in_scale
        self.input = self._tensor(shape, in_scale, in_zp, "input")
        self.real[self.input] = x

    def _tensor(self, shape, scale, zp, name, ttype=9, data=None, axis=0) -> int:
        t = s.TensorT()
        t.shape = np.array([1, *shape] if len(shape) in (1, 3) else shape, dtype=np.int32)
        if len(shape) == 1:
            t.shape = np.array([1, shape[0]], dtype=np.int32)
        t.type = ttype
        t.name = name.encode()
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
            t.shape = np.array(data.shape, dtype=np.int32)
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = list(np.atleast_1d(scale).astype(np.float32))
            q.zeroPoint = list(np.atleast_1d(zp).astype(np.int64))
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        self.q[len(self.tensors) - 1] = (scale, zp)
        return len(self.tensors) - 1

    def _out(self, real: np.ndarray, name: str, act: str = "none") -> int:
        """A new activation tensor calibrated on `real` (after the activation)."""
        lo, hi = float(real.min()), float(real.max())
        lo, hi = min(lo, 0.0), max(hi, 1e-3)
        scale = (hi - lo) / 200.0
        zp = int(np.clip(round(-128 + 27 - lo / scale), -128, 127))
        idx = self._tensor(real.shape[1:], scale, zp, name)
        self.real[idx] = self._fake(real, scale, zp)
        return idx

    @staticmethod
    def _fake(real, scale, zp):
        return (np.clip(np.round(real / scale) + zp, -128, 127) - zp) * scale

    def _op(self, code: int, ins: list[int], out: int, opt_type: int, opts) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        op = s.OperatorT()
        op.opcodeIndex = self.codes[code]
        op.inputs = np.array(ins, dtype=np.int32)
        op.outputs = np.array([out], dtype=np.int32)
        op.builtinOptionsType = opt_type
        op.builtinOptions = opts
        self.ops.append(op)

    @staticmethod
    def _act(v, act):
        return np.maximum(v, 0) if act == "relu" else np.clip(v, 0, 6) if act == "relu6" else v

    def _weights(self, shape, per_channel_axis: int | None, dead: bool = False):
        w = self.rng.integers(-127, 128, size=shape).astype(np.int8)
        n = shape[per_channel_axis] if per_channel_axis is not None else 1
        ws = self.rng.uniform(0.5, 1.5, size=n) * 0.01
        if dead:
            ws[0] = 1e-12
        return w, ws

    def conv(self, x: int, cout: int, k: tuple[int, int], stride: tuple[int, int] = (1, 1),
             padding: str = "same", act: str = "none", depthwise: int = 0, dead: bool = False) -> int:
        """CONV_2D, or DEPTHWISE_CONV_2D with depth multiplier `depthwise`."""
        xr = self.real[x]
        _, h, w, cin = xr.shape
        kh, kw = k
        if depthwise:
            cout = cin * depthwise
            wq, ws = self._weights((1, kh, kw, cout), 3, dead)
        else:
            wq, ws = self._weights((cout, kh, kw, cin), 0, dead)
        s_x = self.q[x][0]
        bias = self.rng.integers(-2000, 2000, size=cout).astype(np.int32)
        wr = wq.astype(np.float64) * (ws[None, None, None, :] if depthwise else ws[:, None, None, None])
        ph, pw = _pads(padding, h, w, kh, kw, *stride)
        xp = np.pad(xr, ((0, 0), (ph[0], ph[1]), (pw[0], pw[1]), (0, 0)))
        ho = (xp.shape[1] - kh) // stride[0] + 1
        wo = (xp.shape[2] - kw) // stride[1] + 1
        out = np.zeros((xr.shape[0], ho, wo, cout))
        for dy in range(kh):
            for dx in range(kw):
                patch = xp[:, dy:dy + stride[0] * (ho - 1) + 1:stride[0], dx:dx + stride[1] * (wo - 1) + 1:stride[1]]
                if depthwise:
                    out += np.repeat(patch, depthwise, axis=3) * wr[0, dy, dx]
                else:
                    out += patch @ wr[:, dy, dx, :].T
        out += bias * s_x * ws
        wt = self._tensor(wq.shape, ws, np.zeros(len(ws), np.int64), "w", 9, wq, axis=3 if depthwise else 0)
        bt = self._tensor((cout,), s_x * ws, np.zeros(cout, np.int64), "b", 2, bias)
        y = self._out(self._act(out, act), "conv")
        if depthwise:
            o = s.DepthwiseConv2DOptionsT()
            o.depthMultiplier = depthwise
            code, ot = OPS.DEPTHWISE_CONV_2D, s.BuiltinOptions.DepthwiseConv2DOptions
        else:
            o = s.Conv2DOptionsT()
            code, ot = OPS.CONV_2D, s.BuiltinOptions.Conv2DOptions
        o.padding = 0 if padding == "same" else 1
        o.strideH, o.strideW = stride
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = ACT[act]
        self._op(code, [x, wt, bt], y, ot, o)
        return y

    def fully_connected(self, x: int, cout: int, per_channel: bool = False, act: str = "none",
                        weight_scale: float = 1.0) -> int:
        """FULLY_CONNECTED; `weight_scale` < 1 narrows the outputs (logits for a softmax)."""
        xr = self.real[x].reshape(self.real[x].shape[0], -1)
        wq, ws = self._weights((cout, xr.shape[1]), 0 if per_channel else None)
        ws = ws * weight_scale
        s_x = self.q[x][0]
        bias = self.rng.integers(-2000, 2000, size=cout).astype(np.int32)
        out = xr @ (wq * (ws[:, None] if per_channel else ws[0])).T + bias * s_x * (ws if per_channel else ws[0])
        wt = self._tensor(wq.shape, ws, np.zeros(len(ws), np.int64), "w", 9, wq)
        bt = self._tensor((cout,), s_x * ws, np.zeros(len(ws), np.int64), "b", 2, bias)
        y = self._out(self._act(out, act), "fc")
        o = s.FullyConnectedOptionsT()
        o.fusedActivationFunction = ACT[act]
        self._op(OPS.FULLY_CONNECTED, [x, wt, bt], y, s.BuiltinOptions.FullyConnectedOptions, o)
        return y

    def add(self, a: int, b: int, act: str = "none") -> int:
        y = self._out(self._act(self.real[a] + self.real[b], act), "add")
        o = s.AddOptionsT()
        o.fusedActivationFunction = ACT[act]
        self._op(OPS.ADD, [a, b], y, s.BuiltinOptions.AddOptions, o)
        return y

    def pool(self, x: int, k: tuple[int, int], stride: tuple[int, int], padding: str = "valid",
             kind: str = "avg") -> int:
        xr = self.real[x]
        _, h, w, c = xr.shape
        (pt, pb), (pl, pr) = _pads(padding, h, w, *k, *stride)
        ho = (h + pt + pb - k[0]) // stride[0] + 1
        wo = (w + pl + pr - k[1]) // stride[1] + 1
        out = np.zeros((xr.shape[0], ho, wo, c))
        for oy in range(ho):
            for ox in range(wo):
                y0, x0 = oy * stride[0] - pt, ox * stride[1] - pl
                win = xr[:, max(0, y0):y0 + k[0], max(0, x0):x0 + k[1]]
                out[:, oy, ox] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
        scale, zp = self.q[x]
        y = self._tensor(out.shape[1:], scale, zp, kind)
        self.real[y] = out
        o = s.Pool2DOptionsT()
        o.padding = 0 if padding == "same" else 1
        o.strideH, o.strideW = stride
        o.filterHeight, o.filterWidth = k
        self._op(OPS.AVERAGE_POOL_2D if kind == "avg" else OPS.MAX_POOL_2D, [x], y,
                 s.BuiltinOptions.Pool2DOptions, o)
        return y

    def pad(self, x: int, top: int, bottom: int, left: int, right: int) -> int:
        xr = self.real[x]
        p = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
        pt = self._tensor((4, 2), None, None, "paddings", 2, p)
        scale, zp = self.q[x]
        out = np.pad(xr, ((0, 0), (top, bottom), (left, right), (0, 0)))
        y = self._tensor(out.shape[1:], scale, zp, "pad")
        self.real[y] = out
        self._op(OPS.PAD, [x, pt], y, s.BuiltinOptions.PadOptions, s.PadOptionsT())
        return y

    def reshape(self, x: int) -> int:
        xr = self.real[x]
        flat = xr.reshape(xr.shape[0], -1)
        scale, zp = self.q[x]
        y = self._tensor((flat.shape[1],), scale, zp, "reshape")
        self.real[y] = flat
        o = s.ReshapeOptionsT()
        o.newShape = np.array([1, flat.shape[1]], dtype=np.int32)
        self._op(OPS.RESHAPE, [x], y, s.BuiltinOptions.ReshapeOptions, o)
        return y

    def mean(self, x: int, keep_dims: bool = True) -> int:
        """MEAN over H and W, requantized to a new scale."""
        xr = self.real[x]
        axis = self._tensor((2,), None, None, "axis", 2, np.array([1, 2], dtype=np.int32))
        out = xr.mean(axis=(1, 2), keepdims=True)
        y = self._out(out if keep_dims else out.reshape(out.shape[0], -1), "mean")
        o = s.ReducerOptionsT()
        o.keepDims = keep_dims
        self._op(OPS.MEAN, [x, axis], y, s.BuiltinOptions.ReducerOptions, o)
        return y

    def softmax(self, x: int) -> int:
        xr = self.real[x]
        y = self._tensor(xr.shape[1:], 1 / 256, -128, "softmax")
        e = np.exp(xr - xr.max(axis=-1, keepdims=True))
        self.real[y] = e / e.sum(axis=-1, keepdims=True)
        o = s.SoftmaxOptionsT()
        o.beta = 1.0
        self._op(OPS.SOFTMAX, [x], y, s.BuiltinOptions.SoftmaxOptions, o)
        return y

    def float_edges(self, output: int) -> int:
        """Make the model float at both ends: a float32 input QUANTIZEd to the current int8
        input, and a DEQUANTIZE of `output` to float32 (the new output)."""
        i8 = self.input
        shape = self.tensors[i8].shape
        f_in = self._tensor(tuple(shape[1:]), None, None, "float_input", 0)
        self.input = f_in
        self._op(OPS.QUANTIZE, [f_in], i8, 0, None)
        self.ops.insert(0, self.ops.pop())
        f_out = self._tensor(tuple(self.tensors[output].shape[1:]), None, None, "float_output", 0)
        self._op(OPS.DEQUANTIZE, [output], f_out, 0, None)
        return f_out

    def finish(self, output: int) -> bytes:
        m = s.ModelT()
        m.version = 3
        m.operatorCodes = []
        for code in sorted(self.codes, key=self.codes.get):
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            m.operatorCodes.append(oc)
        g = s.SubGraphT()
        g.tensors = self.tensors
        g.operators = self.ops
        g.inputs = np.array([self.input], dtype=np.int32)
        g.outputs = np.array([output], dtype=np.int32)
        m.subgraphs = [g]
        m.buffers = self.buffers
        m.description = b"qetool test model"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _pads(padding: str, h: int, w: int, kh: int, kw: int, sh: int, sw: int):
    if padding == "valid":
        return (0, 0), (0, 0)
    ho, wo = -(-h // sh), -(-w // sw)
    ph = max((ho - 1) * sh + kh - h, 0)
    pw = max((wo - 1) * sw + kw - w, 0)
    return (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)
