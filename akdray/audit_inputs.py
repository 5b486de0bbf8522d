"""One validation of an audit's inputs, for ``akdray audit``, ``akdray protect --audit-data`` and the sweep.

An audit whose inputs are wrong does not fail: it prints a number, and a privacy number is published.
Each rule here stops one way that happened (issue #25):

* **Image sizes** (:func:`check_split_sizes`): every A|B file of every audited split has one size, and -
  for data the model was not trained on (``--data``, ``--audit-data``) - halves of the model's input
  size, unless resizing is asked for explicitly (``--resize``; the audit records ``"resized": true``).
  Members and non-members resized from different sizes differ by the resampling alone: an untrained
  model then "leaks" with AUC 0.000 or 1.000.
* **Audit size** (:func:`check_audit_counts`): at least :data:`akdray.config.MIN_AUDIT_PER_SIDE` (4)
  members and non-members. Below 4 per side not even a perfect separation differs from chance (the
  exact Mann-Whitney test of 3 vs 3 has p = 2 / C(6, 3) = 0.10 two-sided; 4 vs 4: 2 / C(8, 4) = 0.029),
  and 1 vs 1 gives a bootstrap CI [x, x] whatever the model.
* **Foreign checkpoints** (:func:`require_data`): an official pix2pix file carries no record of its
  data; auditing it against akdray's synthetic draw 0 measures nothing. ``--data`` is required.
* **Reference models** (:func:`check_reference_runs`): distinct files and weights, none the target,
  ``reference`` runs of the target's data and recipe family (data identity, synthetic style, image
  size, preset), and provably disjoint from the audited images: each reference's own training set is
  rebuilt from its config and hashed against the audited members and non-members
  (:func:`akdray.data.splits.check_disjoint`, the check the sweep's references pass when trained).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

from akdray.config import MIN_AUDIT_PER_SIDE, ConfigError, RunConfig
from akdray.data.aligned import DataError, header_size, list_images

RESIZE_HINT = "pass --resize to resize every image to the model's size (the audit then records \"resized\": true)"


def check_split_sizes(root: Path, splits: Iterable[str], size: int | None, *, resize: bool = False,
                      label: str = "data") -> tuple[int, int] | None:
    """Header-check every file of ``root/<split>`` (nothing decoded): one A|B size for all of them,
    and - unless ``size`` is None or ``resize`` - halves of ``size`` x ``size``. Returns (half width, height)."""
    first: tuple[Path, tuple[int, int]] | None = None
    for split in dict.fromkeys(splits):
        for f in list_images(root / split):
            w, h = header_size(f)
            if first is None:
                first = (f, (w, h))
                if size is not None and not resize and (w // 2, h) != (size, size):
                    raise DataError(f"{label} folder {root} holds {w // 2}x{h} image pairs ({f}), but the "
                                    f"checkpoint's generator takes {size}x{size}; {RESIZE_HINT}")
            elif (w, h) != first[1]:
                (w0, h0) = first[1]
                raise DataError(f"{label} image {f} is {w}x{h} but {first[0]} is {w0}x{h0}: every image of "
                                f"{', '.join(dict.fromkeys(splits))} must have one size (members and non-members "
                                "resized from different sizes differ by the resampling alone, which an attack reads "
                                "as membership)")
    return None if first is None else (first[1][0] // 2, first[1][1])


def check_audit_counts(n_members: int, n_nonmembers: int, where: str) -> None:
    """At least MIN_AUDIT_PER_SIDE audited members and non-members (see the module docstring)."""
    for what, n in (("members", n_members), ("non-members", n_nonmembers)):
        if n < MIN_AUDIT_PER_SIDE:
            raise DataError(f"{where}: the audit would rest on {n} {what}; it needs at least {MIN_AUDIT_PER_SIDE} "
                            "members and non-members (below that not even a perfect separation differs from chance)")


def require_data(fmt: str, file: Path | str, data: str | None) -> None:
    """An official (foreign) checkpoint says nothing about its training data: ``--data`` must name it."""
    if fmt != "akdray" and not data:
        raise ConfigError(f"checkpoint {file} is an official pix2pix file: it records no training data, so the audit "
                          "needs --data DIR (its aligned folder: train/ = members, test/ = non-members)")


def weights_digest(generator) -> str:
    """A digest of a generator's weights (to tell two copies of one model apart from two models)."""
    h = hashlib.sha1()
    for key, value in generator.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# Fields a reference model shares with its target beyond the data identity of akdray.attacks.references.
FAMILY_FIELDS = ("synthetic_style", "image_size", "preset")


def check_reference_runs(target_file: Path, target_cfg: RunConfig, target_G, cfg: RunConfig,
                         loaded: Sequence[tuple[object, RunConfig]], paths: Sequence[str]) -> None:
    """Distinct references, none the target, all of the target's recipe family (see the module docstring).
    ``cfg`` is the audit's data config; ``target_cfg`` the target's own (an official file has none)."""
    from akdray.checkpoint import resolve_checkpoint

    target = resolve_checkpoint(target_file).resolve()
    seen_files: dict[Path, str] = {}
    seen_weights = {weights_digest(target_G): f"the target {target_file}"}
    for path, (G, ref_cfg) in zip(paths, loaded):
        file = resolve_checkpoint(path).resolve()
        if file == target:
            raise ConfigError(f"reference run {path} is the target itself: a model cannot calibrate its own audit")
        if file in seen_files:
            raise ConfigError(f"reference runs {seen_files[file]} and {path} are the same run: each must be a model "
                              "of its own (a run counted twice narrows LiRA's fit)")
        seen_files[file] = str(path)
        digest = weights_digest(G)
        if digest in seen_weights:
            raise ConfigError(f"reference run {path} has the same weights as {seen_weights[digest]}: "
                              "each reference must be a model of its own")
        seen_weights[digest] = f"reference run {path}"
        for name in FAMILY_FIELDS:
            if name == "synthetic_style" and cfg.data_source != "synthetic":
                continue
            if name == "preset" and target_cfg is None:
                continue
            mine, theirs = getattr(cfg if name != "preset" else target_cfg, name), getattr(ref_cfg, name)
            if mine != theirs:
                raise ConfigError(f"reference run {path}: field {name!r} is {theirs!r} there but {mine!r} in the "
                                  "audited run (references must share the target's data and recipe family)")


def check_references_disjoint(ref_cfgs: Sequence[RunConfig], paths: Sequence[str], members, nonmembers) -> None:
    """Rebuild each reference model's training set from its config and refuse one that holds an audited image."""
    from akdray.data.splits import check_disjoint, load_splits

    for path, ref_cfg in zip(paths, ref_cfgs):
        try:
            own = load_splits(ref_cfg).train
        except DataError as exc:
            raise DataError(f"reference run {path}: its training set cannot be rebuilt to check it never saw an "
                            f"audited image: {exc}") from None
        for role, audited in (("audited member", members), ("audited non-member", nonmembers)):
            try:
                check_disjoint(audited, own, f"reference run {path}'s training")
            except DataError as exc:
                raise DataError(f"{exc} ({role}): a reference model must never have seen an audited image") from None
