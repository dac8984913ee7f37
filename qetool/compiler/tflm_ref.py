"""TensorFlow Lite Micro's own interpreter (the tflite-micro wheel) as the reference of an
imported model: every node's output for one input, to compare node by node."""

from __future__ import annotations

import numpy as np

from qetool.compiler import ir
from qetool.compiler.tflm_math import dequantize
from qetool.errors import QetoolError


def available() -> bool:
    try:
        import tflite_micro.python.tflite_micro.runtime  # noqa: F401
    except ImportError:
        return False
    return True


class TflmReference:
    """One TFLM interpreter over the model's bytes, keeping every tensor (kPreserveAllTensors)."""

    def __init__(self, data: bytes):
        from tflite_micro.python.tflite_micro import runtime

        try:
            self.itp = runtime.Interpreter.from_bytes(
                data, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
        except Exception as e:   # TFLM reports a model it cannot run as a RuntimeError
            raise QetoolError(f"TFLM's interpreter refuses the model: {e}") from None

    def run(self, g: ir.Graph, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Every node's output codes (by node name, shaped as the IR tensor) for input `codes`."""
        detail = self.itp.get_input_details(0)
        x = np.asarray(codes).reshape(detail["shape"])
        if g.float_input:   # values that TFLM's QUANTIZE maps back to exactly these codes
            t = g.input_tensor()
            x = dequantize(x, t.scale, t.zero_point)
        self.itp.set_input(x.astype(np.float32 if g.float_input else np.int8), 0)
        self.itp.invoke()
        return {n.name: np.asarray(self.itp.GetTensor(int(n.output[1:]), 0)["tensor_data"])
                .astype(np.int32).reshape(g.tensors[n.output].hwc) for n in g.nodes}


def first_difference(g: ir.Graph, ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> str | None:
    """The first node whose output differs, in words; None when all agree."""
    for n in g.nodes:
        a, b = ours[n.name], ref[n.name]
        if not np.array_equal(a, b):
            d = np.abs(a.astype(np.int64) - b)
            return (f"node {n.name}: {int((d > 0).sum()):,} of {d.size:,} outputs differ, by up to "
                    f"{int(d.max())}")
    return None
