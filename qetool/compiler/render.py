"""Render the C sources (templates/*.j2) and write build/ (docs/formats.md).

Logic stays here in Python (offsets, symbols, packed bytes); the C text lives in the templates.
The whole build/ directory is written beside its target and swapped in at the end, so a failed
compile never leaves a half-written build/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import jinja2

from qetool import arch as A
from qetool.compiler.lower import LoweredLayer, LoweredModel
from qetool.compiler.pack import LAYOUTS, pack_weights
from qetool.compiler.plan import CONV1X1_TILE, Plan
from qetool.errors import QetoolError
from qetool.fileio import umask_mode, write_error
from qetool.paths import TEMPLATES
from qetool.preprocess import image_step

KERNEL_FUNCTIONS = {"conv": "conv_hwc", "conv1x1": "conv1x1_hwc",
                    "dwconv": "dwconv_hwc_inplace", "head": "head"}
"""The C function of each op, after the model's name: `qe_model_conv_hwc` (the ops of
pack.code_table)."""
SOURCES = {"kernels.h": "{}_kernels.h", "kernels.c": "{}_kernels.c", "model.h": "{}.h",
           "model.c": "{}.c", "weights.h": "{}_weights.h", "weights.c": "{}_weights.c",
           "app.h": "qe_app.h"}
"""Each template (templates/NAME.j2) and the file it renders, {} standing for the model's name."""
DEFAULT_NAME = "qe_model"
"""The model's name (--name) when none is given: qe_model.h, qe_model_run(), ..."""
MANIFEST_FORMAT = "qetool-build/2"
BOARD_FILE = "board.toml"
"""build/board.toml: the user's board file, for a build made with --board-file."""


def _hexrows(data: bytes, per_line: int = 16) -> list[str]:
    """Byte rows for a C initializer: `0x12, 0x34, ...` (number formatting only)."""
    return [", ".join(f"0x{b:02x}" for b in data[i:i + per_line])
            for i in range(0, len(data), per_line)]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.filters["hexrows"] = _hexrows
    return env


def check_name(name: object, where: str = "--name") -> str:
    """A model name: a lower-case C identifier of at most 32 characters, not qe_app (the
    firmware's own names)."""
    if (not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name)
            or name.startswith("qe_app")):
        raise QetoolError(f"{where} {name!r}: give a lower-case C identifier (a-z, 0-9, _; at most "
                          "32 characters, starting with a letter, not qe_app...)")
    return name


def symbol(name: str, layer_id: str) -> str:
    """C symbol prefix of a layer: `b3.expand` of model `qe_model` -> `qe_model_b3_expand`."""
    return f"{name}_{layer_id.replace('.', '_')}"


GRAPH_KERNELS = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "avg_pool", "max_pool",
                 "mean", "pad", "softmax")
"""The C functions of an imported model's kernels, after the model's name (render_graph.KERNELS)."""


def model_symbols(name: str) -> tuple[str, ...]:
    """The ELF symbols that make up a model's code: its kernels (either front end's), its
    functions, its layer table."""
    return (*(f"{name}_{fn}" for fn in (*KERNEL_FUNCTIONS.values(), *GRAPH_KERNELS)),
            *(f"{name}_{fn}" for fn in ("run", "input", "arena", "layer_output", "layers")))


@dataclass(frozen=True)
class IOTensor:
    """A model input or output as the host sees it: shape H x W x C (HWC), bits, signedness;
    code q stands for the real value scale * (q - zero_point)."""

    height: int
    width: int
    channels: int
    bits: int
    signed: bool
    scale: float
    zero_point: int

    @property
    def scale_bits(self) -> int:
        """The scale as IEEE-754 single-precision bits (how model.h and HELLO carry it)."""
        return struct.unpack("<I", struct.pack("<f", self.scale))[0]

    def to_json(self) -> dict:
        return asdict(self)


def model_io(model: LoweredModel) -> tuple[IOTensor, IOTensor]:
    """The input (image codes: pixel >> (8 - bits), docs/arithmetic.md) and the output (int8
    logits) of a lowered arch.json model."""
    a = model.arch
    image = IOTensor(a.resolution, a.resolution, a.in_channels, model.input_bits, False,
                     image_step(model.input_bits), 0)
    return image, IOTensor(1, 1, a.num_classes, A.HEAD_BITS, True, model.logit_step, 0)


