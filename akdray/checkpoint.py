"""Checkpoints: akdray's own (a generator ``state_dict`` plus the run's config) and official pix2pix
generator files, both read by :func:`load_generator` with ``weights_only=True``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from akdray.config import ConfigError, RunConfig, from_dict
from akdray.models import build_generator
from akdray.pix2pix_format import OFFICIAL_G_FILE, generator_from_official

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that define the teacher's private training set: a student or baseline evaluated
# against a teacher must see the same members, or the attack would measure the wrong thing.
DATA_IDENTITY_FIELDS = ("data_source", "data_root", "direction", "train_split", "data_seed", "image_size", "n_train")


def save_generator(path: Path, generator: nn.Module, cfg: RunConfig) -> None:
    torch.save({"config": cfg.to_dict(), "generator": generator.state_dict()}, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory or a checkpoint file -> the checkpoint file (error names the path)."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise ConfigError(f"checkpoint {p} does not exist (give a run directory, its {CHECKPOINT_NAME}, "
                          f"or an official pix2pix {OFFICIAL_G_FILE})")
    return p


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator read from disk. ``cfg`` is the run's config (``format="akdray"``) or, for an
    official pix2pix file (``format="pix2pix"``), a config whose architecture fields (image_size,
    ngf, unet_depth, norm, use_dropout) describe the network and whose other fields mean nothing."""

    generator: nn.Module
    cfg: RunConfig
    format: str  # akdray | pix2pix
    file: Path


def _read(file: Path):
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle is a bad file, reported by name
        first = (str(exc).splitlines() or [""])[0][:300]
        raise ConfigError(f"checkpoint {file} cannot be read as a PyTorch file with weights_only=True "
                          f"(truncated, corrupt or not tensors): {type(exc).__name__}: {first}") from None


def check_finite_weights(state: dict, file: Path) -> None:
    """Every weight a floating-point tensor of finite values (integer only for BatchNorm's step counter).

    A NaN or infinite weight makes every output NaN (translate writes black or grey PNGs, an audit
    reports a leak of garbage, a Gauss run on it "succeeds"); an integer or complex tensor would be
    cast silently by ``load_state_dict``. Refused at load time, naming the first bad entry."""
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        if key.endswith("num_batches_tracked") and not value.is_floating_point() and not value.is_complex():
            continue
        if not value.is_floating_point():
            raise ConfigError(f"checkpoint {file}: weight {key!r} is a {str(value.dtype).replace('torch.', '')} tensor, "
                              "not floating point: not a trained generator's weights")
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ConfigError(f"checkpoint {file}: weight {key!r} holds {bad} non-finite value(s) (NaN or inf): "
                              "the model diverged or the file is damaged")


def load_generator(path: str | Path, *, image_size: int | None = None, use_dropout: bool = True) -> LoadedGenerator:
    """Read a generator: akdray's ``checkpoint.pt`` (rebuilt from its own config) or an official
    pix2pix ``latest_net_G.pth`` (architecture inferred from its keys; ``image_size`` defaults to
    2**depth and ``use_dropout`` to the official default, on). Both load strictly, weights_only."""
    file = resolve_checkpoint(path)
    blob = _read(file)
    if not (isinstance(blob, dict) and "config" in blob and "generator" in blob):
        if isinstance(blob, dict):
            check_finite_weights(blob, file)
        generator, cfg = generator_from_official(blob, file, image_size, use_dropout)
        return LoadedGenerator(generator, cfg, "pix2pix", file)
    try:
        cfg = from_dict(blob["config"])
        state = blob["generator"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"checkpoint {file} is not an akdray checkpoint: {exc}") from None
    if isinstance(state, dict):
        check_finite_weights(state, file)
    generator = build_generator(cfg)
    try:
        generator.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"checkpoint {file} does not match the architecture its config describes: {first}") from None
    return LoadedGenerator(generator, cfg, "akdray", file)


def data_identity(cfg: RunConfig, name: str):
    """A data-identity field's effective value: ``data_seed`` resolved (-1 follows ``seed``)."""
    return cfg.resolved_data_seed if name == "data_seed" else getattr(cfg, name)


def check_teacher_compatible(cfg: RunConfig, teacher_cfg: RunConfig, file: str) -> None:
    """The teacher must have been trained on this run's private data at this image size, and be a deployed
    model (a ``reference`` run is a shadow model of the audit, never a teacher)."""
    if teacher_cfg.method == "reference":
        raise ConfigError(f"teacher checkpoint {file} is a 'reference' run (a shadow model for the calibrated attacks), "
                          "not a teacher; give a teacher run")
    for name in DATA_IDENTITY_FIELDS:
        mine, theirs = data_identity(cfg, name), data_identity(teacher_cfg, name)
        if mine != theirs:
            raise ConfigError(f"teacher checkpoint {file}: field {name!r} is {theirs!r} in the teacher "
                              f"but {mine!r} in this run (the teacher must match this run's data and image size)")
