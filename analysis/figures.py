"""The paper's figures as PNG (matplotlib, Agg backend), one data set (preset) per call.

* :func:`pareto_figure` - Figs 3/4: every trial on the selection axes (:mod:`akdray.axes`: leak,
  NKID), each method's Pareto front as a staircase, the picks starred, AKD's NKID bound dashed, the
  ideal point (leak 0.5 = no measurable leakage, NKID 0) marked.
* :func:`roc_figure` - ROC curves of the picked models on log-log axes (sklearn ``roc_curve`` on
  the ``scores`` dataset): the attack the run's ``leak`` chose (``leak_attack``), else the last
  attack of the registry (:mod:`akdray.attacks.registry`) the run has scores of. Rates are floored at half of one step (0.5 / n) so zero rates stay on the log axes.
* :func:`loss_histograms` - Fig 7: reconstruction loss of members vs non-members for the Regular
  (teacher) model and AKD.
* :func:`sample_grid` - Figs 5/6: input, ground truth, teacher, DP-SGD, DMP, AKD (then Gauss if
  picked) for the first images all of them share (``samples`` dataset, PNG bytes); where they share
  none (teachers are sampled on test images, search trials on validation images), each model's own
  first images, blank where a model has no sample.

A picked model is shown by its representative run: the ok run of its label with the lowest seed,
then lowest ``trial_id`` (the confirmation run of seed 0 when there is one).
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from akdray import axes  # noqa: E402
from akdray.attacks.metrics import log_roc  # noqa: E402
from akdray.attacks.registry import ATTACKS  # noqa: E402
from analysis.fronts import selection_axes  # noqa: E402
from analysis.load import METHOD_ORDER  # noqa: E402

COLORS = {"teacher": "black", "akd": "tab:red", "dmp": "tab:blue", "dpsgd": "tab:green", "gauss": "tab:purple"}
NAMES = {"teacher": "Regular (teacher)", "akd": "AKD", "dmp": "DMP", "dpsgd": "DP-SGD", "gauss": "Gauss"}
GRID_COLUMNS = (("teacher", "Regular (teacher)"), ("dpsgd@utility", "DP-SGD"), ("dmp@utility", "DMP"),
                ("akd", "AKD"), ("gauss@utility", "Gauss"))
DPI = 110


def representatives(rows: pd.DataFrame) -> pd.DataFrame:
    """One ok run per (preset, label): lowest seed, then trial_id. Columns preset, label, method, trial_id."""
    ok = rows[rows["status"] == "ok"].sort_values(["seed", "trial_id"], kind="mergesort")
    first = ok.drop_duplicates(["preset", "label"], keep="first")
    return first[["preset", "label", "method", "trial_id"]].reset_index(drop=True)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def pareto_figure(trials: pd.DataFrame, front: pd.DataFrame, picks: pd.DataFrame, path: Path, title: str) -> Path:
    """Trials (ok, non-confirm), their fronts and the picks of one data set, on the selection axes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    x, y = selection_axes(trials)
    for method in METHOD_ORDER:
        mine = trials[trials["method"] == method]
        if mine.empty:
            continue
        ax.scatter(mine[x], mine[y], s=14, alpha=0.35, color=COLORS[method], label=f"{NAMES[method]} trials")
        line = front[front["method"] == method].sort_values([x, y])
        ax.step(line[x], line[y], where="post", color=COLORS[method], lw=1.6, label=f"{NAMES[method]} front")
    for (_, method), group in picks.groupby(["trial_id", "method"], sort=False):  # picks: selection measures
        px, py = float(group["leak"].iloc[0]), float(group["nkid"].iloc[0])
        ax.scatter([px], [py], marker="*", s=150, color=COLORS.get(method, "grey"), edgecolor="black", linewidths=0.7, zorder=5)
        ax.annotate("+".join(group["pick"]), (px, py), xytext=(4, 4), textcoords="offset points", fontsize=7)
    bound = picks.loc[picks["pick"] == "akd", "target"]
    if len(bound) and np.isfinite(bound.iloc[0]):
        ax.axhline(bound.iloc[0], color=COLORS["akd"], ls="--", lw=0.8, label="AKD NKID bound: teacher × (1 + tol)")
    ax.scatter([axes.IDEAL[0]], [axes.IDEAL[1]], marker="*", s=220, color="gold", edgecolor="black", zorder=6)
    ax.annotate("ideal (no leakage, perfect images)", axes.IDEAL, xytext=(6, 6), textcoords="offset points", fontsize=8)
    for axis, column, setter in ((axes.PRIVACY, x, ax.set_xlim), (axes.UTILITY, y, ax.set_ylim)):
        top = max(axis.worst, float(trials[column].max()) + axis.margin) if len(trials) else axis.worst
        low = min(axis.chance, float(trials[column].min())) if len(trials) else axis.chance  # unfolded leak: < 0.5
        setter(low - axis.margin, top)
    ax.set_xlabel(axes.PRIVACY.label)
    ax.set_ylabel(axes.UTILITY.label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)


