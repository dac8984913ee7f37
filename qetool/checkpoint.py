"""The weights file (docs/formats.md): `model.npz`, numpy only.

Format tag `qetool-weights/1`; the arch as embedded JSON and its hash; arrays keyed by layer id:

    <conv>.w            int8  [O, I, kh, kw]  weight codes (I = 1 for depthwise)
    <conv>.w_step       float32 [O]            per-output-channel weight step
    <conv>.bn_gamma, .bn_beta, .bn_mean, .bn_var   float32 [O]
    <conv>.bn_eps       float32 []
    <tensor>.step       float32 []             activation step of the tensor written by <tensor>
    <tensor>.clamp      int32 []               ReLU6 clamp code c = min(qmax, round(6 / step))
    head.w              int8  [K, C]           FC weight codes (8 bits)
    head.w_step         float32 [K]
    head.bias           float32 [K]
    head.step           float32 []             logit step
    classes             str [K]                optional: the class names, in class order

The image's step is fixed by the input contract (preprocess.image_step) and not stored.
Training writes this format with the codes torch computed; `compile` without --weights writes it
from seeded random weights (qetool.compiler.calibrate).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qetool import arch as A
from qetool import fileio
from qetool.errors import QetoolError

FORMAT = "qetool-weights/1"


@dataclass
class ConvWeights:
    """One convolution: weight codes OIHW, per-channel steps, BatchNorm."""

    w: np.ndarray
    w_step: np.ndarray
    bn_gamma: np.ndarray
    bn_beta: np.ndarray
    bn_mean: np.ndarray
    bn_var: np.ndarray
    bn_eps: float

    def __post_init__(self) -> None:
        self.bn_eps = float(np.float32(self.bn_eps))  # as the file stores it


@dataclass
class HeadWeights:
    """The FC head: 8-bit weight codes [K, C], per-class steps, float bias."""

    w: np.ndarray
    w_step: np.ndarray
    bias: np.ndarray


@dataclass
class Checkpoint:
    """A network's weights and activation quantizers, keyed by layer / tensor id."""

    arch: A.Arch
    convs: dict[str, ConvWeights]
    head: HeadWeights
    steps: dict[str, float]
    clamps: dict[str, int] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None


_CONV_FIELDS = ("w", "w_step", "bn_gamma", "bn_beta", "bn_mean", "bn_var")


def save(ck: Checkpoint, path: str | Path) -> None:
    """Write the weights file atomically."""
    fileio.write_bytes(path, to_bytes(ck))


