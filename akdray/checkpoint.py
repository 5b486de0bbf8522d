"""Checkpoints: a plain generator ``state_dict`` plus the run's config, loaded with weights_only."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from akdray.config import ConfigError, RunConfig, from_dict
from akdray.models import build_generator

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
        raise ConfigError(f"teacher checkpoint {p} does not exist (give a teacher run directory or its {CHECKPOINT_NAME})")
    return p


def load_generator(path: str | Path) -> tuple[nn.Module, RunConfig]:
    """Rebuild the generator from the checkpoint's own config and load its weights strictly."""
    file = resolve_checkpoint(path)
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
        cfg = from_dict(blob["config"])
        state = blob["generator"]
    except (KeyError, TypeError, RuntimeError, ValueError, EOFError) as exc:
        raise ConfigError(f"teacher checkpoint {file} is not an akdray checkpoint: {exc}") from None
    generator = build_generator(cfg)
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"teacher checkpoint {file} does not match the architecture its config describes: {first}") from None
    return generator, cfg


def data_identity(cfg: RunConfig, name: str):
    """A data-identity field's effective value: ``data_seed`` resolved (-1 follows ``seed``)."""
    return cfg.resolved_data_seed if name == "data_seed" else getattr(cfg, name)


def check_teacher_compatible(cfg: RunConfig, teacher_cfg: RunConfig, file: str) -> None:
    """The teacher must have been trained on this run's private data at this image size."""
    for name in DATA_IDENTITY_FIELDS:
        mine, theirs = data_identity(cfg, name), data_identity(teacher_cfg, name)
        if mine != theirs:
            raise ConfigError(f"teacher checkpoint {file}: field {name!r} is {theirs!r} in the teacher "
                              f"but {mine!r} in this run (the teacher must match this run's data and image size)")
