"""``docs/columns.md``, generated from the results schema: ``python -m akdray.columns [--check] [--out PATH]``.

The column names and types come from the Parquet row schema itself (:func:`result_schema`), never from
a hand-typed list; the meanings come from the comments of :class:`akdray.config.RunConfig` (config
fields) and from :data:`MEANINGS` below (the rest; a meaning whose column left the schema fails the
tests). ``tests/test_docs.py`` regenerates the file and compares it with the committed copy.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import io
import sys
import tokenize
from pathlib import Path

from akdray import config, schema
from akdray.attacks.registry import REGISTRY

DOC = Path(__file__).resolve().parent.parent / "docs" / "columns.md"
COMMAND = "python -m akdray.columns"


def result_schema():
    """The results rows' ``pyarrow.Schema`` (the one place that names where the schema lives)."""
    from akdray.results import RESULT_SCHEMA
    return RESULT_SCHEMA


def key_columns() -> tuple[str, ...]:
    """The keys prepended to every ``scores/`` and ``samples/`` file."""
    from akdray.results import KEY_COLUMNS
    return KEY_COLUMNS


ATTACK_MEANINGS = {
    **{a.name: f"{a.name} attack ({a.summary})" for a in REGISTRY.values()},
    "proxy_mia": "proxy leakage (the loss attack, proxy pairs as members; AKD, DMP)",
}
SUFFIX_MEANINGS = {
    "auc": "AUCROC",
    "auc_lo": "lower end of the AUC's 95 % CI (logit-DeLong with a Newcombe variance floor; docs/attacks.md)",
    "auc_hi": "upper end of the AUC's 95 % CI (logit-DeLong with a Newcombe variance floor)",
    "tpr_at_1pct_fpr": "TPR at 1 % FPR, the threshold set by the non-members (null with fewer than 1,000 non-members)",
    "tpr_at_1pct_fpr_lo": "lower end of the 95 % Clopper–Pearson CI of the TPR at 1 % FPR",
    "tpr_at_1pct_fpr_hi": "upper end of the 95 % Clopper–Pearson CI of the TPR at 1 % FPR",
    "fpr_at_1pct_fpr": "the FPR that threshold reached (<= 1 %)",
    "tpr_at_0p1pct_fpr": "TPR at 0.1 % FPR (null with fewer than 10,000 non-members)",
    "tpr_at_0p1pct_fpr_lo": "lower end of the 95 % Clopper–Pearson CI of the TPR at 0.1 % FPR",
    "tpr_at_0p1pct_fpr_hi": "upper end of the 95 % Clopper–Pearson CI of the TPR at 0.1 % FPR",
    "fpr_at_0p1pct_fpr": "the FPR that threshold reached (<= 0.1 %)",
    "balanced_acc": "best balanced accuracy over all thresholds",
}
MEANINGS = {
    # metrics
    "attack_n_members": "members audited", "attack_n_nonmembers": "non-members audited",
    "n_references": "reference models behind lira (K >= 2) and rmia (K >= 1) (0: loss attack only)",
    "leak": "the privacy axis: AUC of the attack (and direction) chosen on the other half of the audited images, "
            "unfolded, mean of the two halves; 0.5 on average for a model that leaked nothing (docs/attacks.md)",
    "leak_lo": "lower end of `leak`'s 95 % CI", "leak_hi": "upper end of `leak`'s 95 % CI",
    "leak_attack": "the attack each half chose for `leak` (first half's, second half's; - = score flipped)",
    "leak_source": "the attacks `leak` chose from, e.g. loss,lira,rmia",
    "leak_max": "max over the row's attacks of max(AUC, 1 − AUC) (the `leak` before issue #27; biased above 0.5)",
    "leak_p": "permutation p-value of `leak_max` (member labels shuffled `attack_bootstrap` times, seeded)",
    "leak_null_mean": "mean of `leak_max` over those permutations (what a model that leaked nothing scores)",
    "proxy_mia_n_members": "proxy pairs audited", "proxy_mia_n_nonmembers": "test pairs audited against them",
    "train_l1": "mean L1 loss on the audited members", "test_l1": "mean L1 loss on the audited non-members",
    "kid": "KID(outputs on test inputs, real test targets)", "kid_std": "standard deviation of `kid` over the subsets",
    "kid_max": "KID(all-black images, real test targets)", "nkid": "kid / kid_max",
    "hfer": "high-frequency energy ratio: DFT power above 0.25 cycles/px, outputs ÷ real targets "
            "(1 = as much fine detail; blur < 1, noise > 1; akdray.metrics.sharpness)",
    "swd": "sliced Wasserstein distance ×10³ of high-pass 5×5 patches, outputs vs real targets (Karras et al. "
           "2018; lower = closer; a real set against itself ≈ 20 at 100 images, 32 px; noise does not fool it)",
    "kid_subset_size_used": "KID subset size actually used", "kid_train": "KID on training inputs",
    "nkid_train": "NKID on training inputs", "gen_gap": "nkid − nkid_train (Eq. 6): positive = worse on unseen inputs",
    "dp_epsilon": "DP-SGD ε at dp_delta (may be +inf)", "dp_sample_rate": "DP-SGD Poisson sampling rate",
    "dp_steps": "DP-SGD generator steps (each with a discriminator step)",
    "final_loss_G_l1": "generator L1 loss of the last epoch", "final_loss_D": "discriminator loss of the last epoch",
    "val_kid": "validation block: KID(outputs on validation inputs, real validation targets)",
    "val_nkid": "validation block: NKID of the validation images (the search objective with val_leak)",
    # run info
    "status": "ok / failed", "error": "why the run failed (null when ok)",
    "wall_s": "wall time of the run (prepare + train + evaluate)",
    "prepare_s": "checking and loading the run's inputs: data (rendered or cached), teacher, reference models",
    "train_s": "training time", "eval_s": "evaluation time", "device_used": "torch device the run used",
    "started_at": "ISO time", "finished_at": "ISO time", "akdray_version": "", "torch_version": "",
    "host": "machine name",
    "code_commit": "git commit of the akdray source that ran (+dirty: with uncommitted changes; akdray.provenance)",
    "code_commit": "git commit of the akdray source that ran (+dirty: with uncommitted changes; akdray.provenance)",
    # sweep keys
    "sweep_id": "the sweep (sweep.json)", "trial_id": "the Tune trial; key of scores/ and samples/",
    "stage": "reference / teacher / search / confirm-reference / confirm",
    "study": "defense name, teacher or confirm", "experiment": "Tune experiment",
    "checkpoint": "URI of the trial's persisted run folder",
    "pick": "confirmation label such as akd or dpsgd@utility; null otherwise",
    "trial_failures": "Tune retries of the trial", "trial_time_s": "Tune's wall time, Ray overhead included",
    "recorded_at": "when the row was written",
    "ray_start_s": "trial driver start -> Train worker running (controller, helper actors, worker process; "
                   "~0 in local mode, --train-workers 0)",
    "worker_setup_s": "Train worker running -> its runs start (torch and akdray imports; ~0 in a reused local-mode trial process)",
    "ray_end_s": "last run finished -> driver holds the result (report, checkpoint upload, shutdown)",
    # scores/ and samples/
    "attack": "an attack of akdray.attacks.registry (loss / lira / rmia) or proxy_mia; val_<attack> for the "
              "validation block",
    "role": "train / test / proxy / val", "name": "image file name", "is_member": "member of the audited target",
    "score": "the attack's score (higher = member)", "input_png": "input image, PNG bytes",
    "target_png": "ground truth, PNG bytes", "output_png": "the model's output, PNG bytes",
    "seed": "run seed", "loss": "the target's per-image L1 loss",
}
VAL_PREFIX = "validation block: "
# Config fields whose column holds what the run resolved the value to, not the value it was given.
RESOLVED = {
    "dp_delta": "DP-SGD δ of `dp_epsilon`: a dpsgd row holds the δ it used (the configured value, or 1 / (10 n_train) "
                "where that was 0: below 1/N, which would allow publishing one record); other rows the configured value",
}


