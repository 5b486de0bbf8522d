"""pix2pix networks: the U-Net generator and the 70x70 PatchGAN discriminator.

Architecture as in Isola et al. (2017) and the official code: the U-Net has ``depth``
down/up blocks with skip connections (``unet_256`` = depth 8 at 256x256), dropout 0.5 in the
three innermost decoder blocks as the noise z, and no norm on the outermost/innermost blocks.
The PatchGAN sees the pair (x, y) concatenated on channels. Weights are N(0, 0.02).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from akdray.config import RunConfig


def norm_layer(kind: str):
    """Normalisation factory; ``group`` is the Opacus-compatible choice for DP-SGD."""
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "group":
        return lambda channels: nn.GroupNorm(min(32, channels), channels)
    raise ValueError(f"unknown norm {kind!r}")


class UnetBlock(nn.Module):
    """One U-Net level: down -> (inner levels) -> up, output concatenated with the input."""

    def __init__(self, outer: int, inner: int, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        make_norm = norm_layer(norm)
        bias = norm != "batch"  # BatchNorm has its own affine shift
        in_ch = outer if in_ch is None else in_ch
        down = nn.Conv2d(in_ch, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [down, sub, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, make_norm(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, make_norm(inner), sub, nn.ReLU(True), up, make_norm(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if self.outermost else torch.cat([x, out], 1)


def dropout_levels(depth: int) -> range:
    """Decoder levels with dropout: the official 8x-wide, non-innermost ones (levels 4..depth-2,
    three of them in unet_256); below depth 6 there are none, so the level above the innermost
    one gets it, keeping pix2pix's noise z in small models."""
    return range(4, depth - 1) if depth >= 6 else range(depth - 2, depth - 1)


class UnetGenerator(nn.Module):
    """U-Net G(x) in [-1, 1]; ``depth`` downsamplings (the image side must be 2**depth or more)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, depth: int = 8, ngf: int = 64,
                 norm: str = "batch", use_dropout: bool = True):
        super().__init__()
        if depth < 2:
            raise ValueError(f"U-Net depth must be >= 2, got {depth}")
        # Level L (0 = outermost) maps width ngf*2**(L-1) -> ngf*2**L, capped at 8*ngf.
        width = lambda level: ngf * min(2 ** level, 8)  # noqa: E731
        block = UnetBlock(width(depth - 2), width(depth - 1), innermost=True, norm=norm)
        for level in range(depth - 2, 0, -1):
            block = UnetBlock(width(level - 1), width(level), sub=block, norm=norm,
                              dropout=use_dropout and level in dropout_levels(depth))
        self.model = UnetBlock(out_ch, ngf, in_ch=in_ch, sub=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN D(x, y): a grid of real/fake logits; 3 layers = 70x70 receptive field."""

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        make_norm = norm_layer(norm)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias), make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([x, y], 1))


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix init: conv weights N(0, gain), norm scales N(1, gain), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def build_generator(cfg: RunConfig, ngf: int | None = None) -> UnetGenerator:
    g = UnetGenerator(depth=cfg.resolved_unet_depth, ngf=ngf or cfg.ngf, norm=cfg.norm, use_dropout=cfg.use_dropout)
    init_weights(g)
    return g


def build_discriminator(cfg: RunConfig) -> PatchDiscriminator:
    d = PatchDiscriminator(ndf=cfg.ndf, n_layers=cfg.d_layers, norm=cfg.norm)
    init_weights(d)
    return d

