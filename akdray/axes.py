"""The two axes every comparison is made on, defined once (no torch, no pandas).

Each axis names the measure the tables report (``column``: the test block), the measure selection
uses (``selection``: the validation block, what the search minimises and what fronts, picks,
hypervolume and ``--refine-picks`` read), the value it is measured against (``chance``: a model
that leaked nothing / an image set identical to the real one) and the reference value of the
hypervolume box (``worst``). Both axes are minimised.

* **privacy** - ``leak`` (:mod:`akdray.attacks.leak`: the AUC of the attack chosen on held-out
  images, unfolded), chance 0.5: a model that leaked nothing scores 0.5 on average; the hypervolume box ends at 1.0 (a perfect attack).
* **utility** - ``nkid`` (normalised KID, :mod:`akdray.metrics.kid`), ideal 0; the box ends at 1.0.

A sweep from before the validation block has no ``val_*`` columns; it is selected on its test
measures (:func:`columns`, ``measured_on = "test"``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    name: str  # short name ("privacy", "utility")
    column: str  # the reported measure (test block), read by the tables
    selection: str  # the selection measure (validation block), read by the search, fronts and picks
    chance: float  # the value of no leakage / perfect images: the ideal point's coordinate
    worst: float  # the hypervolume reference point's coordinate
    margin: float  # figures: the axis runs from ``chance - margin`` to ``max(worst, largest value) + margin``
    label: str  # axis label of the figures


PRIVACY = Axis("privacy", "leak", "val_leak", 0.5, 1.0, 0.02,
               "leak = AUC of the attack chosen on held-out images  (0.5 = no measurable leakage)")
UTILITY = Axis("utility", "nkid", "val_nkid", 0.0, 1.0, 0.03, "NKID (lower = better utility)")
AXES = (PRIVACY, UTILITY)

SELECTION = tuple(a.selection for a in AXES)  # ("val_leak", "val_nkid"): the search objectives
REPORTED = tuple(a.column for a in AXES)  # ("leak", "nkid"): the same measures on the test block
MODES = ("min", "min")  # both minimised
IDEAL = tuple(a.chance for a in AXES)  # (0.5, 0.0)
REFERENCE = tuple(a.worst for a in AXES)  # (1.0, 1.0): the hypervolume box; the largest volume is 0.5


def columns(measured_on: str) -> tuple[str, str]:
    """The (privacy, utility) columns selection reads: validation (``"val"``) or test (``"test"``) ones."""
    if measured_on not in ("val", "test"):
        raise ValueError(f"measured_on must be 'val' or 'test', got {measured_on!r}")
    return SELECTION if measured_on == "val" else REPORTED
