"""Tiny untrained checkpoints and aligned folders for tests/test_refusals_*.py (nothing is trained)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from akdray.cli import main
from akdray.config import RunConfig
from akdray.models import build_generator
from akdray.pix2pix_format import official_state_dict
from akdray.sweep import cli as pareto
from akdray.testing import TINY, write_aligned_folder

T16 = RunConfig(**{**TINY, "preset": "tiny"})
T32 = T16.replace(image_size=32)


def write_ckpt(folder: Path, cfg: RunConfig, seed: int = 0, tamper=None) -> Path:
    """An akdray run folder holding an untrained generator's ``checkpoint.pt`` (weights optionally tampered)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in build_generator(cfg).state_dict().items()}
    if tamper:
        tamper(state)
    torch.save({"config": cfg.to_dict(), "generator": state}, folder / "checkpoint.pt")
    return folder


def write_official(folder: Path, cfg: RunConfig = T32, tamper=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    state = official_state_dict(build_generator(cfg), cfg)
    if tamper:
        tamper(state)
    torch.save(state, folder / "latest_net_G.pth")
    return folder / "latest_net_G.pth"


def first_float(state) -> str:
    return next(k for k, v in state.items() if v.is_floating_point())


TAMPER = {
    "nan": lambda s: s[first_float(s)].view(-1).__setitem__(0, float("nan")),
    "inf": lambda s: s[first_float(s)].view(-1).__setitem__(0, float("-inf")),
    "int": lambda s: s.__setitem__(first_float(s), s[first_float(s)].to(torch.int64)),
    "complex": lambda s: s.__setitem__(first_float(s), s[first_float(s)].to(torch.complex64)),
}


def write_pairs(folder: Path, n: int, width: int, height: int, seed: int = 0, start: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def aligned(root: Path, size: int = 16, train: int = 16, val: int = 12, test: int = 16) -> Path:
    return write_aligned_folder(root, {k: n for k, n in (("train", train), ("val", val), ("test", test)) if n}, size=size)


def every_file(root: Path, cfg: RunConfig = T16) -> RunConfig:
    """A config that audits every file of ``root`` (an akdray target whose own data is that folder)."""
    return cfg.replace(data_source="aligned", data_root=str(root), n_train=0, n_test=0, proxy_pool_size=0,
                       proxy_size=2, n_val=0)


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``akdray ARGV`` run in this process."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sweep(argv, capsys) -> tuple[int, str, str]:
    """``sweeps/pareto.py ARGV`` in this process: (exit code, stdout, stderr). Past the refusals a real
    sweep would start: it is pointed at an address nothing serves, so it fails at once instead."""
    if "--dry-run" not in argv:
        argv = [*argv, "--address", "127.0.0.1:1"]
    try:
        code = pareto.main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
