"""Fuzzing the loaders in-process (tests/test_fuzz.py, bench/fuzz.py): valid inputs (an arch.json,
its weights file, a build's lowered model and manifest, pictures, a board file) are mutated
(bit flips, truncation, inserted bytes, values of other types, huge and negative numbers,
missing and extra keys, arrays of other dtypes and shapes) and fed to the loaders themselves.
Every outcome must be a value or one QetoolError; any other exception is a bug to fix in the
loader (none of them catches Exception to hide one)."""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from qetool import arch as A
from qetool import checkpoint
from qetool.compiler.calibrate import random_checkpoint
from qetool.compiler.compile import compile_model
from qetool.compiler.lower import LoweredModel
from qetool.device.boards import load_board, parse_board
from qetool.device.builddir import BuildDir
from qetool.errors import QetoolError
from qetool.paths import BOARDS
from qetool.preprocess import read_image

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([0, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(-3, 300), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON document (keys and list indexes)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def mutate_json(data: st.DataObject, doc: Any) -> str:
    """A JSON document with one to three of its values replaced, deleted or added, as text."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        if not path:
            doc = data.draw(ODD_VALUES)
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6))] = data.draw(ODD_VALUES)
        else:
            parent[path[-1]] = data.draw(ODD_VALUES)
        if not isinstance(doc, (dict, list)):
            break
    return json.dumps(doc, allow_nan=True)


def mutate_bytes(data: st.DataObject, blob: bytes) -> bytes:
    """Bit flips, a truncation or inserted bytes (one to four of them)."""
    b = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        at = data.draw(st.integers(0, max(0, len(b) - 1)))
        if kind == "flip" and b:
            b[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            del b[at:]
        elif kind == "insert":
            b[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif b:
            b[at:at + 4] = data.draw(st.binary(min_size=4, max_size=4))
    return bytes(b)


def mutate_arrays(data: st.DataObject, arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz whose entries were changed: dtype, shape, values (nan, inf, huge), or removed or
    added; its bytes."""
    arrays = dict(arrays)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(arrays)))
        action = data.draw(st.sampled_from(["dtype", "shape", "values", "delete", "add", "text"]))
        v = arrays[key]
        if action == "dtype":
            dtype = data.draw(st.sampled_from([np.int8, np.int32, np.float32, np.float64, np.uint8, np.bool_]))
            with np.errstate(invalid="ignore"):  # nan to int: any value will do
                arrays[key] = v.astype(dtype) if v.dtype.kind != "U" else np.zeros(v.shape, dtype)
        elif action == "shape":
            arrays[key] = v.reshape(-1)[: data.draw(st.integers(0, max(0, v.size)))] if v.size else np.zeros(3)
        elif action == "values" and v.size and v.dtype.kind in "iuf":
            w = v.copy().reshape(-1)
            big = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1, 0, 127, -128, 2**31 - 1]))
            if w.dtype.kind == "f" or math.isfinite(big) and np.iinfo(w.dtype).min <= big <= np.iinfo(w.dtype).max:
                w[data.draw(st.integers(0, w.size - 1))] = big
            arrays[key] = w.reshape(v.shape)
        elif action == "delete":
            del arrays[key]
            if not arrays:
                break
        elif action == "add":
            arrays[data.draw(st.text(min_size=1, max_size=8))] = np.zeros(2, np.int8)
        elif action == "text":
            arrays[key] = np.array(data.draw(st.text(max_size=20)))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass
class Seeds:
    """Valid inputs to mutate, made once: an arch and its weights file, a build, pictures and a
    board file; `work` is a scratch folder the targets write mutated files into."""

    arch: A.Arch
    arch_doc: dict
    weights: bytes
    weight_arrays: dict[str, np.ndarray]
    build: Path
    manifest: dict
    lowered: bytes
    lowered_arrays: dict[str, np.ndarray]
    images: list[bytes]
    board_text: str
    work: Path
    tflite: bytes

    @staticmethod
    def make(root: Path) -> "Seeds":
        from PIL import Image

        arch = A.Arch(12, 3, (A.Row("conv", 3, 2, 3, 5, None, 1, 6, 5),
                              A.Row("mbconv", 3, 1, 5, 5, 9, 2, (5, 4), (3, 6))))
        A.save(arch, root / "a.json")
        ck = random_checkpoint(arch, 0)
        compile_model(root / "a.json", load_board("stm32f746"), root / "build", force=True)
        weights = checkpoint.to_bytes(ck)
        lowered = (root / "build" / "lowered.npz").read_bytes()
        images = []
        for fmt, mode in (("PNG", "RGB"), ("BMP", "L"), ("JPEG", "RGB"), ("PNG", "I;16")):
            buf = io.BytesIO()
            Image.new(mode, (9, 7), 100).save(buf, fmt)
            images.append(buf.getvalue())
        work = root / "work"
        work.mkdir()
        return Seeds(arch, A.to_dict(arch), weights, dict(np.load(io.BytesIO(weights))), root / "build",
                     json.loads((root / "build" / "manifest.json").read_text()), lowered,
                     dict(np.load(io.BytesIO(lowered))), images, (BOARDS / "stm32f412.toml").read_text(), work,
                     _small_tflite())


