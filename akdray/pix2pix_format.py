"""The official pix2pix generator file (junyanz/pytorch-CycleGAN-and-pix2pix): read it and write it.

The official code saves ``checkpoints/NAME/latest_net_G.pth`` as a bare ``state_dict`` of its
``UnetGenerator`` (``models/networks.py``). akdray's :class:`~akdray.models.UnetGenerator` has the
same module tree, so the keys are the same (``model.model.0.weight``, ``model.model.1.model.1.weight``,
...): this module infers the architecture from the keys and shapes, refuses files it cannot load
with a message naming the file and the problem, and writes akdray generators back in that layout
with a note of the official flags (``opt.txt``).

Layout of level L of a depth-d U-Net (L = 0 outermost), under the prefix ``model.model.`` for L = 0
and ``model.model.1.model.`` + ``3.model.`` * (L - 1) below it: outermost ``0`` down conv, ``1`` the
sub-block, ``3`` up conv (always with bias); middle ``1`` down conv, ``2`` norm, ``3`` sub-block,
``5`` up conv, ``6`` norm (``7`` dropout, no parameters); innermost ``1`` down conv, ``3`` up conv,
``4`` norm. Convolutions have a bias only with instance norm; BatchNorm carries weight, bias and
running statistics; the official instance norm (affine=False, track_running_stats=False) has none.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from akdray.config import ConfigError, RunConfig
from akdray.models import UnetGenerator

OFFICIAL_G_FILE = "latest_net_G.pth"
OPT_FILE = "opt.txt"
MIN_OFFICIAL_DEPTH = 5  # the official UnetGenerator always builds 4 fixed levels + the innermost one
NET_G_NAMES = {7: "unet_128", 8: "unet_256"}  # the U-Nets the official define_G knows by name
OUTER = "model.model."
# Buffers that pre-0.4 PyTorch stored for InstanceNorm; the official loader drops them (base_model.py).
STALE_INSTANCE_BUFFERS = (".running_mean", ".running_var", ".num_batches_tracked")


@dataclass(frozen=True)
class UnetArch:
    """What an official U-Net generator file implies: depth (``num_downs``), width and norm."""

    depth: int
    ngf: int
    norm: str  # batch | instance
    in_ch: int = 3
    out_ch: int = 3

    @property
    def net_g(self) -> str:
        return NET_G_NAMES.get(self.depth, f"unet with num_downs={self.depth} (no --netG name)")

    @property
    def min_image_size(self) -> int:
        return 2 ** self.depth


def level_prefix(level: int) -> str:
    """Key prefix of U-Net level ``level`` (0 = outermost) in the official module tree."""
    return OUTER if level == 0 else OUTER + "1.model." + "3.model." * (level - 1)


def official_dropout(depth: int, use_dropout: bool) -> bool:
    """The official U-Net has dropout in levels 4..depth-2, i.e. none at depth 5. akdray's own
    depth-5 network puts it one level up (models.dropout_levels), so an imported depth-5 file is
    built without dropout to compute what the official network computes."""
    return use_dropout and depth >= 6


def _refuse(file: Path, what: str) -> ConfigError:
    return ConfigError(f"checkpoint {file}: {what}")


def _describe_other(state: dict, file: Path) -> ConfigError:
    """The message for a state_dict that is not a U-Net generator: say what it looks like."""
    keys = list(state)
    if any(".conv_block." in k for k in keys):
        return _refuse(file, "is a ResNet generator (resnet_9blocks / resnet_6blocks); only U-Net generators "
                             "(unet_128, unet_256, ...) are supported yet")
    first = state.get("model.0.weight")
    if first is not None and first.dim() == 4 and not any(k.startswith(OUTER) for k in keys):
        return _refuse(file, f"looks like a PatchGAN discriminator (latest_net_D.pth: its first conv takes "
                             f"{first.shape[1]} channels, the pair (x, y)); give the generator file {OFFICIAL_G_FILE}")
    if any(k.startswith("net.") for k in keys):
        return _refuse(file, "looks like a pixel discriminator (netD pixel); give the generator file "
                             f"{OFFICIAL_G_FILE}")
    return _refuse(file, f"is not a pix2pix U-Net generator: key {OUTER}0.weight is missing "
                         f"(first keys: {', '.join(keys[:4])})")


def infer_arch(state: dict[str, torch.Tensor], file: Path) -> UnetArch:
    """Depth, ngf and norm from the keys and shapes of an official U-Net generator state_dict."""
    down = state.get(OUTER + "0.weight")
    if down is None:
        raise _describe_other(state, file)
    up = state.get(OUTER + "3.weight")
    if down.dim() != 4 or up is None or up.dim() != 4:
        raise _refuse(file, f"keys {OUTER}0.weight / {OUTER}3.weight are not the outermost U-Net convolutions")
    ngf, in_ch, out_ch = down.shape[0], down.shape[1], up.shape[1]
    innermost = 1
    while any(k.startswith(level_prefix(innermost) + "3.model.") for k in state):
        innermost += 1
    depth = innermost + 1
    if not any(k.startswith(level_prefix(1)) for k in state):
        raise _refuse(file, f"has no U-Net level below the outermost (no keys {level_prefix(1)}*)")
    conv_bias = OUTER + "0.bias" in state
    affine_norm = level_prefix(1) + "2.weight" in state
    if conv_bias and affine_norm:
        raise _refuse(file, "has convolution biases and affine norm layers: an instance norm with affine=True "
                            "is not an official pix2pix layout")
    if not conv_bias and not affine_norm:
        raise _refuse(file, "has no norm parameters and no convolution biases (--norm none); only --norm batch "
                            "and --norm instance are supported")
    if (in_ch, out_ch) != (3, 3):
        raise _refuse(file, f"maps {in_ch} to {out_ch} channels; only RGB to RGB (input_nc = output_nc = 3) is supported")
    if depth < MIN_OFFICIAL_DEPTH:
        raise _refuse(file, f"has {depth} U-Net levels; the official UnetGenerator has at least {MIN_OFFICIAL_DEPTH}")
    return UnetArch(depth=depth, ngf=ngf, norm="batch" if affine_norm else "instance", in_ch=in_ch, out_ch=out_ch)


def check_image_size(size: int, depth: int, file: Path | str) -> None:
    """A depth-d U-Net halves the image d times: the side must be a power of two >= 2**d (and >= 16)."""
    need = max(2 ** depth, 16)
    if size < need or size & (size - 1):
        name = NET_G_NAMES.get(depth, f"depth {depth}")
        raise ConfigError(f"checkpoint {file}: image size {size} does not fit this {depth}-level U-Net ({name}): "
                          f"it must be a power of two >= {need}")


def normalise_state(state: dict, file: Path) -> dict[str, torch.Tensor]:
    """Check the values are tensors; drop a DataParallel ``module.`` prefix (as a raw save of a
    wrapped net would have) and, for instance norm, the buffers pre-0.4 PyTorch stored for it."""
    if not isinstance(state, dict) or not state:
        raise _refuse(file, f"holds {type(state).__name__}, not a non-empty state_dict")
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise _refuse(file, f"entry {key!r} holds a {type(value).__name__} value, not a tensor: not a state_dict of a network")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if OUTER + "0.bias" in state:  # instance norm: no norm buffers in the official network today
        state = {k: v for k, v in state.items() if not k.endswith(STALE_INSTANCE_BUFFERS)}
    return state


def generator_from_official(state: dict, file: Path, image_size: int | None,
                            use_dropout: bool) -> tuple[UnetGenerator, RunConfig]:
    """Build and strictly load akdray's U-Net from an official state_dict; the config describes it.

    ``image_size`` defaults to 2**depth (``unet_256`` -> 256), the size the official net is named for.
    """
    state = normalise_state(state, file)
    arch = infer_arch(state, file)
    size = arch.min_image_size if image_size is None else image_size
    check_image_size(size, arch.depth, file)
    dropout = official_dropout(arch.depth, use_dropout)
    generator = UnetGenerator(depth=arch.depth, ngf=arch.ngf, norm=arch.norm, use_dropout=dropout)
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise _refuse(file, f"does not have the official {arch.net_g} layout (ngf {arch.ngf}, norm {arch.norm}): {detail}") from None
    unet_depth = 0 if 2 ** arch.depth == size else arch.depth
    cfg = RunConfig(image_size=size, ngf=arch.ngf, unet_depth=unet_depth, norm=arch.norm, use_dropout=dropout)
    return generator, cfg


def check_exportable(cfg: RunConfig) -> None:
    """Refuse a generator the official code cannot build (checked before training, by ``protect``)."""
    depth = cfg.resolved_unet_depth
    if cfg.norm not in ("batch", "instance"):
        raise ConfigError(f"norm {cfg.norm!r} (e.g. DP-SGD's GroupNorm) has no official pix2pix counterpart; "
                          "only batch and instance norm can be exported")
    if depth < MIN_OFFICIAL_DEPTH:
        raise ConfigError(f"a {depth}-level U-Net cannot be exported: the official UnetGenerator has at least "
                          f"{MIN_OFFICIAL_DEPTH} levels (image_size >= 32, unet_depth >= 5)")


def official_state_dict(generator: nn.Module, cfg: RunConfig) -> "OrderedDict[str, torch.Tensor]":
    """The generator's weights in the official layout (the same keys as akdray's own module tree)."""
    check_exportable(cfg)
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in generator.state_dict().items())


def official_options(cfg: RunConfig, inference_mode: str) -> str:
    """An ``opt.txt``-style note: the official flags that rebuild this generator, and how to run it."""
    depth = cfg.resolved_unet_depth
    net_g = NET_G_NAMES.get(depth)
    flags = {
        "netG": net_g or f"(none: add a netG for UnetGenerator(3, 3, {depth}, ngf) to models/networks.py define_G)",
        "ngf": cfg.ngf, "norm": cfg.norm, "no_dropout": not cfg.use_dropout, "input_nc": 3, "output_nc": 3,
        "load_size": cfg.image_size, "crop_size": cfg.image_size, "direction": cfg.direction,
        "model": "pix2pix", "dataset_mode": "aligned", "eval": inference_mode == "eval",
    }
    lines = ["----------------- Options ---------------"]
    lines += [f"{name:>25}: {value}" for name, value in flags.items()]
    lines.append("----------------- End -------------------")
    cmd = (f"python test.py --dataroot DATAROOT --name NAME --model pix2pix --netG {net_g or 'NETG'} --ngf {cfg.ngf} "
           f"--norm {cfg.norm} --direction {cfg.direction} --load_size {cfg.image_size} --crop_size {cfg.image_size}"
           + (" --no_dropout" if not cfg.use_dropout else "") + (" --eval" if inference_mode == "eval" else ""))
    lines += ["", "# Put latest_net_G.pth in checkpoints/NAME/ and run, from the official repository:", f"# {cmd}",
              f"# inference mode {inference_mode}: " + ("--eval uses BatchNorm running statistics, dropout off"
                                                         if inference_mode == "eval" else
                                                         "no --eval: batch statistics and dropout on, batch 1")]
    if cfg.use_dropout and depth == MIN_OFFICIAL_DEPTH:
        lines.append("# note: at depth 5 akdray has one dropout layer (level 3) that the official network lacks; "
                     "outputs agree with --eval only")
    return "\n".join(lines) + "\n"


def write_official(folder: Path, generator: nn.Module, cfg: RunConfig, inference_mode: str) -> None:
    """Write ``latest_net_G.pth`` and ``opt.txt`` into an existing folder (the caller makes it atomic)."""
    state = official_state_dict(generator, cfg)
    torch.save(state, folder / OFFICIAL_G_FILE)
    (folder / OPT_FILE).write_text(official_options(cfg, inference_mode))
