"""Non-dominated points in two minimised objectives (the privacy axis ``leak`` and NKID); no torch or Ray import."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def pareto_mask(x: Iterable[float], y: Iterable[float]) -> np.ndarray:
    """Boolean mask of the non-dominated points (minimising x and y); NaN points are never on it.

    Identical points are all kept.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = np.zeros(len(x), dtype=bool)
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    best_x, best_y = np.nan, np.inf
    for i in finite[np.lexsort((y[finite], x[finite]))]:  # by x, then y
        if y[i] < best_y:
            mask[i], best_x, best_y = True, x[i], y[i]
        elif y[i] == best_y and x[i] == best_x:  # duplicate of the last front point
            mask[i] = True
    return mask