def to_bytes(ck: Checkpoint) -> bytes:
    """The weights file's content."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "arch": np.array(A.dumps(ck.arch)),
        "arch_hash": np.array(A.arch_hash(ck.arch))}
    for lid, c in ck.convs.items():
        arrays[f"{lid}.w"] = c.w.astype(np.int8)
        for f in _CONV_FIELDS[1:]:
            arrays[f"{lid}.{f}"] = getattr(c, f).astype(np.float32)
        arrays[f"{lid}.bn_eps"] = np.float32(c.bn_eps)
    arrays["head.w"] = ck.head.w.astype(np.int8)
    arrays["head.w_step"] = ck.head.w_step.astype(np.float32)
    arrays["head.bias"] = ck.head.bias.astype(np.float32)
    for t, s in ck.steps.items():
        arrays[f"{t}.step"] = np.float32(s)
    for t, c in ck.clamps.items():
        arrays[f"{t}.clamp"] = np.int32(c)
    if ck.class_names is not None:
        arrays["classes"] = np.array(ck.class_names, dtype=str)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _entry(d: dict[str, np.ndarray], key: str, dtype: type, shape: tuple[int, ...], where: Path,
           positive: bool = False) -> np.ndarray:
    """d[key], checked: present, of `dtype` and `shape`, finite (and > 0 with `positive`)."""
    if key not in d:
        raise QetoolError(f"{where}: {key}: missing")
    v = d[key]
    if v.dtype != dtype or v.shape != shape:
        raise QetoolError(f"{where}: {key}: {v.dtype}{list(v.shape)}, expected "
                          f"{np.dtype(dtype)}{list(shape)}")
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        raise QetoolError(f"{where}: {key}: not every value is finite")
    if positive and not (v > 0).all():
        raise QetoolError(f"{where}: {key}: not every value is above 0")
    return v


def load(path: str | Path, arch: A.Arch | None = None) -> Checkpoint:
    """Read and check a weights file; with `arch`, its embedded arch must equal it (every field,
    bits included: the weights were trained for exactly that network)."""
    p = Path(path)
    d = fileio.read_npz(p, "weights file")
    fmt = d.get("format")
    if fmt is None or fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != FORMAT:
        raise QetoolError(f"{p}: not a {FORMAT} file")
    text = d.get("arch")
    if text is None or text.shape != () or text.dtype.kind != "U":
        raise QetoolError(f"{p}: arch: missing or not text")
    try:
        stored = A.loads(str(text))
    except A.ArchError as e:
        raise QetoolError(f"{p}: its embedded arch is not valid: {e}") from None
    stored_hash = d.get("arch_hash")
    if stored_hash is None or stored_hash.shape != () or str(stored_hash) != A.arch_hash(stored):
        raise QetoolError(f"{p}: arch_hash: missing or not the hash of its arch (edited or damaged)")
    if arch is not None and stored != arch:
        raise QetoolError(f"{p}: the weights were made for another network: "
                          f"{A.first_difference(stored, arch)} (weights file against arch.json)")
    shapes = expected_shapes(stored)
    known = {"format", "arch", "arch_hash"}
    convs = {}
    for lid, shape in shapes.items():
        if lid == "head":
            continue
        o = shape[0]
        w = _entry(d, f"{lid}.w", np.int8, shape, p)
        vec = {f: _entry(d, f"{lid}.{f}", np.float32, (o,), p, positive=f in ("w_step", "bn_var"))
               for f in _CONV_FIELDS[1:]}
        eps = _entry(d, f"{lid}.bn_eps", np.float32, (), p, positive=True)
        convs[lid] = ConvWeights(w, *vec.values(), float(eps))
        known |= {f"{lid}.{f}" for f in (*_CONV_FIELDS, "bn_eps")}
    k, c = shapes["head"]
    head = HeadWeights(_entry(d, "head.w", np.int8, (k, c), p),
                       _entry(d, "head.w_step", np.float32, (k,), p, positive=True),
                       _entry(d, "head.bias", np.float32, (k,), p))
    known |= {"head.w", "head.w_step", "head.bias"}
    layers = {layer.id: layer for layer in A.layers(stored)}
    steps, clamps = {}, {}
    for t in A.tensors(stored):
        if t == "image":
            continue
        steps[t] = float(_entry(d, f"{t}.step", np.float32, (), p, positive=True))
        known.add(f"{t}.step")
        if layers[t].relu6:
            clamps[t] = int(_entry(d, f"{t}.clamp", np.int32, (), p))
            known.add(f"{t}.clamp")
    names = None
    if "classes" in d:
        names = check_class_names(d["classes"].tolist() if d["classes"].dtype.kind == "U" else None,
                                  stored.num_classes, f"{p}: classes")
        known.add("classes")
    extra = sorted(set(d) - known)
    if extra:
        raise QetoolError(f"{p}: unexpected entries for this arch: {', '.join(extra[:5])}")
    ck = Checkpoint(stored, convs, head, steps, clamps, names)
    check_codes(ck, p)
    return ck


def check_class_names(names: object, num_classes: int, where: str) -> tuple[str, ...]:
    """One non-empty, printable name (at most 64 characters) per class."""
    if (not isinstance(names, list) or len(names) != num_classes
            or not all(isinstance(n, str) and 0 < len(n) <= 64 and n.isprintable() for n in names)):
        raise QetoolError(f"{where}: not {num_classes} class names (each 1 to 64 printable characters)")
    return tuple(names)


def expected_shapes(arch: A.Arch) -> dict[str, tuple[int, ...]]:
    """Weight shape of every layer: OIHW for convs (I = 1 depthwise), [K, C] for the head."""
    out = {}
    for layer in A.layers(arch):
        if layer.op == "head":
            out[layer.id] = (layer.cout, layer.cin)
        else:
            out[layer.id] = (layer.cout, 1 if layer.depthwise else layer.cin, layer.kernel, layer.kernel)
    return out


def check_codes(ck: Checkpoint, where: str | Path) -> None:
    """Weight codes inside their layer's bit width; ReLU6 clamp codes inside their tensor's
    unsigned range (the shapes are checked as the file is read)."""
    bits = {t.name: t.bits for t in A.tensors(ck.arch).values()}
    for layer in A.layers(ck.arch):
        w = ck.head.w if layer.op == "head" else ck.convs[layer.id].w
        lo, hi = -(1 << (layer.bits_w - 1)), (1 << (layer.bits_w - 1)) - 1
        if w.size and (w.min() < lo or w.max() > hi):
            raise QetoolError(f"{where}: {layer.id}: weight codes span {w.min()}..{w.max()}, "
                              f"outside {layer.bits_w}-bit {lo}..{hi}")
    for t, c in ck.clamps.items():
        if not 0 <= c < 1 << bits[t]:
            raise QetoolError(f"{where}: {t}.clamp: {c} is outside 0..{(1 << bits[t]) - 1}")
