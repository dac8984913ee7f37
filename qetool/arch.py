"""arch.json: the network format and its tensor table (docs/network.md).

A file holds rows as in the paper's structure tables. `load`/`save` round-trip exactly;
`validate` names the JSON path of every error. `blocks`, `layers` and `tensors` expand rows
into the per-instance views that search, compiler and training all use.

Geometry: padding k//2 on each side, output size floor((H - 1) / s) + 1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from pathlib import Path
from typing import Any, Mapping

from qetool import fileio
from qetool.errors import QetoolError

FORMAT = "qetool-arch/1"
BITS_A = range(3, 9)
"""Activation bit widths the format, compiler, kernels and training accept."""
BITS_W = range(2, 9)
"""Weight bit widths the format, compiler, kernels and training accept."""
HEAD_BITS = 8
"""Bits of the head's weights, of the last block's output and of the logits."""

_TOP_KEYS = ("format", "resolution", "in_channels", "num_classes", "layers")
_ROW_KEYS = ("block", "kernel", "stride", "in", "out", "btn", "repeat", "bits_a", "bits_w")


class ArchError(QetoolError):
    """An invalid arch.json; the message lists every error with its JSON path."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


@dataclass(frozen=True)
class Row:
    """One row of the structure table. bits are an int or one value per repetition."""

    block: str
    kernel: int
    stride: int
    cin: int
    cout: int
    btn: int | None
    repeat: int
    bits_a: int | tuple[int, ...]
    bits_w: int | tuple[int, ...]

    def bits_a_at(self, rep: int) -> int:
        return self.bits_a if isinstance(self.bits_a, int) else self.bits_a[rep]

    def bits_w_at(self, rep: int) -> int:
        return self.bits_w if isinstance(self.bits_w, int) else self.bits_w[rep]


@dataclass(frozen=True)
class Arch:
    """A whole network: input resolution (px, square), input channels, classes and rows."""

    resolution: int
    num_classes: int
    rows: tuple[Row, ...]
    in_channels: int = 3


@dataclass(frozen=True)
class Block:
    """One block instance in execution order: the stem (index 0, name `stem`) or one repetition
    of an mbconv row (index i >= 1, name `b<i>`). Sizes in pixels and channels."""

    index: int
    name: str
    row: int
    kernel: int
    stride: int
    cin: int
    cout: int
    btn: int
    bits_a: int
    bits_w: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int

    @property
    def residual(self) -> bool:
        return self.index > 0 and self.stride == 1 and self.cin == self.cout


@dataclass(frozen=True)
class Layer:
    """One layer of the lowered graph. `op` is conv (the stem), conv1x1 (expand, project),
    dwconv or head. `bits_x` is the bits of the tensor it reads, `pad` is (top, bottom,
    left, right) in pixels, `residual` the tensor added to a project's output."""

    id: str
    op: str
    block: int
    kernel: int
    stride: int
    cin: int
    cout: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int
    pad: tuple[int, int, int, int]
    bits_x: int
    bits_w: int
    input: str
    residual: str | None
    relu6: bool

    @property
    def depthwise(self) -> bool:
        return self.op == "dwconv"

    @property
    def params(self) -> int:
        """Weight count (no bias)."""
        if self.op == "head":
            return self.cin * self.cout
        per_out = 1 if self.depthwise else self.cin
        return self.cout * per_out * self.kernel * self.kernel


@dataclass(frozen=True)
class Tensor:
    """An activation tensor (docs/network.md), named after the layer that writes it
    (`image` for the input). One quantizer: `bits`, signed or unsigned codes, shape HWC."""

    name: str
    readers: tuple[str, ...]
    bits: int
    signed: bool
    h: int
    w: int
    c: int


def out_size(size: int, stride: int) -> int:
    """Output size of a k x k layer with padding k//2: floor((size - 1) / stride) + 1."""
    return (size - 1) // stride + 1


def blocks(arch: Arch) -> list[Block]:
    """Expand rows into block instances: stem first, then each repetition of each row."""
    out: list[Block] = []
    h = w = arch.resolution
    for r, row in enumerate(arch.rows):
        for rep in range(row.repeat):
            stride = row.stride if rep == 0 else 1
            cin = row.cin if rep == 0 else row.cout
            ho, wo = out_size(h, stride), out_size(w, stride)
            index = len(out)
            out.append(Block(
                index=index, name="stem" if index == 0 else f"b{index}", row=r,
                kernel=row.kernel, stride=stride, cin=cin, cout=row.cout, btn=row.btn or 0,
                bits_a=row.bits_a_at(rep), bits_w=row.bits_w_at(rep),
                h_in=h, w_in=w, h_out=ho, w_out=wo))
            h, w = ho, wo
    return out


