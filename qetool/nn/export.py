"""`qetool export`: the weights file as an ONNX graph (opset 21) that runtimes load.

Input `image_codes` (uint8, N x C x H x W): the image's integer codes (pixel >> (8 - bits)),
dequantized exactly by DequantizeLinear (a QuantizeLinear would round exact ties of the image
half to even). Each convolution reads DequantizeLinear(int8 codes, per-channel steps), then
BatchNormalization, then ReLU6 as Clip(0, 6) or the residual Add. Each activation tensor goes
through a QuantizeLinear/DequantizeLinear pair with its step (uint8 codes after ReLU6, int8
otherwise), preceded for widths below 8 by a Clip to its real range; the bit width is in the
nodes' metadata (`qetool.bits`). The head: GlobalAveragePool, Gemm on dequantized 8-bit weights,
int8 logits. Outputs: `logits` (real) and `logit_codes` (int8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qetool import arch as A
from qetool import checkpoint, fileio
from qetool.compiler.lower import code_range
from qetool.errors import QetoolError
from qetool.preprocess import image_step

OPSET = 21


def build_graph(ck: checkpoint.Checkpoint):
    """The onnx ModelProto of a weights file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    arch = ck.arch
    ts = A.tensors(arch)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, bits: int | None = None, **attrs) -> str:
        n = helper.make_node(op, inputs, [output], name=output, **attrs)
        if bits is not None:
            n.doc_string = f"{bits}-bit"
            entry = n.metadata_props.add()
            entry.key, entry.value = "qetool.bits", str(bits)
        nodes.append(n)
        return output

    def qdq(x: str, name: str, step: float, bits: int, signed: bool) -> str:
        lo, hi = code_range(bits, signed)
        dtype = np.int8 if signed else np.uint8
        if bits < 8:
            x = node("Clip", [x, const(f"{name}.lo", np.float32(lo * step)),
                              const(f"{name}.hi", np.float32(hi * step))], f"{name}.clip", bits)
        scale, zero = const(f"{name}.step", np.float32(step)), const(f"{name}.zero", dtype(0))
        q = node("QuantizeLinear", [x, scale, zero], f"{name}.q", bits)
        return node("DequantizeLinear", [q, scale, zero], f"{name}.dq", bits)

    bits = ts["image"].bits
    t = {"image": node("DequantizeLinear", ["image_codes", const("image.step", np.float32(image_step(bits))),
                                            const("image.zero", np.uint8(0))], "image.dq", bits)}
    for layer in A.layers(arch):
        lid = layer.id
        out = ts[lid]
        if layer.op == "head":
            pooled = node("Flatten", [node("GlobalAveragePool", [t[layer.input]], "head.pool")], "head.flat")
            w = node("DequantizeLinear", [const("head.w", ck.head.w), const("head.w_step", ck.head.w_step),
                                          const("head.w_zero", np.zeros(layer.cout, np.int8))],
                     "head.wdq", 8, axis=0)
            y = node("Gemm", [pooled, w, const("head.bias", ck.head.bias)], "head.gemm", transB=1)
            scale, zero = const("head.step", np.float32(ck.steps["head"])), const("head.zero", np.int8(0))
            codes = node("QuantizeLinear", [y, scale, zero], "logit_codes", 8)
            node("DequantizeLinear", [codes, scale, zero], "logits", 8)
            break
        c = ck.convs[lid]
        w = node("DequantizeLinear", [const(f"{lid}.w", c.w), const(f"{lid}.w_step", c.w_step),
                                      const(f"{lid}.w_zero", np.zeros(layer.cout, np.int8))],
                 f"{lid}.wdq", layer.bits_w, axis=0)
        tp, bp, lp, rp = layer.pad
        y = node("Conv", [t[layer.input], w], f"{lid}.conv", kernel_shape=[layer.kernel] * 2,
                 strides=[layer.stride] * 2, pads=[tp, lp, bp, rp],
                 group=layer.cin if layer.depthwise else 1)
        y = node("BatchNormalization", [y, const(f"{lid}.gamma", c.bn_gamma), const(f"{lid}.beta", c.bn_beta),
                                        const(f"{lid}.mean", c.bn_mean), const(f"{lid}.var", c.bn_var)],
                 f"{lid}.bn", epsilon=c.bn_eps)
        if layer.relu6:
            y = node("Clip", [y, const(f"{lid}.zero6", np.float32(0)), const(f"{lid}.six", np.float32(6))],
                     f"{lid}.relu6")
        elif layer.residual:
            y = node("Add", [y, t[layer.residual]], f"{lid}.add")
        t[lid] = qdq(y, lid, ck.steps[lid], out.bits, out.signed)
    res = arch.resolution
    graph = helper.make_graph(
        nodes, "qetool", [helper.make_tensor_value_info("image_codes", TensorProto.UINT8,
                                                        ["N", arch.in_channels, res, res])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", arch.num_classes]),
         helper.make_tensor_value_info("logit_codes", TensorProto.INT8, ["N", arch.num_classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="qetool")
    model.ir_version = 10
    helper.set_model_props(model, {"qetool.arch_hash": A.arch_hash(arch), "qetool.arch": A.dumps(arch)})
    onnx.checker.check_model(model)
    return model


def export(weights: str | Path, out: str | Path) -> Path:
    """Write the ONNX graph of a weights file atomically."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise QetoolError("exporting needs onnx: pip install -e '.[train]'") from None
    model = build_graph(checkpoint.load(weights))
    fileio.write_bytes(out, model.SerializeToString())
    return Path(out)
