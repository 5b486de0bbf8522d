"""Upper bounds of RunConfig's count and size fields and the smallest audit (no imports: config.py reads them).

A value above its bound could not finish on any machine akdray targets (``attack_bootstrap=10**9``
bootstraps for days; ``ngf=10**6`` or ``image_size=65536`` allocate terabytes), so it is refused up
front, by a dry run too. Scales (lr, the lambdas, sigmas) have no upper bound: a huge one diverges,
which the run reports (exit 1). ``akdray fields`` prints every bound.
"""
from __future__ import annotations

# Upper bounds (lower bounds: config._check_values); docs/runs.md lists them.
FIELD_MAX: dict[str, int] = {
    "image_size": 1024, "ngf": 512, "ndf": 512, "d_layers": 8,
    "n_train": 100_000, "proxy_pool_size": 100_000, "proxy_size": 100_000, "n_test": 100_000,
    "reference_pool_size": 100_000, "n_val": 100_000, "attack_n_per_side": 100_000,
    "epochs": 10_000, "epochs_decay": 10_000, "distill_epochs": 10_000, "distill_epochs_decay": 10_000,
    "batch_size": 4096, "eval_batch_size": 4096, "attack_bootstrap": 100_000, "kid_subset_size": 100_000,
    "kid_subsets": 10_000, "kid_max_images": 100_000, "n_sample_images": 1000,
}
# The fewest members and non-members an audit may rest on, per side. Below 4 per side not even a perfect
# separation (AUC 1.0) differs from chance: the exact Mann-Whitney test of 3 vs 3 has p = 2 / C(6, 3) = 0.10
# two-sided, of 4 vs 4 p = 2 / C(8, 4) = 0.029; and 1 vs 1 gives a bootstrap CI [x, x] whatever the model.
MIN_AUDIT_PER_SIDE = 4
# Reference models trained or loaded by one audit, protect or sweep (LiRA's papers use up to 256 on CIFAR).
MAX_REFERENCES = 64


def field_range(name: str) -> str:
    """The allowed range of a numeric field, as `akdray fields` prints it ("" for other fields)."""
    if name not in FIELD_MAX:
        return ""
    return f"<= {FIELD_MAX[name]:,}"


def audit_size_problem(cfg) -> str | None:
    """Synthetic data: why the audited sets would hold fewer than MIN_AUDIT_PER_SIDE members or non-members
    (None if they do not; aligned folders are counted when they are read: akdray.audit_inputs)."""
    if cfg.data_source != "synthetic" or cfg.method == "reference":
        return None
    n_val = cfg.resolved_n_val
    halves = 2 if n_val and cfg.eval_split in ("both", "val") else 1
    sides = {"members (n_train" + (" / 2: a validation and a test half)" if halves == 2 else ")"): cfg.n_train // halves}
    if cfg.eval_split in ("both", "test"):
        sides["test non-members (n_test)"] = cfg.n_test
    if halves == 2:
        sides["validation non-members (n_val)"] = n_val
    if cfg.attack_n_per_side:
        sides["attack_n_per_side"] = cfg.attack_n_per_side
    for what, n in sides.items():
        if n < MIN_AUDIT_PER_SIDE:
            return (f"the audit would rest on {n} {what}; it needs at least {MIN_AUDIT_PER_SIDE} per side "
                    "(below that not even a perfect separation differs from chance)")
    return None
