"""One evaluation for every method: the attack suite (:mod:`akdray.attacks.registry`), proxy leakage,
KID/NKID and the gap (Eq. 6).

The deployed model is seen only as ``serve``: uint8 inputs in, uint8 images out - what a user of
the API would get. So are the K reference models. Members are the training pairs, non-members the
test pairs (all of them by default; see :func:`akdray.attacks.suite.audit_sample`).

With a validation set (``n_val > 0``) the validation block audits half of the members (a seeded
permutation, :func:`member_halves`) against the validation non-members (columns ``val_*``, the
search objectives ``val_leak`` and ``val_nkid``); ``eval_split="val"`` (a search trial) computes
that block only and never loads the test images. The test block (the unprefixed columns the
report's tables use) audits *every* member against the test non-members: nothing is selected on
a run that computes it (teachers are picked by seed, confirmation runs are not picked at all), and
all members make the estimate less noisy (issue #27: the no-leak spread 0.030 -> 0.022 at 200 vs 100
members). Each block chooses its own attack for ``leak`` (:mod:`akdray.attacks.leak`).
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from akdray import seeds
from akdray.attacks.metrics import attack_metrics
from akdray.attacks.signals import Serve, model_losses, reference_losses
from akdray.attacks.suite import audit_sample, run_attacks, scores_frame
from akdray.config import RunConfig
from akdray.data.splits import PairedImages, Splits
from akdray.metrics.kid import KidOptions, generalization_gap, quality_of_sets
from akdray.metrics.sharpness import sharpness_of
from akdray.schema import SAMPLE_COLUMNS, VAL_METRIC_KEYS


def _kid_set(serve: Serve, pairs: PairedImages, key: str, cap: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(real, fake, real_key) of the first ``cap`` pairs (0: all) for :func:`quality_of_sets`."""
    pairs = pairs.subset(torch.arange(min(len(pairs), cap) if cap else len(pairs)))
    return pairs.y, serve(pairs.x), key


def audit(serve: Serve, references: Sequence[Serve], members: PairedImages, nonmembers: PairedImages,
          cfg: RunConfig) -> tuple[dict, pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The attack suite on one target: row columns, per-image scores, and the target's losses."""
    loss_in, loss_out = model_losses(serve, members.x, members.y), model_losses(serve, nonmembers.x, nonmembers.y)
    refs_in = reference_losses(references, members.x, members.y)
    refs_out = reference_losses(references, nonmembers.x, nonmembers.y)
    row, scores = run_attacks(loss_in, loss_out, refs_in, refs_out, seed=cfg.seed, n_permutations=cfg.attack_bootstrap)
    n_in, n_out = len(members), len(nonmembers)
    frame = scores_frame(scores, np.r_[loss_in, loss_out], [*members.names, *nonmembers.names],
                         ["train"] * n_in + ["test"] * n_out, np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)])
    return row, frame, (loss_in, loss_out)


