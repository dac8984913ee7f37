"""Learned step size quantization (Esser et al., 2019) with qetool's rounding
(docs/arithmetic.md): codes = floor(clamp(v / s, lo, hi) + 1/2), value = codes * s.

Gradients: straight-through for v inside the range (zero outside); for the step, LSQ's
d/ds = (round(v/s) - v/s) inside, lo or hi outside, scaled by g = 1 / sqrt(N * Qp), N being the
number of values one step quantizes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qetool.compiler.lower import code_range


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 1/2) forward, identity backward (straight-through)."""
    return x + (torch.floor(x + 0.5) - x).detach()


def grad_scale(s: torch.Tensor, g: float) -> torch.Tensor:
    """s forward; its gradient multiplied by g."""
    return s * g + (s - s * g).detach()


class Quantizer(nn.Module):
    """One LSQ quantizer: a tensor's (one step) or per-output-channel weights' (`channels`
    steps along dim 0), `bits` wide, signed or unsigned codes, zero point 0."""

    def __init__(self, bits: int, signed: bool, channels: int = 0):
        super().__init__()
        self.bits, self.signed = bits, signed
        self.lo, self.hi = code_range(bits, signed)
        self.step = nn.Parameter(torch.ones(max(channels, 1)))
        self.per_channel = channels > 0

    def _shape(self, x: torch.Tensor) -> torch.Tensor:
        return self.step.view(-1, *([1] * (x.dim() - 1))) if self.per_channel else self.step

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """LSQ's initial step from data: 2 * mean(|x|) / sqrt(Qp) (per channel for weights)."""
        dims = tuple(range(1, x.dim())) if self.per_channel else tuple(range(x.dim()))
        mean = x.abs().mean(dim=dims) if dims else x.abs()
        self.step.copy_((2 * mean / math.sqrt(self.hi)).clamp_min(1e-8).reshape(self.step.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x[0].numel() if self.per_channel else x.numel() / x.shape[0]
        s = grad_scale(self._shape(x), 1.0 / math.sqrt(n * self.hi))
        return round_half_up(torch.clamp(x / s, self.lo, self.hi)) * s

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The integer codes of x (float tensor of integers)."""
        return torch.floor(torch.clamp(x / self._shape(x), self.lo, self.hi) + 0.5)
