"""Seeded random weights in the weights-file format, calibrated so every layer uses its range.

Weight codes are uniform over their full bit width, steps 1 / (2^(b-1) * sqrt(fan_in)). On a
seeded random image, layer by layer in float fake-quant: BatchNorm's mean and variance are the
channel statistics of the conv output (as a freshly calibrated BatchNorm), gamma ~ U(0.5, 1.5),
beta ~ U(-0.5, 1); each activation step is the 99.9th percentile of the tensor's magnitude over
its largest code (data-driven, as LSQ initialises steps from data), and ReLU6's clamp code is
min(qmax, round(6 / step)). Statistics are taken over CALIBRATION_IMAGES seeded random images.
"""

from __future__ import annotations

import numpy as np

from qetool import arch as A
from qetool.checkpoint import Checkpoint, ConvWeights, HeadWeights, expected_shapes
from qetool.compiler.golden import conv_real, output_real, quantize_output
from qetool.compiler.lower import code_range, round_half_up
from qetool.preprocess import image_codes

PERCENTILE = 99.9
BN_EPS = 1e-5
CALIBRATION_IMAGES = 4


def random_pixels(arch: A.Arch, seed: int, index: int = 0) -> np.ndarray:
    """Seeded random uint8 image number `index` (H, W, C) at the arch's resolution."""
    rng = np.random.default_rng([seed, 1, index])
    return rng.integers(0, 256, (arch.resolution, arch.resolution, arch.in_channels), dtype=np.uint8)


def random_checkpoint(arch: A.Arch, seed: int = 0) -> Checkpoint:
    """Deterministic random weights for `arch` from `seed`, calibrated on random_pixels."""
    rng = np.random.default_rng(seed)
    shapes = expected_shapes(arch)
    ls = A.layers(arch)
    ts = A.tensors(arch)
    convs = {}
    for layer in ls[:-1]:
        o, i, kh, kw = shapes[layer.id]
        half = 1 << (layer.bits_w - 1)
        convs[layer.id] = ConvWeights(
            w=rng.integers(-half, half, (o, i, kh, kw)).astype(np.int8),
            w_step=np.full(o, 1.0 / (half * np.sqrt(i * kh * kw)), np.float32),
            bn_gamma=rng.uniform(0.5, 1.5, o).astype(np.float32),
            bn_beta=rng.uniform(-0.5, 1.0, o).astype(np.float32),
            bn_mean=np.zeros(o, np.float32), bn_var=np.ones(o, np.float32), bn_eps=BN_EPS)
    k, c = shapes["head"]
    head = HeadWeights(rng.integers(-128, 128, (k, c)).astype(np.int8),
                       np.full(k, 1.0 / (128 * np.sqrt(c)), np.float32),
                       rng.uniform(-0.1, 0.1, k).astype(np.float32))
    ck = Checkpoint(arch, convs, head, steps={}, clamps={})
    codes = [{"image": image_codes(random_pixels(arch, seed, i), ts["image"].bits)}
             for i in range(CALIBRATION_IMAGES)]
    for layer in ls:
        inputs = [(c[layer.input], c[layer.residual] if layer.residual else None) for c in codes]
        if layer.op == "head":
            pre = [x for x, _ in inputs]
        else:
            pre = [conv_real(ck, layer, x) for x, _ in inputs]
            conv = np.concatenate([p.reshape(-1, layer.cout) for p in pre])
            convs[layer.id].bn_mean = conv.mean(axis=0).astype(np.float32)
            convs[layer.id].bn_var = conv.var(axis=0).astype(np.float32)
        reals = [output_real(ck, layer, p, res) for p, (_, res) in zip(pre, inputs)]
        t = ts[layer.id]
        qmax = code_range(t.bits, t.signed)[1]
        mag = np.concatenate([np.abs(r).ravel() for r in reals])
        step = float(np.percentile(mag, PERCENTILE)) / qmax
        ck.steps[layer.id] = float(np.float32(step if step > 0 else 1.0 / qmax))
        if layer.relu6:
            ck.clamps[layer.id] = min(qmax, round_half_up(6.0 / ck.steps[layer.id]))
        for c, real in zip(codes, reals):
            c[layer.id] = quantize_output(ck, layer, real)
    return ck
