"""A run's *recipe*: its configuration without what changes from one confirmation run to the next.

The confirmation stage re-runs a picked configuration with other seeds (and its own teacher,
reference models and evaluation split). Two runs with the same :func:`recipe_key` are runs of one
recipe; the confirmation stage skips a (pick, seed) whose recipe already has a row, and the report
keeps only the confirmation rows of the picks' *current* recipes (a ``--refine-picks`` round can
change a pick after it was confirmed).
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

from akdray.config import FIELD_TYPES

# Fields the confirmation stage sets per run; the rest is the recipe. kid_max_images: a search trial
# measures its val_nkid on fewer images (--search-kid-images) than the confirmation runs of its pick.
PER_RUN_FIELDS = frozenset({"seed", "eval_split", "teacher_checkpoint", "reference_checkpoints", "kid_max_images"})


def _plain(value: Any, typ: type) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = value.item() if hasattr(value, "item") else value  # numpy / pandas scalars
    return bool(value) if typ is bool else typ(value)


def recipe_key(values: Mapping[str, Any]) -> str:
    """Digest of the RunConfig fields of ``values`` (a config dict or a results row) other than
    :data:`PER_RUN_FIELDS`, each as a plain value of its field's type (absent fields count as None)."""
    recipe = [(name, _plain(values.get(name), typ)) for name, typ in sorted(FIELD_TYPES.items())
              if name not in PER_RUN_FIELDS]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