def member_halves(n_members: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (validation, test) halves of the member indices, a permutation drawn with ``seed``."""
    order = torch.randperm(n_members, generator=torch.Generator().manual_seed(seeds.MEMBER_HALVES.seed(seed)))
    half = n_members // 2
    return order[:half].sort().values, order[half:].sort().values


def _audit_block(serve: Serve, references: Sequence[Serve], members: PairedImages, nonmembers: PairedImages,
                 cfg: RunConfig) -> tuple[dict, pd.DataFrame, tuple[np.ndarray, np.ndarray], PairedImages]:
    members_idx, nonmembers_idx = audit_sample(len(members), len(nonmembers), cfg.attack_n_per_side, cfg.seed)
    audited = nonmembers.subset(nonmembers_idx)
    row, scores, losses = audit(serve, references, members.subset(members_idx), audited, cfg)
    return row, scores, losses, audited


def evaluate(serve: Serve, splits: Splits, cfg: RunConfig, *, proxy_leakage: bool, references: Sequence[Serve] = (),
             quality_metrics: bool = True, device: torch.device | str = "cpu") -> tuple[dict, pd.DataFrame]:
    """All metrics of one deployed model and the per-image attack scores behind them.

    Test block (``eval_split`` test or both): the attack suite, proxy leakage, KID/NKID on test and
    train, the gap. Validation block (``splits.val`` present): the attack suite and NKID with a
    ``val_`` prefix (``val_leak``, ``val_nkid``, ...; score rows of attack ``val_<attack>``, non-member role ``val``).
    """
    val_members, test_members = splits.train, splits.train  # the test block audits every member
    if splits.val is not None:
        val_members = splits.train.subset(member_halves(len(splits.train), cfg.seed)[0])
    row: dict = {}
    frames = []
    kid_sets: dict[str, tuple[torch.Tensor, torch.Tensor, str]] = {}  # KID of all sets at the end, in one pass
    if splits.val is not None:
        vrow, vscores, _, _ = _audit_block(serve, references, val_members, splits.val, cfg)
        row.update({f"val_{k}": v for k, v in vrow.items() if f"val_{k}" in VAL_METRIC_KEYS},
                   n_references=vrow["n_references"])  # a property of the run, the same in both blocks
        frames.append(vscores.assign(attack="val_" + vscores["attack"],  # kept apart from the test block's curves
                                     role=vscores["role"].where(vscores["is_member"], "val")))
        if quality_metrics:
            kid_sets["val"] = _kid_set(serve, splits.val, f"{splits.key}-val", cfg.kid_max_images)
    if cfg.eval_split == "val":
        row.update(_quality_columns(kid_sets, cfg, device))
        return row, pd.concat(frames, ignore_index=True)

    trow, scores, (loss_in, loss_out), nonmembers = _audit_block(serve, references, test_members, splits.test, cfg)
    row.update(trow)
    row["train_l1"], row["test_l1"] = float(loss_in.mean()), float(loss_out.mean())
    frames.append(scores)

    if proxy_leakage:  # Section V-B: proxy pairs (with their real labels) as members, loss attack
        n = min(len(splits.proxy), len(nonmembers))
        draw = torch.Generator().manual_seed(seeds.PROXY_MIA.seed(cfg.seed))
        pick = torch.randperm(len(splits.proxy), generator=draw)[:n].sort().values
        proxy = splits.proxy.subset(pick)
        loss_proxy = model_losses(serve, proxy.x, proxy.y)
        labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        row.update(attack_metrics(labels, -np.r_[loss_proxy, loss_out[:n]], "proxy_mia"),
                   proxy_mia_n_members=float(n), proxy_mia_n_nonmembers=float(n))
        frames.append(scores_frame({"proxy_mia": -np.r_[loss_proxy, loss_out[:n]]}, np.r_[loss_proxy, loss_out[:n]],
                                   [*proxy.names, *nonmembers.names[:n]], ["proxy"] * n + ["test"] * n, labels))

    if quality_metrics:
        kid_sets["test"] = _kid_set(serve, splits.test, f"{splits.key}-test", cfg.kid_max_images)
        kid_sets["train"] = _kid_set(serve, splits.train, f"{splits.key}-train", cfg.kid_max_images)
        row.update(_quality_columns(kid_sets, cfg, device))
    return row, pd.concat(frames, ignore_index=True)


def _quality_columns(kid_sets: dict[str, tuple[torch.Tensor, torch.Tensor, str]], cfg: RunConfig, device) -> dict:
    """Row columns of the KID sets (``val``; ``test`` and ``train``), their Inception features in one pass;
    the sharpness measures ``hfer`` and ``swd`` (:mod:`akdray.metrics.sharpness`) of ``val`` and ``test``."""
    q = quality_of_sets(kid_sets, KidOptions.from_config(cfg, device)) if kid_sets else {}
    out = {}
    if "val" in q:
        sharp = sharpness_of(kid_sets["val"][1], kid_sets["val"][0], cfg.seed)
        out.update(val_kid=q["val"]["kid"], val_nkid=q["val"]["nkid"], val_hfer=sharp["hfer"], val_swd=sharp["swd"])
    if "test" in q:
        test_q, train_q = q["test"], q["train"]
        out.update(sharpness_of(kid_sets["test"][1], kid_sets["test"][0], cfg.seed))  # hfer, swd beside nkid
        out.update(kid=test_q["kid"], kid_std=test_q["kid_std"], kid_max=test_q["kid_max"], nkid=test_q["nkid"],
                   kid_subset_size_used=test_q["kid_subset_size"], kid_train=train_q["kid"], nkid_train=train_q["nkid"],
                   gen_gap=generalization_gap(train_q["nkid"], test_q["nkid"]))
    return out


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