def _attack_scores(scores: pd.DataFrame, trial_id: str, attack: str = "loss") -> pd.DataFrame:
    if scores.empty or "attack" not in scores:
        return scores.iloc[:0]
    return scores[(scores["trial_id"] == trial_id) & (scores["attack"] == attack)]


def roc_figure(scores: pd.DataFrame, reps: pd.DataFrame, path: Path, title: str,
               leak_attacks: dict | None = None) -> Path | None:
    """Log-log ROC curves of the representative runs, each of the attack its ``leak`` chose (first fold's,
    ``leak_attacks``: trial_id -> leak_attack), else the last attack of the registry it has scores of;
    ``None`` if no run has both classes scored."""
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    floor, drawn = 1.0, 0
    for _, rep in reps.iterrows():
        chosen = str((leak_attacks or {}).get(rep["trial_id"]) or "").split(",")[0].lstrip("-")
        for attack in ([chosen] if chosen in ATTACKS else []) + list(reversed(ATTACKS)):
            s = _attack_scores(scores, rep["trial_id"], attack)
            if len(s):
                break
        member = s["is_member"].astype(bool).to_numpy() if len(s) else np.zeros(0, dtype=bool)
        if member.all() or not member.any():
            continue
        fpr, tpr, low = log_roc(member, s["score"].to_numpy())
        floor = min(floor, low)
        auc = roc_auc_score(member, s["score"].to_numpy())
        ax.plot(fpr, tpr, lw=1.5, color=COLORS.get(rep["method"], "grey"),
                ls="-" if "@privacy" not in rep["label"] else "--", label=f"{rep['label']} ({attack} AUC {auc:.3f})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([floor, 1], [floor, 1], color="grey", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def loss_histograms(scores: pd.DataFrame, panels: list[tuple[str, str]], path: Path, title: str) -> Path | None:
    """Fig 7: one panel per ``(name, trial_id)``, member vs non-member loss on shared bins."""
    data = [(name, _attack_scores(scores, tid)) for name, tid in panels]
    data = [(name, s) for name, s in data if len(s)]
    if not data:
        return None
    losses = np.concatenate([s["loss"].to_numpy(float) for _, s in data])
    bins = np.linspace(losses.min(), losses.max() + 1e-12, 31)
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 3.4), squeeze=False, sharex=True,
                             layout="constrained")
    for ax, (name, s) in zip(axes[0], data):
        member = s["is_member"].astype(bool)
        ax.hist(s.loc[member, "loss"], bins=bins, alpha=0.6, color="tab:red", label="members (train)")
        ax.hist(s.loc[~member, "loss"], bins=bins, alpha=0.6, color="tab:blue", label="non-members (test)")
        ax.set_title(name)
        ax.set_xlabel("reconstruction loss (L1)")
        ax.set_ylabel("images")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _grid_images(by_trial: dict, columns: list[tuple[str, str]], n_images: int) -> list[str]:
    """The first ``n_images`` images every column has; without any, each column's first images in turn (so
    teachers sampled on test images and search trials on validation images both appear)."""
    shared = sorted(set.intersection(*(set(by_trial[tid].index) for _, tid in columns)))
    if shared:
        return shared[:n_images]
    names: list[str] = []
    per_column = max(1, n_images // 2)
    for _, tid in columns:
        have = [n for n in sorted(by_trial[tid].index) if n in names]
        for name in sorted(by_trial[tid].index):
            if len(have) >= per_column:
                break
            if name not in names:
                names.append(name)
                have.append(name)
    return names[: 2 * n_images]


def _blank(like: bytes) -> np.ndarray:
    return np.full_like(_decode(like), 235)


def sample_grid(samples: pd.DataFrame, columns: list[tuple[str, str]], path: Path, title: str,
                n_images: int = 4) -> Path | None:
    """Figs 5/6: rows = images, columns = input, ground truth, then each ``(name, trial_id)``; a blank
    cell where that model was not sampled on that image."""
    if samples.empty or not columns:
        return None
    by_trial = {tid: samples[samples["trial_id"] == tid].drop_duplicates("name").set_index("name") for _, tid in columns}
    columns = [(name, tid) for name, tid in columns if len(by_trial[tid])]
    if not columns:
        return None
    names = _grid_images(by_trial, columns, n_images)
    heads = ["Input", "Ground truth"] + [name for name, _ in columns]
    fig, axes_ = plt.subplots(len(names), len(heads), figsize=(1.6 * len(heads), 1.7 * len(names) + 0.4),
                              squeeze=False, layout="constrained")
    for r, image in enumerate(names):
        first = next(by_trial[tid] for _, tid in columns if image in by_trial[tid].index)
        pictures = [_decode(first.loc[image, "input_png"]), _decode(first.loc[image, "target_png"])]
        pictures += [_decode(by_trial[tid].loc[image, "output_png"]) if image in by_trial[tid].index
                     else _blank(first.loc[image, "target_png"]) for _, tid in columns]
        for c, picture in enumerate(pictures):
            ax = axes_[r][c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(str(image).rsplit("/", 1)[-1], fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