def config_comments() -> dict[str, str]:
    """``RunConfig`` field -> its comment in akdray/config.py (trailing, else the comment lines just above)."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RunConfig")
    out: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = comments.get(node.lineno, "")
        if not text:  # a comment block right above the field (not a "# --- section ---" rule)
            above, line = [], node.lineno - 1
            while line in comments and lines[line - 1].strip().startswith("#") and not comments[line].startswith("---"):
                above.insert(0, comments[line])
                line -= 1
            text = " ".join(above)
        out[node.target.id] = text
    return out


def meaning(name: str, notes: dict[str, str]) -> str:
    """A column's meaning: its RunConfig comment, else :data:`MEANINGS`, else built from the attack name patterns."""
    if name in RESOLVED:
        return RESOLVED[name]
    if notes.get(name):
        return notes[name]
    if name in MEANINGS or name in notes:
        return MEANINGS.get(name, "")
    if name.startswith("val_"):
        base = meaning(name[4:], notes)
        return VAL_PREFIX + base if base else ""
    for attack, what in ATTACK_MEANINGS.items():
        suffix = name[len(attack) + 1:]
        if name.startswith(attack + "_") and suffix in SUFFIX_MEANINGS:
            return f"{what}: {SUFFIX_MEANINGS[suffix]}"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(rows: list[tuple[str, str, str]]) -> list[str]:
    return ["| column | type | meaning |", "|---|---|---|",
            *(f"| `{n}` | {t} | {_cell(m)} |" for n, t, m in rows)]


