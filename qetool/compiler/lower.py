"""Lowering (docs/arithmetic.md): a weights file -> the integer model every kernel runs.

round(x) is floor(x + 1/2) everywhere; in integers round_shift(v, n) = (v + 2^(n-1)) >> n with
an arithmetic shift (v itself for n = 0).

A conv output channel c, with input step s_x, weight step s_w[c] and BatchNorm folded, computes
    real z = A[c] * acc + B[c],  A = gamma * s_x * s_w / sqrt(var + eps),  B = beta - gamma * mean / sqrt(var + eps)
and its output code y = clamp(round(z / s_y)) becomes, in int64,
    y = clamp(round_shift((acc + bias[c]) * M[c], n[c]))          M / 2^n = A / s_y, bias = round(B / s_y * 2^n / M)
    y = clamp(round_shift((acc + bias[c]) * M[c] + x * Mx[c], n[c]))   with a residual, Mx = round(s_x' / s_y * 2^n)
This is within one step of round(z / s_y) while |A / s_y| <= 1 (one accumulator unit is at most
one output step, as in any layer that sums more than a few products): bias is rounded in
accumulator units (from the rounded M, so M's own rounding only scales acc).
M is a signed int32 (gamma may be negative) with |M| in [2^30, 2^31) where the int64 bound allows,
n in 0..62. A channel whose scale cannot be represented (A = 0, n beyond 62, bias beyond int32)
is a constant channel: M = 0, and the kernel takes v = bias instead of (acc + bias) * M, bias
holding round(B / s_y * 2^n) computed here in float64.

The head sums the last block's codes over H*W (int32) and applies the same requantization with
A[k] = s_last * s_wfc[k] / (H * W), B[k] = b[k], s_y = s_logit: int8 logits, argmax class.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from qetool import arch as A
from qetool import fileio
from qetool.checkpoint import Checkpoint, expected_shapes
from qetool.errors import QetoolError
from qetool.preprocess import image_step

INT32_MAX = 2**31 - 1
"""Also the bound on every accumulator: the C kernels sum products in int32."""
INT64_BOUND = 2**62
"""Every requantization sum stays below this in magnitude (a margin under int64's 2^63)."""
LOWERED_FORMAT = "qetool-lowered/1"


def round_half_up(x: float) -> int:
    """round(x) = floor(x + 1/2) (docs/arithmetic.md)."""
    return math.floor(x + 0.5)


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """Codes of an activation: [-2^(b-1), 2^(b-1) - 1] signed, [0, 2^b - 1] unsigned."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@dataclass(frozen=True)
class ChannelFold:
    """Integer requantization of one output channel."""

    bias: int
    m: int
    n: int
    mx: int


def _scale_to_mn(scale: float, n_max: int = 62) -> tuple[int, int] | None:
    """M, n with M / 2^n = scale, |M| < 2^31 and as large as possible; None if n > n_max."""
    if scale == 0.0 or not math.isfinite(scale):
        return None
    n = 30 - math.floor(math.log2(abs(scale)))
    n = min(n, n_max)
    if n < 0:
        return None
    m = round_half_up(scale * 2.0**n)
    if abs(m) > INT32_MAX:
        n -= 1
        m = round_half_up(scale * 2.0**n)
    return (m, n) if 0 <= n and m != 0 else None


def fold_channel(a: float, b: float, s_y: float, acc_bound: int, s_res: float | None = None,
                 res_bound: int = 0, bias_b_over_a: bool = False) -> ChannelFold:
    """Requantization of real z = a * acc + b (+ residual codes * s_res) to steps s_y.
    `acc_bound` and `res_bound` bound |acc| and |residual code|; the int64 sum stays below 2^62.
    bias = round(b / a) with `bias_b_over_a` (the head's formula, docs/arithmetic.md), else
    round(b / s_y * 2^n / M)."""
    mx_scale = s_res / s_y if s_res is not None else 0.0
    n_cap = 62 if mx_scale == 0.0 else min(62, 30 - math.floor(math.log2(mx_scale)))
    mn = _scale_to_mn(a / s_y, n_cap) if n_cap >= 0 else None
    if mn is not None:
        m, n = mn
        while m != 0:
            bias = round_half_up(b / a if bias_b_over_a else b / s_y * 2.0**n / m)
            if abs(bias) > INT32_MAX:
                break
            mx = round_half_up(mx_scale * 2.0**n)
            if (abs(mx) <= INT32_MAX and (acc_bound + abs(bias)) * abs(m) + res_bound * abs(mx)
                    + (1 << n) < INT64_BOUND):
                return ChannelFold(bias, m, n, mx)
            if n == 0:
                break
            n -= 1
            m = round_half_up(a / s_y * 2.0**n)
    # constant channel: v = bias (+ x * Mx), computed in float64
    value = b / s_y
    n = 0
    if s_res is not None:
        n = min(62, max(0, 30 - math.floor(math.log2(mx_scale))))
    if value != 0.0:
        n = min(n, max(0, 30 - math.floor(math.log2(abs(value)))))
    bias = max(-INT32_MAX, min(INT32_MAX, round_half_up(value * 2.0**n)))
    return ChannelFold(bias, 0, n, round_half_up(mx_scale * 2.0**n))


@dataclass(frozen=True, eq=False)
class LoweredLayer(A.Layer):
    """One layer of the integer graph: the arch's layer plus its integer model. Weights OIHW
    int8 codes ([K, C] for the head); per-channel bias/m/mx int32 and n int8; input, output and
    residual codes' bits and signedness; output codes clamped to [lo, hi]."""

    signed_x: bool
    bits_y: int
    signed_y: bool
    lo: int
    hi: int
    bits_r: int
    signed_r: bool
    weights: np.ndarray
    bias: np.ndarray
    m: np.ndarray
    n: np.ndarray
    mx: np.ndarray | None


@dataclass
class LoweredModel:
    """The integer model: the arch, its hash (arch and weights), the layers in order, the
    image bits and the logit step."""

    arch: A.Arch
    model_hash: str
    layers: list[LoweredLayer]
    input_bits: int
    logit_step: float

    def to_bytes(self) -> bytes:
        """lowered.npz content: per-layer arrays and a JSON `meta` entry."""
        arrays: dict[str, np.ndarray] = {}
        meta = []
        for layer in self.layers:
            d = {f.name: getattr(layer, f.name) for f in fields(layer)
                 if f.name not in ("weights", "bias", "m", "n", "mx")}
            meta.append(d)
            for f in ("weights", "bias", "m", "n", "mx"):
                if getattr(layer, f) is not None:
                    arrays[f"{layer.id}.{f}"] = getattr(layer, f)
        arrays["meta"] = np.array(json.dumps({
            "format": LOWERED_FORMAT, "arch": A.to_dict(self.arch), "model_hash": self.model_hash,
            "input_bits": self.input_bits, "logit_step": self.logit_step, "layers": meta}))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @staticmethod
    def load(path: str | Path) -> "LoweredModel":
        """Read lowered.npz back. Every layer's fields must be those its arch gives, every array
        of its dtype and shape, and the stored model hash that of the content: a damaged or
        edited file is a user error, never a model that runs wrong."""
        where = Path(path)
        d = fileio.read_npz(where, "lowered model")
        meta = d.get("meta")
        if meta is None or meta.shape != () or meta.dtype.kind != "U":
            raise QetoolError(f"{where}: not a {LOWERED_FORMAT} file (no meta entry)")
        doc = fileio.parse_json(str(meta), f"{where}: meta")
        if not isinstance(doc, dict) or doc.get("format") != LOWERED_FORMAT:
            raise QetoolError(f"{where}: not a {LOWERED_FORMAT} file")
        try:
            arch = A.from_dict(doc.get("arch"))
        except A.ArchError as e:
            raise QetoolError(f"{where}: its arch is not valid: {e}") from None
        metas = doc.get("layers")
        want_layers = layer_codes(arch)
        if not isinstance(metas, list) or len(metas) != len(want_layers):
            raise QetoolError(f"{where}: layers: not the {len(want_layers)} layers of its arch")
        shapes = expected_shapes(arch)
        layers = [_load_layer(m, want, shapes[want["id"]], d, where) for m, want in zip(metas, want_layers)]
        input_bits, step = doc.get("input_bits"), doc.get("logit_step")
        if input_bits != A.tensors(arch)["image"].bits:
            raise QetoolError(f"{where}: input_bits: {input_bits!r} is not the arch's image bits")
        if not isinstance(step, float) or not math.isfinite(step) or step <= 0:
            raise QetoolError(f"{where}: logit_step: {step!r} is not a positive number")
        model_hash = _model_hash(arch, layers)
        if doc.get("model_hash") != model_hash:
            raise QetoolError(f"{where}: damaged or edited: its content does not give its model hash")
        return LoweredModel(arch, model_hash, layers, input_bits, step)


_ARRAY_TYPES = {"weights": np.int8, "bias": np.int32, "m": np.int32, "n": np.int8, "mx": np.int32}
"""The integer arrays of a lowered layer and their types."""


def layer_codes(arch: A.Arch) -> list[dict]:
    """Per layer, the fields of a LoweredLayer that the arch fixes: the A.Layer fields and its
    tensors' bits and signedness."""
    ts = A.tensors(arch)
    out = []
    for layer in A.layers(arch):
        tx, ty = ts[layer.input], ts[layer.id]
        tr = ts[layer.residual] if layer.residual else None
        out.append({**{f.name: getattr(layer, f.name) for f in fields(A.Layer)},
                    "signed_x": tx.signed, "bits_y": ty.bits, "signed_y": ty.signed,
                    "bits_r": tr.bits if tr else 0, "signed_r": tr.signed if tr else False})
    return out


def _load_layer(meta: object, want: dict, weight_shape: tuple[int, ...], d: dict[str, np.ndarray],
                where: Path) -> LoweredLayer:
    """One layer of lowered.npz, checked against the fields its arch gives (`want`) and the
    weights' shape."""
    lid = want["id"]
    if not isinstance(meta, dict) or set(meta) != {*want, "lo", "hi"}:
        raise QetoolError(f"{where}: {lid}: not a lowered layer")
    if json.dumps({k: meta[k] for k in want}) != json.dumps(want):  # exact, bools apart from ints
        raise QetoolError(f"{where}: {lid}: its fields contradict its arch")
    lo, hi = meta["lo"], meta["hi"]
    qlo, qhi = code_range(want["bits_y"], want["signed_y"])
    if not (isinstance(lo, int) and isinstance(hi, int) and qlo <= lo <= hi <= qhi):
        raise QetoolError(f"{where}: {lid}: output clamp {lo!r}..{hi!r} is outside {qlo}..{qhi}")
    channel = (want["cout"],)
    shapes = {"weights": weight_shape, "bias": channel, "m": channel, "n": channel, "mx": channel}
    arrays = {}
    for f, dtype in _ARRAY_TYPES.items():
        key = f"{lid}.{f}"
        needed = f != "mx" or want["residual"] is not None
        if key not in d:
            if needed:
                raise QetoolError(f"{where}: {key}: missing")
            arrays[f] = None
            continue
        v = d[key]
        if not needed or v.dtype != dtype or v.shape != shapes[f]:
            raise QetoolError(f"{where}: {key}: {v.dtype}{list(v.shape)} is not what layer {lid} holds")
        arrays[f] = v
    if not ((arrays["n"] >= 0) & (arrays["n"] <= 62)).all():
        raise QetoolError(f"{where}: {lid}.n: shifts outside 0..62")
    wlo, whi = code_range(want["bits_w"], True)
    w = arrays["weights"]
    if w.size and (w.min() < wlo or w.max() > whi):
        raise QetoolError(f"{where}: {lid}.weights: codes outside {want['bits_w']}-bit {wlo}..{whi}")
    return LoweredLayer(**{**want, "pad": tuple(want["pad"])}, lo=lo, hi=hi, **arrays)


def _acc_bound(w: np.ndarray, bits_x: int) -> np.ndarray:
    """Per output channel: sum |w| * max |x code| bounds |acc|."""
    return np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1) * (1 << bits_x)


def _fold_layer(a: np.ndarray, b: np.ndarray, s_y: float, bound: np.ndarray, s_res: float | None,
                res_bound: int, head: bool) -> tuple[np.ndarray, ...]:
    folds = [fold_channel(float(ac), float(bc), s_y, int(bd), s_res, res_bound, head)
             for ac, bc, bd in zip(a, b, bound)]
    return (np.array([f.bias for f in folds], np.int32), np.array([f.m for f in folds], np.int32),
            np.array([f.n for f in folds], np.int8), np.array([f.mx for f in folds], np.int32))


def tensor_step(ck: Checkpoint, name: str, bits: int) -> float:
    """A tensor's step: the image's is fixed (preprocess.image_step), others come from the file."""
    return image_step(bits) if name == "image" else ck.steps[name]


def lower(ck: Checkpoint) -> LoweredModel:
    """Fold BatchNorm and the quantizers of `ck` into the integer model."""
    arch = ck.arch
    ts = A.tensors(arch)
    out = []
    for layer, codes in zip(A.layers(arch), layer_codes(arch)):
        tx, ty = ts[layer.input], ts[layer.id]
        s_x = tensor_step(ck, layer.input, tx.bits)
        s_y = ck.steps[layer.id]
        if layer.op == "head":
            hw = layer.h_in * layer.w_in
            w = ck.head.w.astype(np.int8)
            a = s_x * ck.head.w_step.astype(np.float64) / hw
            b = ck.head.bias.astype(np.float64)
            bound = _acc_bound(w, tx.bits) * hw
            lo, hi = code_range(8, True)
        else:
            c = ck.convs[layer.id]
            w = c.w.astype(np.int8)
            inv = c.bn_gamma.astype(np.float64) / np.sqrt(c.bn_var.astype(np.float64) + c.bn_eps)
            a = inv * s_x * c.w_step.astype(np.float64)
            b = c.bn_beta.astype(np.float64) - inv * c.bn_mean.astype(np.float64)
            bound = _acc_bound(w, tx.bits)
            lo, hi = (0, ck.clamps[layer.id]) if layer.relu6 else code_range(ty.bits, True)
        if bound.max() > INT32_MAX:
            raise QetoolError(f"{layer.id}: its sums of products can reach {int(bound.max()):,}, "
                              f"beyond the kernels' int32 accumulators (a narrower layer or a "
                              f"smaller feature map fixes it)")
        tr = ts[layer.residual] if layer.residual else None
        s_r = tensor_step(ck, layer.residual, tr.bits) if tr else None
        bias, m, n, mx = _fold_layer(a, b, s_y, bound, s_r, (1 << tr.bits) if tr else 0,
                                     layer.op == "head")
        out.append(LoweredLayer(**codes, lo=lo, hi=hi, weights=w, bias=bias, m=m, n=n,
                                mx=mx if tr else None))
    return LoweredModel(arch, _model_hash(arch, out), out, ts["image"].bits, ck.steps["head"])


def _model_hash(arch: A.Arch, layers: list[LoweredLayer]) -> str:
    """16 hex digits over the arch text and every integer the kernels use."""
    h = hashlib.sha256(A.dumps(arch).encode())
    for layer in layers:
        h.update(json.dumps([layer.id, layer.lo, layer.hi]).encode())
        for arr in (layer.weights, layer.bias, layer.m, layer.n, layer.mx):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]