def _pad(kernel: int) -> tuple[int, int, int, int]:
    p = kernel // 2
    return (p, p, p, p)


def layers(arch: Arch) -> list[Layer]:
    """Every layer in execution order: stem, expand/dw/project per block, head."""
    bl = blocks(arch)
    stem = bl[0]
    out = [Layer(
        id="stem", op="conv", block=0, kernel=stem.kernel, stride=stem.stride,
        cin=stem.cin, cout=stem.cout, h_in=stem.h_in, w_in=stem.w_in,
        h_out=stem.h_out, w_out=stem.w_out, pad=_pad(stem.kernel), bits_x=stem.bits_a,
        bits_w=stem.bits_w, input="image", residual=None, relu6=True)]
    prev = "stem"
    for b in bl[1:]:
        n = b.name
        common = dict(block=b.index, bits_x=b.bits_a, bits_w=b.bits_w)
        out.append(Layer(
            id=f"{n}.expand", op="conv1x1", kernel=1, stride=1, cin=b.cin, cout=b.btn,
            h_in=b.h_in, w_in=b.w_in, h_out=b.h_in, w_out=b.w_in, pad=(0, 0, 0, 0),
            input=prev, residual=None, relu6=True, **common))
        out.append(Layer(
            id=f"{n}.dw", op="dwconv", kernel=b.kernel, stride=b.stride, cin=b.btn, cout=b.btn,
            h_in=b.h_in, w_in=b.w_in, h_out=b.h_out, w_out=b.w_out, pad=_pad(b.kernel),
            input=f"{n}.expand", residual=None, relu6=True, **common))
        out.append(Layer(
            id=f"{n}.project", op="conv1x1", kernel=1, stride=1, cin=b.btn, cout=b.cout,
            h_in=b.h_out, w_in=b.w_out, h_out=b.h_out, w_out=b.w_out, pad=(0, 0, 0, 0),
            input=f"{n}.dw", residual=prev if b.residual else None, relu6=False, **common))
        prev = f"{n}.project"
    last = bl[-1]
    out.append(Layer(
        id="head", op="head", block=len(bl), kernel=1, stride=1, cin=last.cout,
        cout=arch.num_classes, h_in=last.h_out, w_in=last.w_out, h_out=1, w_out=1,
        pad=(0, 0, 0, 0), bits_x=HEAD_BITS, bits_w=HEAD_BITS, input=prev, residual=None,
        relu6=False))
    return out


@lru_cache(maxsize=64)
def tensors(arch: Arch) -> Mapping[str, Tensor]:
    """The tensor table (docs/network.md), keyed by tensor name, in execution order; read-only
    and cached per arch (the golden model and calibration ask for it once per layer).

    A tensor's bits are the bits_a of the layer that reads it (8 for the head's input and the
    logits); codes are unsigned after ReLU6 (and for the image), signed otherwise."""
    ls = layers(arch)
    readers: dict[str, list[str]] = {}
    bits: dict[str, int] = {}
    for layer in ls:
        for name in (layer.input, layer.residual):
            if name is not None:
                readers.setdefault(name, []).append(layer.id)
        bits.setdefault(layer.input, layer.bits_x)
    out = {"image": Tensor("image", tuple(readers["image"]), bits["image"], False,
                           arch.resolution, arch.resolution, arch.in_channels)}
    for layer in ls:
        is_head = layer.op == "head"
        out[layer.id] = Tensor(
            name=layer.id, readers=tuple(readers.get(layer.id, ())),
            bits=HEAD_BITS if is_head else bits[layer.id], signed=not layer.relu6,
            h=layer.h_out, w=layer.w_out, c=layer.cout)
    return MappingProxyType(out)


# ---------------------------------------------------------------------------------------------
# JSON: validate, load, save


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Collects errors with their JSON paths."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}")

    def int_in(self, path: str, v: Any, lo: int, hi: int | None = None) -> bool:
        if not _is_int(v):
            self.fail(path, f"{json.dumps(v)} is not an integer")
            return False
        if v < lo or (hi is not None and v > hi):
            self.fail(path, f"{v} is not in {lo}..{hi}" if hi is not None else f"{v} is below {lo}")
            return False
        return True

    def bits(self, path: str, v: Any, allowed: range, repeat: int) -> bool:
        if isinstance(v, list):
            if len(v) != repeat:
                self.fail(path, f"has {len(v)} values for {repeat} repetitions")
                return False
            return all([self.int_in(f"{path}[{i}]", x, allowed.start, allowed.stop - 1)
                        for i, x in enumerate(v)])
        return self.int_in(path, v, allowed.start, allowed.stop - 1)


