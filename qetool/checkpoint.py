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
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load(path: str | Path, arch: A.Arch | None = None) -> Checkpoint:
    """Read and check a weights file; with `arch`, check it matches (layer names and shapes)."""
    p = Path(path)
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise QetoolError(f"{p}: not a weights file ({e})") from None
    with z:
        if "format" not in z.files or str(z["format"]) != FORMAT:
            raise QetoolError(f"{p}: not a {FORMAT} file")
        stored = A.loads(str(z["arch"]))
        d = {k: z[k] for k in z.files}
    ck = Checkpoint(
        arch=stored,
        convs={lid: ConvWeights(*(d[f"{lid}.{f}"] for f in _CONV_FIELDS), float(d[f"{lid}.bn_eps"]))
               for lid in sorted({k[:-2] for k in d if k.endswith(".w") and k != "head.w"})},
        head=HeadWeights(d["head.w"], d["head.w_step"], d["head.bias"]),
        steps={k[:-5]: float(d[k]) for k in d if k.endswith(".step")},
        clamps={k[:-6]: int(d[k]) for k in d if k.endswith(".clamp")})
    check(ck, arch if arch is not None else stored, p)
    return ck


def expected_shapes(arch: A.Arch) -> dict[str, tuple[int, ...]]:
    """Weight shape of every layer: OIHW for convs (I = 1 depthwise), [K, C] for the head."""
    out = {}
    for layer in A.layers(arch):
        if layer.op == "head":
            out[layer.id] = (layer.cout, layer.cin)
        else:
            out[layer.id] = (layer.cout, 1 if layer.depthwise else layer.cin, layer.kernel, layer.kernel)
    return out


def check(ck: Checkpoint, arch: A.Arch, where: str | Path = "weights") -> None:
    """A weights file that does not match `arch` is a user error naming the layer and shapes;
    codes outside their bit width are too."""
    shapes = expected_shapes(arch)
    layers = {layer.id: layer for layer in A.layers(arch)}
    have = set(ck.convs) | {"head"}
    missing = [lid for lid in shapes if lid not in have]
    extra = sorted(have - set(shapes))
    if missing or extra:
        raise QetoolError(f"{where}: does not match the arch: "
                          + (f"missing {', '.join(missing)}" if missing else "")
                          + ("; " if missing and extra else "")
                          + (f"unexpected {', '.join(extra)}" if extra else ""))
    for lid, shape in shapes.items():
        w = ck.head.w if lid == "head" else ck.convs[lid].w
        if tuple(w.shape) != shape:
            raise QetoolError(f"{where}: {lid}: weights have shape {tuple(w.shape)}, "
                              f"the arch needs {shape}")
        bits = layers[lid].bits_w
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if w.size and (w.min() < lo or w.max() > hi):
            raise QetoolError(f"{where}: {lid}: weight codes span {w.min()}..{w.max()}, "
                              f"outside {bits}-bit {lo}..{hi}")
    for t in A.tensors(arch):
        if t != "image" and t not in ck.steps:
            raise QetoolError(f"{where}: no activation step for tensor {t}")
