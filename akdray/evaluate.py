"""One evaluation for every method: the attack suite (loss Eq. 3, cal, lira), proxy leakage,
KID/NKID and the gap (Eq. 6).

The deployed model is seen only as ``serve``: uint8 inputs in, uint8 images out - what a user of
the API would get. So are the K reference models. Members are the training pairs, non-members the
test pairs (all of them by default; see :func:`akdray.attacks.suite.audit_sample`).
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from akdray import metrics as quality
from akdray.attacks.signals import Serve, model_losses, reference_losses
from akdray.attacks.suite import audit_sample, membership_row, run_attacks, scores_frame
from akdray.config import RunConfig
from akdray.data.splits import PairedImages, Splits
from akdray.schema import SAMPLE_COLUMNS


def _kid_set(pairs: PairedImages, cap: int) -> PairedImages:
    return pairs.subset(torch.arange(min(len(pairs), cap) if cap else len(pairs)))


def _quality(serve: Serve, pairs: PairedImages, key: str, cfg: RunConfig, device) -> dict:
    return quality.evaluate_quality(pairs.y, serve(pairs.x), real_key=key, subset_size=cfg.kid_subset_size,
                                    subsets=cfg.kid_subsets, seed=cfg.seed, device=device)


def audit(serve: Serve, references: Sequence[Serve], members: PairedImages, nonmembers: PairedImages,
          cfg: RunConfig) -> tuple[dict, pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The attack suite on one target: row columns, per-image scores, and the target's losses."""
    loss_in, loss_out = model_losses(serve, members.x, members.y), model_losses(serve, nonmembers.x, nonmembers.y)
    refs_in = reference_losses(references, members.x, members.y)
    refs_out = reference_losses(references, nonmembers.x, nonmembers.y)
    row, scores = run_attacks(loss_in, loss_out, refs_in, refs_out, n_boot=cfg.attack_bootstrap, seed=cfg.seed)
    n_in, n_out = len(members), len(nonmembers)
    frame = scores_frame(scores, np.r_[loss_in, loss_out], [*members.names, *nonmembers.names],
                         ["train"] * n_in + ["test"] * n_out, np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)])
    return row, frame, (loss_in, loss_out)


def evaluate(serve: Serve, splits: Splits, cfg: RunConfig, *, proxy_leakage: bool, references: Sequence[Serve] = (),
             quality_metrics: bool = True, device: torch.device | str = "cpu") -> tuple[dict, pd.DataFrame]:
    """All metrics of one deployed model and the per-image attack scores behind them."""
    members_idx, nonmembers_idx = audit_sample(len(splits.train), len(splits.test), cfg.attack_n_per_side, cfg.seed)
    members, nonmembers = splits.train.subset(members_idx), splits.test.subset(nonmembers_idx)
    row, scores, (loss_in, loss_out) = audit(serve, references, members, nonmembers, cfg)
    row["train_l1"], row["test_l1"] = float(loss_in.mean()), float(loss_out.mean())
    frames = [scores]

    if proxy_leakage:  # Section V-B: proxy pairs (with their real labels) as members, loss attack
        n = min(len(splits.proxy), len(nonmembers))
        pick = torch.randperm(len(splits.proxy), generator=torch.Generator().manual_seed(cfg.seed + 31))[:n].sort().values
        proxy = splits.proxy.subset(pick)
        loss_proxy = model_losses(serve, proxy.x, proxy.y)
        labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        row.update(membership_row(labels, -np.r_[loss_proxy, loss_out[:n]], "proxy_mia", n_boot=cfg.attack_bootstrap,
                                  seed=cfg.seed), proxy_mia_n_members=float(n), proxy_mia_n_nonmembers=float(n))
        frames.append(scores_frame({"proxy_mia": -np.r_[loss_proxy, loss_out[:n]]}, np.r_[loss_proxy, loss_out[:n]],
                                   [*proxy.names, *nonmembers.names[:n]], ["proxy"] * n + ["test"] * n, labels))

    if quality_metrics:
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
