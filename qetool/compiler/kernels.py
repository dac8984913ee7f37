"""The registry of qetool's own kernels (docs/kernels.md): for each op the C function and its
helpers (after the model's name), the weight layout it reads, what it accepts, and its planned
scratch. Render, plan, the code-size tool and the search's cost read it, no parallel tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from qetool.errors import QetoolError

CONV1X1_TILE = 8
"""Output pixels a 1x1 kernel computes together: each unpacked weight feeds at least this many
MACs (more with room above the scratch, docs/kernels.md)."""


def _ceil4(n: int) -> int:
    return (n + 3) // 4 * 4


def dw_weight_words(kernel: int) -> int:
    """int32 words of one depthwise channel's weights in the kernel's scratch: per kernel row,
    two for each group of four taps and for a last group of two or three, one for a last single
    tap."""
    return kernel * (2 * (kernel // 4) + (0, 1, 2, 2)[kernel % 4])


def _conv_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One output pixel's receptive field as int16 pairs: 2 * ceil4(k * k * Cin)."""
    return 2 * _ceil4(kernel * kernel * cin)


def _conv1x1_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One tile of T = CONV1X1_TILE pixels' inputs and one weight row as int16 pairs:
    2 * (T + 1) * ceil4(Cin)."""
    return 2 * (CONV1X1_TILE + 1) * _ceil4(cin)


def _dwconv_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One padded input channel plane as uint8 and four spare bytes, rounded up to 4, then the
    channel's weights: ceil4(Hp * Wp + 4) + 4 * dw_weight_words(k)."""
    t, b, left, r = pad
    return _ceil4((h + t + b) * (w + left + r) + 4) + 4 * dw_weight_words(kernel)


def _head_scratch(kernel: int, cin: int, h: int, w: int, pad: tuple[int, int, int, int]) -> int:
    """One int32 sum per channel: 4 * Cin."""
    return 4 * cin


@dataclass(frozen=True)
class Kernel:
    """One kernel: the op it runs, its C function and the static helpers it calls (both after
    the model's name; their code counts with the op's in code_sizes.json), the order it reads its
    weights in, the kernel sizes and strides it accepts (None: any), whether its input must be
    unsigned, and its scratch in bytes before rounding to 4 (arguments: kernel, Cin, H, W,
    padding)."""

    op: str
    function: str
    helpers: tuple[str, ...]
    layout: str
    kernels: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    unsigned_input: bool
    scratch: Callable[[int, int, int, int, tuple[int, int, int, int]], int]


REGISTRY: dict[str, Kernel] = {k.op: k for k in (
    Kernel("conv", "conv_hwc", ("gather", "conv_pixels"), "OHWI", None, None, False, _conv_scratch),
    Kernel("conv1x1", "conv1x1_hwc",
           ("dot8", "dot8_w8", "dot2x4", "dot_tail", "unpack_tile", "unpack_row", "outputs",
            "read_pairs"),
           "OI", (1,), (1,), False, _conv1x1_scratch),
    Kernel("dwconv", "dwconv_hwc_inplace", ("dw_channel", "dw_plane", "dw_fill"), "CHW",
           tuple(range(1, 16)), None, True, _dwconv_scratch),
    Kernel("head", "head", (), "KC (int8)", None, None, False, _head_scratch),
)}
"""qetool's kernels by op. The 1x1 helpers serve the stem's tiles too: both ops are in every
arch.json network."""


def kernel(op: str) -> Kernel:
    return REGISTRY[op]


def check_layer(op: str, where: str, kernel_size: int, stride: int, signed_input: bool) -> None:
    """A layer the kernel of `op` cannot run is one clear error (the kernels' own checks at
    entry, in debug builds, are the second line)."""
    k = REGISTRY[op]
    if k.kernels is not None and kernel_size not in k.kernels:
        raise QetoolError(f"{where}: the {op} kernel takes kernels {k.kernels[0]}..{k.kernels[-1]}, "
                          f"not {kernel_size}")
    if k.strides is not None and stride not in k.strides:
        raise QetoolError(f"{where}: the {op} kernel takes stride {k.strides[0]}, not {stride}")
    if k.unsigned_input and signed_input:
        raise QetoolError(f"{where}: the {op} kernel takes unsigned input codes")
