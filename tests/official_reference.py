"""An independent statement of the official pix2pix U-Net, for tests only (not akdray's class).

Written from the structure of junyanz/pytorch-CycleGAN-and-pix2pix ``models/networks.py``
(``UnetGenerator`` / ``UnetSkipConnectionBlock`` / ``get_norm_layer``, current master): levels from
the outermost in, with widths (output_nc, ngf), (ngf, 2ngf), (2ngf, 4ngf), (4ngf, 8ngf), then
(8ngf, 8ngf) down to the innermost; module order per block (down..., submodule, up...); a conv
bias only with instance norm (the outermost up-conv always has one); instance norm with
affine=False, track_running_stats=False; dropout 0.5 after the up-norm of the ``num_downs - 5``
blocks right above the innermost. If akdray's own layout drifts, tests built on this fail.
"""
from __future__ import annotations

import functools

import torch
from torch import nn


def _norm(kind: str):
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


class _Level(nn.Module):
    def __init__(self, layers: list[nn.Module], skip: bool):
        super().__init__()
        self.skip = skip
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return torch.cat([x, self.model(x)], 1) if self.skip else self.model(x)


class OfficialUnet(nn.Module):
    """``UnetGenerator(3, 3, num_downs, ngf, norm_layer=get_norm_layer(norm), use_dropout=use_dropout)``."""

    def __init__(self, num_downs: int, ngf: int, norm: str = "batch", use_dropout: bool = True):
        super().__init__()
        norm_layer, bias = _norm(norm), norm == "instance"
        widths = [(3, ngf), (ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)]
        widths += [(8 * ngf, 8 * ngf)] * (num_downs - 4)
        sub = None
        for level in reversed(range(num_downs)):
            outer, inner = widths[level]
            if level == num_downs - 1:  # innermost: no submodule, no down-norm
                layers = [nn.LeakyReLU(0.2, True), nn.Conv2d(outer, inner, 4, 2, 1, bias=bias), nn.ReLU(True),
                          nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), norm_layer(outer)]
            elif level == 0:  # outermost: 3 input channels, tanh, up-conv with bias
                layers = [nn.Conv2d(3, inner, 4, 2, 1, bias=bias), sub, nn.ReLU(True),
                          nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.LeakyReLU(0.2, True), nn.Conv2d(outer, inner, 4, 2, 1, bias=bias), norm_layer(inner), sub,
                          nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), norm_layer(outer)]
                if use_dropout and level >= 4:  # the num_downs - 5 blocks of the official loop
                    layers.append(nn.Dropout(0.5))
            sub = _Level(layers, skip=level != 0)
        self.model = sub

    def forward(self, x):
        return self.model(x)


def official_state(num_downs: int, ngf: int, norm: str = "batch", seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with the official keys and shapes and random (seeded) values, as a user's file has."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in OfficialUnet(num_downs, ngf, norm).state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = torch.randn(value.shape, generator=gen) * 0.1
        elif value.dim() == 1:  # BatchNorm weight
            state[key] = 1.0 + torch.randn(value.shape, generator=gen) * 0.1
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.05
    return state