@dataclass(frozen=True)
class LayerC:
    """What the templates need of one layer beyond the lowered layer itself: its index, C
    symbol and kernel, its buffers' arena offsets (bytes) and its packed weights."""

    index: int
    layer: LoweredLayer
    sym: str
    kernel_fn: str
    layout: str
    in_off: int
    out_off: int
    out_bytes: int
    res_off: int
    scratch_off: int
    packed: bytes


def layer_context(model: LoweredModel, p: Plan, name: str) -> list[LayerC]:
    """Per-layer template data: plan offsets and packed weights."""
    out = []
    for i, layer in enumerate(model.layers):
        is_head = layer.op == "head"
        out.append(LayerC(
            index=i, layer=layer, sym=symbol(name, layer.id),
            kernel_fn=f"{name}_{KERNEL_FUNCTIONS[layer.op]}",
            layout=LAYOUTS[layer.op], in_off=p.buffer_of(layer.input).offset,
            out_off=0 if is_head else p.buffer_of(layer.id).offset,
            out_bytes=0 if is_head else p.buffers[layer.id].size,
            res_off=p.buffer_of(layer.residual).offset if layer.residual else 0,
            scratch_off=p.buffers[f"{layer.id}.scratch"].offset,
            packed=pack_weights(layer.op, layer.weights, layer.bits_w)))
    return out


def render_sources(model: LoweredModel, p: Plan, name: str = DEFAULT_NAME) -> dict[str, str]:
    """The generated C files, by file name; every global symbol starts with `name`."""
    layers = layer_context(model, p, name)
    image = p.buffers["image"]
    x, y = model_io(model)
    ctx = dict(title=f"qetool model {model.model_hash}", p=name, P=name.upper(),
               model_hash=model.model_hash, x=x, y=y,
               num_classes=model.arch.num_classes,
               input_bytes=image.size, input_offset=image.offset, arena_bytes=p.arena_bytes,
               layers=layers, kernels=sorted({layer.op for layer in model.layers}),
               conv1x1_tile=CONV1X1_TILE)
    env = environment()
    return {out.format(name): env.get_template(f"{t}.j2").render(**ctx) for t, out in SOURCES.items()}


def write_build(out_dir: Path, files: dict[str, bytes | str],
                finish: Callable[[Path], object] | None = None) -> None:
    """Write `files` (relative paths) as the new content of `out_dir`, swapped in whole;
    `finish(staging_dir)` runs before the swap (the firmware build)."""
    shown, out_dir = out_dir, Path(os.path.realpath(out_dir))  # a symlinked build/ stays a link
    if out_dir.exists() and not out_dir.is_dir():
        raise QetoolError(f"cannot write {shown}/: it is a file, not a folder")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        os.chmod(tmp, umask_mode(0o777))
    except OSError as e:
        raise write_error(shown, e) from None
    try:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                path.write_bytes(content)
        if finish is not None:
            finish(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except OSError as e:
        raise write_error(shown, e) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def manifest(model: LoweredModel, p: Plan, board: str, board_file: str | None = None,
             class_names: list[str] | None = None, name: str = DEFAULT_NAME,
             random_seed: int | None = None) -> dict:
    """manifest.json (docs/formats.md); `board_file` names build/'s copy of a user's board file,
    `class_names` the outputs' names (None: not known), `name` the C symbols' prefix,
    `random_seed` the seed of the random weights (None: a weights file)."""
    image = p.buffers["image"]
    x, y = model_io(model)
    return {
        "format": MANIFEST_FORMAT, "name": name, "board": board, "random_weights_seed": random_seed,
        **({"board_file": board_file} if board_file else {}), "arch": A.to_dict(model.arch),
        "model_hash": model.model_hash, "num_classes": model.arch.num_classes,
        "class_names": class_names,
        "input": {**x.to_json(), "layout": "HWC, packed LSB first", "bytes": image.size,
                  "arena_offset": image.offset},
        "output": {**y.to_json(), "layout": "int8 per class"},
        "arena_bytes": p.arena_bytes,
        "layers": [layer.id for layer in model.layers]}


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"
