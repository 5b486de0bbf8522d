"""Membership attacks on image-to-image generators, as ML Privacy Meter lays them out:

* :mod:`signals` - what the attacker observes: the per-image L1 loss of a served model;
* :mod:`scores`  - membership scores from the signals: ``loss`` (Eq. 3), ``cal`` (difficulty
  calibration, Watson et al. 2022) and ``lira`` (offline LiRA, Carlini et al. 2022);
* :mod:`metrics` - AUC with a bootstrap CI, TPR at low FPR (null where the sample cannot support
  it) and ``leak``, the privacy axis centred on chance;
* :mod:`suite`   - all of it for one target and its reference models: row columns + per-image scores;
* :mod:`references` - loading the reference models (and any target) behind one function each.
"""
