"""The Pareto sweep on Ray: one module per job and process.

    cli.py         ``sweeps/pareto.py``: flags -> :class:`~akdray.sweep.spec.SweepSpec`, exit codes (driver)
    spec.py        search spaces, the stored sweep, validation, the printed plan (driver, no Ray Train)
    stages.py      reference / teacher / search stages, resume, resources (driver)
    confirm.py     the confirmation stage on unseen seeds (driver)
    refine.py      ``--refine-picks`` rounds (driver)
    references.py  the reference models' trial configs and where they landed (driver)
    search.py      Optuna: one study per (defense, seed), all routed through one Tune searcher (driver)
    sink.py        the Tune callback writing Parquet rows (driver; schema in :mod:`akdray.results`)
    meta.py        a trial's typed metadata (TrialMeta) and config parts, a dict only inside Tune (driver, trial)
    trial.py       the Tune trial driver and the Ray Train worker (trial actors; the only ray.train user)
    local_store.py storing a run in Ray Train's local mode (``--train-workers 0``): folder, then report.json
    scratch.py     the temporary run folder, and those a killed trial process left behind
"""
