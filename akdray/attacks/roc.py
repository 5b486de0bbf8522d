"""ROC curves of membership attacks on log-log axes (ML Privacy Meter / LiRA style), one PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd
from sklearn.metrics import roc_auc_score

from akdray.attacks.metrics import log_roc
from akdray.attacks.registry import ATTACKS, REGISTRY


def roc_png(scores: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    """One curve per (model, attack) of per-image ``scores`` frames (columns attack, is_member, score).

    Rates are floored at half a step so that zero rates stay visible; the legend gives each AUC.
    With one model the legend names the attacks only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 4.8))
    floor = 1.0
    colours = ("black", "tab:red", "tab:blue", "tab:green")
    for (model, frame), colour in zip(scores.items(), colours):
        for attack in [a for a in ATTACKS if a in set(frame["attack"])]:
            s = frame[frame["attack"] == attack]
            member, score = s["is_member"].to_numpy(bool), s["score"].to_numpy(float)
            fpr, tpr, low = log_roc(member, score)
            floor = min(floor, low)
            name = attack if len(scores) == 1 else f"{model}, {attack}"
            ax.plot(fpr, tpr, lw=1.4, ls=REGISTRY[attack].style, color=None if len(scores) == 1 else colour,
                    label=f"{name} (AUC {roc_auc_score(member, score):.3f})")
    ax.plot([floor, 1], [floor, 1], color="grey", ls=":", lw=1, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
