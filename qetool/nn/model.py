"""The torch model of an arch.json: the same layers, geometry, bits and head as the compiler
(qetool.arch.layers and the tensor table), with LSQ fake quantization: weights per output
channel, one quantizer per activation tensor (the one its producer writes), the fixed image
quantizer (docs/arithmetic.md, input). Inputs are image codes (N, C, H, W), as on the device.

`to_checkpoint` writes the weights file (docs/formats.md) with the codes torch computes, so
nothing is rounded twice.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qetool import arch as A
from qetool.checkpoint import Checkpoint, ConvWeights, HeadWeights
from qetool.compiler.lower import round_half_up as round_float
from qetool.compiler.lower import tensor_step
from qetool.nn.lsq import Quantizer
from qetool.preprocess import image_step


def _key(layer_id: str) -> str:
    return layer_id.replace(".", "_")


class QConv(nn.Module):
    """conv (no bias) with per-channel LSQ weights, then BatchNorm."""

    def __init__(self, layer: A.Layer):
        super().__init__()
        groups = layer.cin if layer.depthwise else 1
        self.layer = layer
        self.conv = nn.Conv2d(layer.cin, layer.cout, layer.kernel, layer.stride, 0, groups=groups, bias=False)
        self.wq = Quantizer(layer.bits_w, True, layer.cout)
        self.bn = nn.BatchNorm2d(layer.cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, left, r = self.layer.pad
        x = F.pad(x, (left, r, t, b))  # code 0 = real 0 at the borders
        w = self.wq(self.conv.weight)
        return self.bn(F.conv2d(x, w, None, self.conv.stride, 0, 1, self.conv.groups))


class QENet(nn.Module):
    """The whole network; forward(image codes) -> dequantized int8 logits."""

    def __init__(self, arch: A.Arch):
        super().__init__()
        self.arch = arch
        self.layers = A.layers(arch)
        ts = A.tensors(arch)
        self.image_bits = ts["image"].bits
        self.convs = nn.ModuleDict({_key(l.id): QConv(l) for l in self.layers[:-1]})
        self.acts = nn.ModuleDict({_key(l.id): Quantizer(ts[l.id].bits, ts[l.id].signed)
                                   for l in self.layers})
        head = self.layers[-1]
        self.fc = nn.Linear(head.cin, head.cout)
        self.fcq = Quantizer(A.HEAD_BITS, True, head.cout)

    def layer_out(self, layer: A.Layer, x: torch.Tensor, res: torch.Tensor | None) -> torch.Tensor:
        """One layer's real output before its tensor's quantizer (x, res: dequantized)."""
        if layer.op == "head":
            return F.linear(x.mean(dim=(2, 3)), self.fcq(self.fc.weight), self.fc.bias)
        y = self.convs[_key(layer.id)](x)
        if layer.relu6:
            return torch.clamp(y, 0.0, 6.0)
        return y + res if res is not None else y

    def forward(self, codes: torch.Tensor, calibrate: bool = False) -> torch.Tensor:
        """Image codes (N, C, H, W) -> logits. With `calibrate`, every quantizer's step is first
        initialised from this batch (LSQ's data initialisation)."""
        t = {"image": codes * image_step(self.image_bits)}
        for layer in self.layers:
            if calibrate and layer.op != "head":
                self.convs[_key(layer.id)].wq.init_from(self.convs[_key(layer.id)].conv.weight)
            elif calibrate:
                self.fcq.init_from(self.fc.weight)
            y = self.layer_out(layer, t[layer.input], t.get(layer.residual) if layer.residual else None)
            q = self.acts[_key(layer.id)]
            if calibrate:
                q.init_from(y)
            t[layer.id] = q(y)
        return t["head"]

    @torch.no_grad()
    def layer_codes(self, layer_id: str, x_codes: np.ndarray, res_codes: np.ndarray | None,
                    ck: Checkpoint) -> np.ndarray:
        """One layer in eval mode fed input codes (H, W, C, as the golden model holds them):
        its output codes (H, W, C), or the logit codes for the head."""
        layer = next(l for l in self.layers if l.id == layer_id)
        ts = A.tensors(self.arch)

        def real(codes: np.ndarray, name: str) -> torch.Tensor:
            step = tensor_step(ck, name, ts[name].bits)
            return torch.from_numpy(codes.astype(np.float32)).permute(2, 0, 1)[None] * step

        res = real(res_codes, layer.residual) if layer.residual else None
        y = self.layer_out(layer, real(x_codes, layer.input), res)
        codes = self.acts[_key(layer_id)].codes(y)
        return (codes[0] if layer.op == "head" else codes[0].permute(1, 2, 0)).numpy().astype(np.int32)

    @classmethod
    @torch.no_grad()
    def from_checkpoint(cls, ck: Checkpoint) -> "QENet":
        """The network of a weights file (latent weights = codes * steps), in eval mode."""
        net = cls(ck.arch)
        for layer in net.layers[:-1]:
            m, c = net.convs[_key(layer.id)], ck.convs[layer.id]
            m.wq.step.copy_(torch.from_numpy(c.w_step))
            m.conv.weight.copy_(torch.from_numpy(c.w.astype(np.float32)) * m.wq._shape(m.conv.weight))
            m.bn.weight.copy_(torch.from_numpy(c.bn_gamma))
            m.bn.bias.copy_(torch.from_numpy(c.bn_beta))
            m.bn.running_mean.copy_(torch.from_numpy(c.bn_mean))
            m.bn.running_var.copy_(torch.from_numpy(c.bn_var))
            m.bn.eps = c.bn_eps
        net.fcq.step.copy_(torch.from_numpy(ck.head.w_step))
        net.fc.weight.copy_(torch.from_numpy(ck.head.w.astype(np.float32)) * net.fcq._shape(net.fc.weight))
        net.fc.bias.copy_(torch.from_numpy(ck.head.bias))
        for layer in net.layers:
            net.acts[_key(layer.id)].step.fill_(ck.steps[layer.id])
        return net.eval()

    @torch.no_grad()
    def to_checkpoint(self) -> Checkpoint:
        """The weights file's content: torch's own codes, steps and BatchNorm statistics."""
        convs = {}
        for layer in self.layers[:-1]:
            m = self.convs[_key(layer.id)]
            convs[layer.id] = ConvWeights(
                w=m.wq.codes(m.conv.weight).numpy().astype(np.int8),
                w_step=m.wq.step.numpy().astype(np.float32),
                bn_gamma=m.bn.weight.numpy().astype(np.float32), bn_beta=m.bn.bias.numpy().astype(np.float32),
                bn_mean=m.bn.running_mean.numpy().astype(np.float32),
                bn_var=m.bn.running_var.numpy().astype(np.float32), bn_eps=m.bn.eps)
        head = HeadWeights(self.fcq.codes(self.fc.weight).numpy().astype(np.int8),
                           self.fcq.step.numpy().astype(np.float32),
                           self.fc.bias.numpy().astype(np.float32))
        steps = {l.id: float(self.acts[_key(l.id)].step.item()) for l in self.layers}
        clamps = {l.id: min(self.acts[_key(l.id)].hi, round_float(6.0 / steps[l.id]))
                  for l in self.layers if l.relu6}
        return Checkpoint(self.arch, convs, head, steps, clamps)
