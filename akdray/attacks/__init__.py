"""Membership attacks on image-to-image generators, as ML Privacy Meter lays them out:

* :mod:`signals` - what the attacker observes: the per-image L1 loss of a served model;
* :mod:`registry` - the attacks, listed once (a new attack = one entry + its score function);
* :mod:`scores`  - membership scores from the signals: ``loss`` (Eq. 3), ``lira`` (offline LiRA,
  Carlini et al. 2022) and ``rmia`` (offline RMIA, Zarifzadeh et al. 2024);
* :mod:`metrics` - AUC with a logit-DeLong CI, TPR at low FPR with a Clopper-Pearson CI (null where
  the sample cannot support it);
* :mod:`leak`    - ``leak``, the privacy axis: the attack chosen on held-out images (0.5 on average
  without leakage), and the maximum over attacks with its permutation null;
* :mod:`suite`   - all of it for one target and its reference models: row columns + per-image scores;
* :mod:`references` - loading the reference models (and any target) behind one function each.
"""
