"""One evaluation for every method: attack (Eq. 3), proxy leakage, KID/NKID and the gap (Eq. 6).

The deployed model is seen only as ``serve``: uint8 inputs in, uint8 images out - what a user of
the API would get. Members are random training pairs and non-members test pairs, equal in number.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from akdray import metrics as quality
from akdray.attack import attack_sample, membership_metrics, reconstruction_loss
from akdray.config import RunConfig
from akdray.data.splits import PairedImages, Splits
from akdray.schema import SAMPLE_COLUMNS

Serve = Callable[[torch.Tensor], torch.Tensor]



def _scores(attack: str, role: str, pairs: PairedImages, loss: np.ndarray, member: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "attack": attack, "role": role, "name": list(pairs.names), "is_member": member,
        "loss": loss, "score": -loss,
    })


def _kid_set(pairs: PairedImages, cap: int) -> PairedImages:
    return pairs.subset(torch.arange(min(len(pairs), cap) if cap else len(pairs)))


def _quality(serve: Serve, pairs: PairedImages, key: str, cfg: RunConfig, device) -> dict:
    return quality.evaluate_quality(pairs.y, serve(pairs.x), real_key=key, subset_size=cfg.kid_subset_size,
                                    subsets=cfg.kid_subsets, seed=cfg.seed, device=device)


def evaluate(serve: Serve, splits: Splits, cfg: RunConfig, *, proxy_leakage: bool,
             device: torch.device | str = "cpu") -> tuple[dict, pd.DataFrame]:
    """All metrics of one deployed model and the per-image attack scores behind them."""
    members_idx, nonmembers_idx = attack_sample(len(splits.train), len(splits.test), cfg.attack_n_per_side, cfg.seed)
    members, nonmembers = splits.train.subset(members_idx), splits.test.subset(nonmembers_idx)
    loss_in = reconstruction_loss(serve(members.x), members.y)
    loss_out = reconstruction_loss(serve(nonmembers.x), nonmembers.y)
    row: dict = membership_metrics(loss_in, loss_out, "mia")
    row["train_l1"], row["test_l1"] = float(loss_in.mean()), float(loss_out.mean())
    frames = [_scores("mia", "train", members, loss_in, True), _scores("mia", "test", nonmembers, loss_out, False)]

    if proxy_leakage:  # Section V-B: proxy pairs (with their real labels) as members
        n = min(len(splits.proxy), len(nonmembers))
        pick = torch.randperm(len(splits.proxy), generator=torch.Generator().manual_seed(cfg.seed + 31))[:n].sort().values
        proxy = splits.proxy.subset(pick)
        loss_proxy = reconstruction_loss(serve(proxy.x), proxy.y)
        row.update(membership_metrics(loss_proxy, loss_out[:n], "proxy_mia"))
        frames += [_scores("proxy_mia", "proxy", proxy, loss_proxy, True),
                   _scores("proxy_mia", "test", nonmembers.subset(torch.arange(n)), loss_out[:n], False)]

    test_q = _quality(serve, _kid_set(splits.test, cfg.kid_max_images), f"{splits.key}-test", cfg, device)
    train_q = _quality(serve, _kid_set(splits.train, cfg.kid_max_images), f"{splits.key}-train", cfg, device)
    row.update(kid=test_q["kid"], kid_std=test_q["kid_std"], kid_max=test_q["kid_max"], nkid=test_q["nkid"],
               kid_subset_size_used=test_q["kid_subset_size"], kid_train=train_q["kid"], nkid_train=train_q["nkid"],
               gen_gap=quality.generalization_gap(train_q["nkid"], test_q["nkid"]))
    return row, pd.concat(frames, ignore_index=True)


def png_bytes(image: torch.Tensor) -> bytes:
    """uint8 [3, H, W] -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def sample_images(serve: Serve, test: PairedImages, n: int) -> pd.DataFrame:
    """The first ``n`` test images as PNG: input, ground truth and the model's output (Fig. 5/6)."""
    pairs = test.subset(torch.arange(min(n, len(test))))
    outputs = serve(pairs.x) if len(pairs) else pairs.y
    return pd.DataFrame({
        "name": list(pairs.names),
        "input_png": [png_bytes(t) for t in pairs.x],
        "target_png": [png_bytes(t) for t in pairs.y],
        "output_png": [png_bytes(t) for t in outputs],
    }, columns=list(SAMPLE_COLUMNS))
