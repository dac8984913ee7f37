"""Test helpers: random valid archs of every shape the format allows."""

from __future__ import annotations

import random

from qetool.arch import Arch, Row


def random_arch(rng: random.Random, resolution: int | None = None, max_rows: int = 4,
                max_width: int = 24, kernels=(3, 5, 7), bits_a=None, bits_w=None,
                num_classes: int | None = None) -> Arch:
    """A small random arch: odd channel counts, strides 1/2, kernels 3/5/7, repeats (so
    residuals), per-repetition bits. bits_a/bits_w, when given, are drawn from."""
    ba = bits_a or list(range(3, 9))
    bw = bits_w or list(range(2, 9))
    res = resolution or rng.randint(7, 33)
    cin = 3
    cout = rng.randint(3, max_width)
    rows = [Row("conv", rng.choice((3, 5)), 2, cin, cout, None, 1, rng.choice(ba), rng.choice(bw))]
    h = (res - 1) // 2 + 1
    for _ in range(rng.randint(1, max_rows)):
        stride = rng.choice((1, 2)) if h >= 2 else 1
        h = (h - 1) // stride + 1
        cin = cout
        cout = cin if rng.random() < 0.4 else rng.randint(3, max_width)
        rep = rng.randint(1, 3)
        rows.append(Row("mbconv", rng.choice(kernels), stride, cin, cout,
                        rng.randint(3, 2 * max_width), rep,
                        tuple(rng.choice(ba) for _ in range(rep)),
                        tuple(rng.choice(bw) for _ in range(rep))))
    return Arch(res, num_classes or rng.randint(2, 5), tuple(rows))


def oversized_paper(path) -> Arch:
    """The paper's network at 8 bits everywhere with its last row twice as wide inside
    (btn 384): about 1.16 MB of Flash, over the STM32F746's 1 MB."""
    from qetool.arch import blocks, load, with_bits

    arch = load(path)
    n = len(blocks(arch))
    arch = with_bits(arch, [8] * n, [8] * n)
    last = arch.rows[-1]
    rows = arch.rows[:-1] + (Row(last.block, last.kernel, last.stride, last.cin, last.cout, 384,
                                 last.repeat, last.bits_a, last.bits_w),)
    return Arch(arch.resolution, arch.num_classes, rows, arch.in_channels)