def _row(doc: dict, path: str, ck: _Checker) -> Row | None:
    n_err = len(ck.errors)
    for key in doc:
        if key not in _ROW_KEYS:
            ck.fail(f"{path}.{key}", "unknown key")
    block = doc.get("block")
    if block not in ("conv", "mbconv"):
        ck.fail(f"{path}.block", f"{json.dumps(block)} is not conv or mbconv")
    for key in ("kernel", "stride", "in", "out", "bits_a", "bits_w"):
        if key not in doc:
            ck.fail(f"{path}.{key}", "missing")
    kernel = doc.get("kernel")
    if "kernel" in doc and ck.int_in(f"{path}.kernel", kernel, 1, 15) and kernel % 2 == 0:
        ck.fail(f"{path}.kernel", f"{kernel} is not odd")
    if "stride" in doc:
        ck.int_in(f"{path}.stride", doc["stride"], 1, 2)
    for key in ("in", "out"):
        if key in doc:
            ck.int_in(f"{path}.{key}", doc[key], 1, 4096)
    if block == "mbconv":
        if "btn" not in doc:
            ck.fail(f"{path}.btn", "missing (mbconv needs its expanded width)")
        else:
            ck.int_in(f"{path}.btn", doc["btn"], 1, 8192)
    elif "btn" in doc:
        ck.fail(f"{path}.btn", "only mbconv rows have btn")
    repeat = doc.get("repeat", 1)
    rep_ok = ck.int_in(f"{path}.repeat", repeat, 1, 64)
    if rep_ok:
        for key, allowed in (("bits_a", BITS_A), ("bits_w", BITS_W)):
            if key in doc:
                ck.bits(f"{path}.{key}", doc[key], allowed, repeat)
    if len(ck.errors) > n_err:
        return None

    def bits(v: Any) -> int | tuple[int, ...]:
        return tuple(v) if isinstance(v, list) else v

    return Row(block=block, kernel=kernel, stride=doc["stride"], cin=doc["in"],
               cout=doc["out"], btn=doc.get("btn"), repeat=repeat,
               bits_a=bits(doc["bits_a"]), bits_w=bits(doc["bits_w"]))


def from_dict(doc: Any) -> Arch:
    """Validate a parsed arch.json and build the Arch; raises ArchError listing every error."""
    ck = _Checker()
    if not isinstance(doc, dict):
        raise ArchError(["$: the file must hold a JSON object"])
    for key in doc:
        if key not in _TOP_KEYS:
            ck.fail(key, "unknown key")
    if doc.get("format") != FORMAT:
        ck.fail("format", f"{json.dumps(doc.get('format'))} is not {json.dumps(FORMAT)}")
    ck.int_in("resolution", doc.get("resolution"), 1, 4096)
    ck.int_in("in_channels", doc.get("in_channels", 3), 1, 64)
    ck.int_in("num_classes", doc.get("num_classes"), 2, 4096)
    raw = doc.get("layers")
    rows: list[Row | None] = []
    if not isinstance(raw, list) or not raw:
        ck.fail("layers", "must be a non-empty list of rows")
    else:
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                ck.fail(f"layers[{i}]", "must be an object")
                rows.append(None)
            else:
                rows.append(_row(item, f"layers[{i}]", ck))
    if ck.errors:
        raise ArchError(ck.errors)
    _check_structure(doc, rows, ck)  # rows are all valid here
    if ck.errors:
        raise ArchError(ck.errors)
    return Arch(resolution=doc["resolution"], num_classes=doc["num_classes"],
                rows=tuple(rows), in_channels=doc.get("in_channels", 3))


