"""The ``rgjax`` command's jobs, one module each; none is imported by ``import rgjax``.

* :mod:`rgjax.jobs.curve` — theory vs experiment learning curves (``rgjax curve``).
* :mod:`rgjax.jobs.gaussianity` — Gaussian vs Cauchy fits of the feature modes.
* :mod:`rgjax.jobs.toy` — the Hermite toy model of non-Gaussian reweighting.
* :mod:`rgjax.jobs.optimize` — gradient-based tuning of the kernel on the predicted test MSE.
* :mod:`rgjax.jobs.bench` — timings, baselines and accuracy of every stage on this machine.

Each has a frozen ``Config`` (its fields carry the defaults and the command's help lines),
``run(cfg, out, *, progress=True, plots=True, log=print) -> dict`` writing the JSON file
``RESULTS_FILE`` and the figures into ``out``, and ``format_table(results) -> str``. The shared
pool → kernel → Gram → spectrum steps live in :mod:`rgjax.jobs._pipeline`, the results folder
(atomic JSON, versions, figures) in :mod:`rgjax.jobs._io`.
"""