def markdown() -> str:
    """The whole docs/columns.md."""
    sch, notes = result_schema(), config_comments()
    fields = config.FIELD_TYPES
    metrics, info = set(schema.METRIC_KEYS), set(schema.INFO_KEYS)
    groups: dict[str, list[tuple[str, str, str]]] = {"config": [], "metrics": [], "info": [], "sweep": []}
    for f in sch:
        group = "config" if f.name in fields else "metrics" if f.name in metrics else "info" if f.name in info else "sweep"
        groups[group].append((f.name, str(f.type), meaning(f.name, notes)))
    keys = key_columns()
    out = [
        "# Parquet columns",
        "",
        f"<!-- Generated by `{COMMAND}` from the results schema; do not edit by hand. -->",
        "",
        f"Generated by `{COMMAND}` from the Parquet row schema (see [results.md](results.md) for the datasets).",
        f"`results/` files hold these {len(sch)} columns, the same in every file, plus `method`, the hive partition",
        "key (not stored in the files; pandas reads it back as a `category`). Metrics are null when not measured,",
        "failed or NaN (never NaN; `dp_epsilon` may be +inf). A search trial (`eval_split=val`) fills only the",
        "validation block `val_*`.",
        "",
        f"## Run configuration ({len(groups['config'])}: every `RunConfig` field)",
        "",
        "Meanings are the field comments of [`RunConfig`](../akdray/config.py); `akdray fields` prints the defaults.",
        "",
        *_table(groups["config"]),
        "",
        f"## Metrics ({len(groups['metrics'])})",
        "",
        *_table(groups["metrics"]),
        "",
        f"## Run info ({len(groups['info'])})",
        "",
        *_table(groups["info"]),
        "",
        f"## Sweep keys ({len(groups['sweep'])})",
        "",
        *_table(groups["sweep"]),
        "",
        "## `scores/` and `samples/`",
        "",
        f"Every file starts with the keys {', '.join(f'`{k}`' for k in keys)} (join with `results/` on `trial_id`),",
        "followed by the run's own file:",
        "",
        "| dataset | column | meaning |",
        "|---|---|---|",
        *(f"| `scores/` | `{c}` | {_cell(MEANINGS.get(c, ''))} |" for c in schema.SCORE_COLUMNS),
        *(f"| `samples/` | `{c}` | {_cell(MEANINGS.get(c, ''))} |" for c in schema.SAMPLE_COLUMNS),
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOC, help=f"where to write (default {DOC})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the schema, write nothing")
    args = parser.parse_args(argv)
    text = markdown()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date with the schema: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