def _small_tflite() -> bytes:
    """A small int8 model of most imported ops (tests/tflite_builder.py)."""
    from tflite_builder import Builder

    b = Builder((6, 5, 2), seed=0, in_zp=-3)
    x = b.conv(b.input, 4, (3, 3), (2, 1), "same", "relu6")
    d = b.conv(x, 0, (3, 3), (1, 1), "valid", "relu", depthwise=2)
    y = b.add(b.conv(b.pad(d, 1, 1, 1, 1), 4, (1, 1)), x)
    m = b.mean(b.pool(y, (2, 2), (1, 1), "same", "avg"))
    return b.finish(b.softmax(b.fully_connected(b.reshape(m), 3, weight_scale=0.1)))


def _file(seeds: Seeds, name: str, content: bytes | str) -> Path:
    path = seeds.work / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def fuzz_arch(data: st.DataObject, s: Seeds) -> None:
    text = mutate_json(data, s.arch_doc) if data.draw(st.booleans()) else \
        mutate_bytes(data, A.dumps(s.arch).encode()).decode("utf-8", "replace")
    A.load(_file(s, "arch.json", text))


def fuzz_weights(data: st.DataObject, s: Seeds) -> None:
    blob = mutate_arrays(data, s.weight_arrays) if data.draw(st.booleans()) else mutate_bytes(data, s.weights)
    checkpoint.load(_file(s, "w.npz", blob), s.arch if data.draw(st.booleans()) else None)


def fuzz_lowered(data: st.DataObject, s: Seeds) -> None:
    blob = mutate_arrays(data, s.lowered_arrays) if data.draw(st.booleans()) else mutate_bytes(data, s.lowered)
    LoweredModel.load(_file(s, "lowered.npz", blob))


def fuzz_manifest(data: st.DataObject, s: Seeds) -> None:
    build = s.work / "build"
    if not build.exists():
        shutil.copytree(s.build, build)
    (build / "manifest.json").write_text(mutate_json(data, s.manifest) if data.draw(st.booleans()) else
                                         mutate_bytes(data, json.dumps(s.manifest).encode()).decode("latin-1"))
    b = BuildDir(build)
    _ = (b.model, b.board, b.input_bytes, b.name, b.report)


def mutate_tflite(data: st.DataObject, blob: bytes) -> bytes:
    """A TFLite model with one to three of its fields changed through the schema's object API: a
    tensor's dimension or type, an operator's input or output index, an option's value."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(blob), 0)
    g = m.subgraphs[0]
    small = st.integers(-3, 70)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["dim", "type", "input", "output", "option"]))
        if kind in ("dim", "type"):
            t = g.tensors[data.draw(st.integers(0, len(g.tensors) - 1))]
            if kind == "type":
                t.type = data.draw(st.sampled_from([0, 2, 3, 7, 9, 17]))
            elif len(t.shape):
                t.shape[data.draw(st.integers(0, len(t.shape) - 1))] = data.draw(small)
        else:
            op = g.operators[data.draw(st.integers(0, len(g.operators) - 1))]
            if kind == "option":
                opts = op.builtinOptions
                fields = [k for k, v in vars(opts).items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)] if opts else []
                if fields:   # unsigned enum fields: keep values a byte holds
                    setattr(opts, data.draw(st.sampled_from(fields)), data.draw(st.integers(0, 70)))
            else:
                arr = op.inputs if kind == "input" else op.outputs
                arr[data.draw(st.integers(0, len(arr) - 1))] = data.draw(st.integers(-2, len(g.tensors) + 2))
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def fuzz_tflite(data: st.DataObject, s: Seeds) -> None:
    """The TFLite front end through the plan, the C sources and the golden model: bytes mutated,
    or fields through the schema's object API."""
    from qetool.compiler.compile_graph import compile_graph

    blob = mutate_tflite(data, s.tflite) if data.draw(st.booleans()) else mutate_bytes(data, s.tflite)
    c = compile_graph(blob, "fuzz.tflite", load_board("stm32f746"), "qe_model")
    _ = c.sources
    prog = c.program
    x = prog.input
    prog.golden(np.zeros((x.height, x.width, x.channels), np.int32))   # what run --host does


def fuzz_image(data: st.DataObject, s: Seeds) -> None:
    read_image(_file(s, "x.img", mutate_bytes(data, data.draw(st.sampled_from(s.images)))))


def fuzz_board(data: st.DataObject, s: Seeds) -> None:
    lines = s.board_text.splitlines()
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(lines) - 1))
        key = lines[i].split("=")[0] if "=" in lines[i] else "x"
        value = data.draw(st.sampled_from(['""', "-1", "1e400", "[1, 2]", "{a = 1}", "true", '"cortex-m4"',
                                           str(2**64), "0x", "nan", "'x'"]))
        lines[i] = f"{key}= {value}" if data.draw(st.booleans()) else ""
        text = "\n".join(lines)
    else:
        text = mutate_bytes(data, s.board_text.encode()).decode("utf-8", "replace")
    parse_board(text, "fuzz.toml")


TARGETS: dict[str, Callable[[st.DataObject, Seeds], None]] = {
    "arch.json": fuzz_arch, "weights file": fuzz_weights, "lowered.npz": fuzz_lowered,
    "manifest.json": fuzz_manifest, "image": fuzz_image, "board file": fuzz_board,
    "tflite": fuzz_tflite}
"""Each loader and the function that feeds it one mutated input."""


def run_case(target: str, data: st.DataObject, seeds: Seeds) -> bool:
    """One case: True if the loader accepted it, False for a QetoolError; anything else raises."""
    try:
        TARGETS[target](data, seeds)
        return True
    except QetoolError:
        return False


def make_seeds() -> Seeds:
    return Seeds.make(Path(tempfile.mkdtemp(prefix="qetool-fuzz-")))
