"""Sweep analysis: a Ray Tune sweep's Parquet -> the paper's evidence, in one command.

``python analysis/report.py SWEEP_DIR`` turns ``SWEEP_DIR/{results,scores,samples}`` into
Pareto fronts and hypervolumes (Figs 3/4), the matched picks "at the same utility" and "at the
same privacy" as AKD (the paper's two DP-SGD rows), Tables II-IV, ROC curves, loss histograms
(Fig 7), a sample grid (Figs 5/6) and an HTML + Markdown report with the sweep's provenance.

Modules, one job each:

* :mod:`analysis.load`    - read the hive-partitioned Parquet datasets and ``sweep.json``.
* :mod:`analysis.fronts`  - Pareto fronts in (leak, NKID) and the 2-D hypervolume.
* :mod:`analysis.picks`   - the documented pick rule and ``confirmation_configs`` for the sweep.
* :mod:`analysis.tables`  - Tables II, III, IV (mean +- std over seeds) as DataFrames/Markdown/CSV.
* :mod:`analysis.figures` - the PNG figures (matplotlib Agg).
* :mod:`analysis.report`  - the command line: HTML (self-contained) + Markdown twin.
* :mod:`analysis.testing` - hand-built sweeps with known answers (tests, demos).

Only :mod:`akdray.config` (pure Python) is imported from the package, so the analysis runs on a
machine without torch.
"""
