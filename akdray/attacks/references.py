"""Models under audit and their reference models, each loaded behind one function.

* :func:`load_target` - the generator to audit. Today: akdray checkpoints (a run folder or its
  ``checkpoint.pt``). Foreign checkpoints (e.g. official pix2pix weights) plug in here, nowhere else.
* :func:`load_references` - the K reference models of a run (``RunConfig.reference_checkpoints``),
  refused unless each is a ``reference`` run on the same data (source, folder, direction, image
  size and - for synthetic data - the same draw ``resolved_data_seed``), so that none of them saw
  an audited image.

Why the evaluating run loads the reference checkpoints (rather than each reference run writing
its losses): the audited images depend on the target (its members), the inference mode on the
evaluating run, and ``akdray audit`` must work on any data folder; serving K small generators on
the audit images costs seconds, far less than training them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from akdray.attacks.signals import Serve
from akdray.checkpoint import data_identity, load_generator
from akdray.config import ConfigError, RunConfig
from akdray.metrics.features import to_uint8
from akdray.train import generate

# The data a reference model must share with the run it calibrates (n_train and the split may differ).
REFERENCE_IDENTITY_FIELDS = ("data_source", "data_root", "direction", "image_size", "data_seed")


def serve_generator(G: nn.Module, cfg: RunConfig, device: torch.device | str) -> Serve:
    """The black box an attacker queries: uint8 inputs in, uint8 outputs of ``G`` in ``cfg``'s inference mode."""
    return lambda x: to_uint8(generate(G, x, cfg.inference_mode, device=device, batch_size=cfg.eval_batch_size))


def load_target(path: str | Path) -> tuple[nn.Module, RunConfig]:
    """The generator to audit and its config (akdray checkpoints; the loader also reads official files)."""
    loaded = load_generator(path)
    return loaded.generator, loaded.cfg


def check_reference(cfg: RunConfig, ref_cfg: RunConfig, file: str) -> None:
    if ref_cfg.method != "reference":
        raise ConfigError(f"reference checkpoint {file} is a {ref_cfg.method!r} run, not a 'reference' run "
                          "(a reference model must never have seen the audited images)")
    for name in REFERENCE_IDENTITY_FIELDS:
        mine, theirs = data_identity(cfg, name), data_identity(ref_cfg, name)
        if mine != theirs:
            raise ConfigError(f"reference checkpoint {file}: field {name!r} is {theirs!r} in the reference model "
                              f"but {mine!r} in this run (references must be trained on the same data)")


def load_references(cfg: RunConfig, paths: Sequence[str] | None = None) -> list[tuple[nn.Module, RunConfig]]:
    """Load and check the reference models named by ``paths`` (default ``cfg.reference_list``)."""
    out = []
    for path in cfg.reference_list if paths is None else paths:
        try:
            loaded = load_generator(path)
        except ConfigError as exc:
            raise ConfigError(f"reference model: {exc}".replace("teacher checkpoint", "checkpoint")) from None
        if loaded.format != "akdray":
            raise ConfigError(f"reference checkpoint {loaded.file} is an official pix2pix file; reference models "
                              "must be akdray 'reference' runs (their training data is what makes them references)")
        check_reference(cfg, loaded.cfg, str(loaded.file))
        out.append((loaded.generator, loaded.cfg))
    return out
