"""Fixtures for bench_refusals.py, built by the tree under test (run as ``python refusal_fixtures.py WORK``
with PYTHONPATH=TREE): tiny untrained checkpoints (akdray and official), aligned folders with the
defects the cases need, reference runs and stored sweeps. Nothing is trained.

Only APIs both the issue's base commit (7ce18b6) and later trees have are used.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import akdray
from akdray.config import RunConfig
from akdray.models import build_generator
from akdray.pix2pix_format import official_state_dict
from akdray.testing import png_header_only, write_aligned_folder

TINY = dict(image_size=16, ngf=8, ndf=8, d_layers=2, n_train=16, proxy_pool_size=12, proxy_size=8, n_test=16,
            epochs=1, distill_epochs=1, batch_size=4, kid_subset_size=8, kid_subsets=10, kid_max_images=8, n_val=8,
            device="cpu", preset="tiny")


def ckpt(path: Path, cfg: RunConfig, seed: int = 0, tamper=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    G = build_generator(cfg)
    state = G.state_dict()
    if tamper:
        state = {k: v.clone() for k, v in state.items()}
        tamper(state)
    torch.save({"config": cfg.to_dict(), "generator": state}, path / "checkpoint.pt")
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    return path


def official(path: Path, cfg: RunConfig, tamper=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    state = official_state_dict(build_generator(cfg), cfg)
    if tamper:
        tamper(state)
    torch.save(state, path / "latest_net_G.pth")
    return path / "latest_net_G.pth"


def first_weight(state) -> str:
    return next(k for k, v in state.items() if v.is_floating_point())


def set_nan(state):
    state[first_weight(state)].view(-1)[0] = float("nan")


def set_inf(state):
    state[first_weight(state)].view(-1)[0] = float("inf")


def to_int(state):
    k = first_weight(state)
    state[k] = (state[k] * 100).to(torch.int64)


def to_complex(state):
    k = first_weight(state)
    state[k] = state[k].to(torch.complex64)


def pairs(folder: Path, n: int, w: int, h: int, seed: int, start: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def build(work: Path) -> None:
    t16 = RunConfig(**TINY)
    t32 = RunConfig(**{**TINY, "image_size": 32})
    ckpt(work / "t16", t16)
    ckpt(work / "t32", t32)
    ckpt(work / "t16cpu", RunConfig(**{**TINY, "n_train": 200, "n_test": 1000, "proxy_pool_size": 400,
                                       "proxy_size": 100, "preset": "cpu-small"}))
    for name, fn in (("nan", set_nan), ("inf", set_inf), ("int", to_int), ("complex", to_complex)):
        ckpt(work / f"t32{name}", t32, tamper=fn)
        official(work / f"off{name}", t32, tamper=fn)
    official(work / "off", t32)
    for k in range(3):
        ckpt(work / f"ref{k}", t16.replace(method="reference", seed=10_000 * (k + 1), data_seed=0), seed=10 + k)
    ckpt(work / "refflat", t16.replace(method="reference", seed=10_000, data_seed=0, synthetic_style="flat"), seed=20)
    data = write_aligned_folder(work / "d16", {"train": 16, "val": 12, "test": 16}, size=16)
    ckpt(work / "refmem", t16.replace(method="reference", seed=10_000, data_seed=0, data_source="aligned",
                                      data_root=str(data), n_train=0, proxy_pool_size=0, proxy_size=0, n_test=0,
                                      n_val=0, proxy_split="train"), seed=30)
    ckpt(work / "refmem2", t16.replace(method="reference", seed=20_000, data_seed=0, data_source="aligned",
                                       data_root=str(data), n_train=0, proxy_pool_size=0, proxy_size=0, n_test=0,
                                       n_val=0, proxy_split="train"), seed=31)
    ckpt(work / "t16all", t16.replace(data_source="aligned", data_root=str(data), n_train=0, n_test=0,
                                      proxy_pool_size=0, proxy_size=2, n_val=0))  # audits every file of --data
    write_aligned_folder(work / "d32", {"train": 12, "val": 8, "test": 12}, size=32)
    write_aligned_folder(work / "d16noval", {"train": 16, "test": 16}, size=16)
    write_aligned_folder(work / "one", {"train": 1, "val": 12, "test": 1}, size=16)
    write_aligned_folder(work / "two", {"train": 3, "val": 12, "test": 3}, size=16)
    mixed = write_aligned_folder(work / "mixedtest", {"train": 16, "val": 12, "test": 0}, size=16)
    pairs(mixed / "test", 16, 64, 32, seed=5)  # test pairs of another size
    aspect = write_aligned_folder(work / "aspect", {"train": 16, "val": 12, "test": 0}, size=16)
    pairs(aspect / "test", 16, 64, 16, seed=6)  # 32x16 halves: another aspect ratio
    firstok = write_aligned_folder(work / "firstok", {"train": 1, "val": 12, "test": 16}, size=16)
    pairs(firstok / "train", 15, 64, 32, seed=7, start=1)  # only the first train file has the model's size
    m32 = write_aligned_folder(work / "mixed32", {"train": 12, "val": 8, "test": 0}, size=32)
    pairs(m32 / "test", 12, 128, 64, seed=8)
    nonutf = write_aligned_folder(work / "nonutf8", {"train": 16, "val": 12, "test": 16}, size=16)
    os.rename(nonutf / "test" / "003.png", os.fsencode(nonutf / "test") + b"/\xff\xfe.png")
    g16 = work / "gray16"
    for split, n, seed in (("train", 16, 1), ("val", 12, 3), ("test", 16, 2)):
        (g16 / split).mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(n):
            Image.fromarray(rng.integers(0, 65535, (16, 32), dtype=np.uint16)).save(
                g16 / split / f"{i:03d}.png")
    sq = work / "square"
    pairs(sq, 4, 16, 16, seed=9)
    bomb = write_aligned_folder(work / "bomb", {"train": 16, "val": 12, "test": 16}, size=16)
    png_header_only(bomb / "test" / "000.png", 9_000, 9_000)
    (work / "file").write_text("x")
    (work / "empty").mkdir()
    (work / "notimg").mkdir()
    (work / "notimg" / "a.png").write_text("not a png")
    os.symlink(work / "nowhere", work / "dangling")
    os.symlink(work / "empty", work / "linkdir")
    sweeps = work / "sweeps"
    for name, patch in (("corrupt", None), ("abc", {"seeds": "abc"}), ("cpux", {"cpus_per_trial": "x"}),
                        ("ns", {"num_samples": {"akd": "x", "dmp": 1, "dpsgd": 1, "gauss": 1}}),
                        ("dupdef", {"defenses": ["akd", "akd"]}), ("ok", {})):
        (sweeps / name).mkdir(parents=True)
        spec = {"name": name, "storage": str(sweeps), "preset": "tiny", "seeds": 1, "sweep_id": f"{name}-x"}
        text = "{not json" if patch is None else json.dumps({**spec, **patch})
        (sweeps / name / "sweep.json").write_text(text)
    print(f"fixtures by {akdray.__file__}")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