def _check_structure(doc: dict, rows: list, ck: _Checker) -> None:
    """Stem first, mbconv after it, channels chain, and the resolution survives the strides."""
    if rows[0].block != "conv":
        ck.fail("layers[0].block", "the first row must be the conv stem")
    if rows[0].repeat != 1:
        ck.fail("layers[0].repeat", "the stem is not repeated")
    if len(rows) < 2:
        ck.fail("layers", "needs at least one mbconv row after the stem")
    for i, row in enumerate(rows[1:], start=1):
        if row.block != "mbconv":
            ck.fail(f"layers[{i}].block", "rows after the stem must be mbconv")
    expected = doc.get("in_channels", 3)
    for i, row in enumerate(rows):
        if row.cin != expected:
            ck.fail(f"layers[{i}].in", f"{row.cin} does not chain: the previous output has {expected} channels")
        expected = row.cout
    h = doc["resolution"]
    for i, row in enumerate(rows):
        if row.stride == 2 and h < 2:
            ck.fail("resolution", f"{doc['resolution']} px does not survive the strides: "
                                  f"layers[{i}] (stride 2) gets {h}x{h}")
            break
        h = out_size(h, row.stride)


def to_dict(arch: Arch) -> dict:
    """The JSON document of `arch`, keys in the canonical order."""
    def bits(v: int | tuple[int, ...]) -> int | list[int]:
        return list(v) if isinstance(v, tuple) else v

    rows = []
    for row in arch.rows:
        d: dict[str, Any] = {"block": row.block, "kernel": row.kernel, "stride": row.stride,
                             "in": row.cin, "out": row.cout}
        if row.btn is not None:
            d["btn"] = row.btn
        d.update(repeat=row.repeat, bits_a=bits(row.bits_a), bits_w=bits(row.bits_w))
        rows.append(d)
    return {"format": FORMAT, "resolution": arch.resolution, "in_channels": arch.in_channels,
            "num_classes": arch.num_classes, "layers": rows}


def dumps(arch: Arch) -> str:
    """Canonical text: one row per line, so diffs read like the paper's tables."""
    doc = to_dict(arch)
    head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(doc[k])}" for k in _TOP_KEYS[:-1])
    rows = ",\n".join(f"    {json.dumps(r)}" for r in doc["layers"])
    return "{\n" + head + ',\n  "layers": [\n' + rows + "\n  ]\n}\n"


MAX_DEPTH = 8
"""arch.json nests four levels deep (object, layers, row, bits): deeper is refused unread."""


def loads(text: str) -> Arch:
    """Parse and validate arch.json text: JSON (no duplicate keys, at most MAX_DEPTH deep)."""
    try:
        doc = fileio.parse_json(text, "$", MAX_DEPTH)
    except fileio.JsonError as e:
        raise ArchError([f"$: {e.reason}"]) from None
    return from_dict(doc)


def load(path: str | Path) -> Arch:
    """Read and validate an arch.json; errors name the file."""
    p = Path(path)
    text = fileio.read_text(p, "arch.json, JSON text")
    try:
        return loads(text)
    except ArchError as e:
        raise ArchError([f"{p}: {m}" for m in e.errors]) from None


def first_difference(a: Arch, b: Arch) -> str | None:
    """The JSON path and values of the first place where two archs differ, or None."""
    def walk(x: Any, y: Any, path: str) -> str | None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in list(x) + [k for k in y if k not in x]:
                if x.get(k) != y.get(k):
                    return walk(x.get(k), y.get(k), f"{path}.{k}" if path else k)
            return None
        if isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return f"{path}: {len(x)} entries against {len(y)}"
            return next((walk(u, v, f"{path}[{i}]") for i, (u, v) in enumerate(zip(x, y)) if u != v), None)
        return None if x == y else f"{path}: {json.dumps(x)} against {json.dumps(y)}"
    return walk(to_dict(a), to_dict(b), "")


def save(arch: Arch, path: str | Path) -> None:
    """Write `arch` atomically in the canonical text form."""
    fileio.write_text(path, dumps(arch))


def arch_hash(arch: Arch) -> str:
    """A stable 16-hex-digit hash of the canonical text (the manifest's and weights' model id)."""
    return hashlib.sha256(dumps(arch).encode()).hexdigest()[:16]


def with_bits(arch: Arch, bits_a: list[int], bits_w: list[int]) -> Arch:
    """`arch` with per-instance bits (stem first, one per block instance), written as an int
    for a row whose repetitions agree and as a list otherwise."""
    rows, i = [], 0
    for row in arch.rows:
        a, w = tuple(bits_a[i:i + row.repeat]), tuple(bits_w[i:i + row.repeat])
        i += row.repeat
        rows.append(Row(row.block, row.kernel, row.stride, row.cin, row.cout, row.btn, row.repeat,
                        a[0] if len(set(a)) == 1 else a, w[0] if len(set(w)) == 1 else w))
    return Arch(arch.resolution, arch.num_classes, tuple(rows), arch.in_channels)
