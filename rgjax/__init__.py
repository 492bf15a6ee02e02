"""rgjax — Wilsonian renormalization-group theory of NNGP regression in JAX.

Build an NNGP kernel, diagonalise it on a pool of data, integrate out the unlearnable modes,
follow the flow of the ridge σ², predict the learning curve and compare it with exact GP
regression — all differentiable. Source: Howard, Jefferson, Maiti & Ringel, *Wilsonian
Renormalization of Neural Network Gaussian Processes* (arXiv:2405.06008).

Conventions (``docs/theory.md`` §1): operator eigenvalues ``λ_k = eig(K)/N``, features
``φ_k(x_i) = √N v_k[i]``, target coefficients ``y_k = v_kᵀ y/√N``; the learnability cutoff
``κ*(η, T)`` is the first mode from the top with ``L_k < T``. Spectra and theories want float64:
call ``jax.config.update("jax_enable_x64", True)`` before creating arrays (the ``rgjax`` command
does).

Public API
----------
Kernels (:mod:`rgjax.kernels`): :func:`fc`, :func:`serial`, layers :class:`Dense`, :class:`Relu`,
:class:`Erf`, :class:`LeakyRelu`, :class:`Abs`, :class:`Identity`, :class:`Elementwise`,
:class:`Conv`, :class:`GlobalAvgPool`, :class:`Flatten`; :func:`gram` (optionally row-sharded over
devices), :func:`gram_operator` / :class:`GramOperator` (matrix-free ``K @ V``),
:func:`gram_diagonal`, :func:`from_kernel_fn`.

Spectrum (:mod:`rgjax.spectrum`, :mod:`rgjax.eigensolve`): :class:`Spectrum`, :func:`from_gram`
(dense or ``method="topk"``), :func:`from_matvec` (matrix-free top-k), :func:`from_eigenvalues`,
:func:`powerlaw`, :func:`topk_eigh`.

RG (:mod:`rgjax.rg`): :func:`ridge_flow`, :func:`learnability`, :func:`cutoff`,
:func:`effective_ridge`, :func:`eta_max`, :func:`input_dependent_ridge`,
:func:`truncation_error` and :func:`truncation_valid` (is a top-k spectrum, with its tail
measure :class:`TailMeasure`, enough for this η?).

Theories (:mod:`rgjax.theory`): :func:`mse_ek`, :func:`mse_rg`, :func:`mse_spectral_bias`,
:func:`kappa`, :func:`eigenlearning`.

Data and experiment (:mod:`rgjax.datasets`, :mod:`rgjax.empirical`): :func:`load_task`,
:class:`Task`, :func:`learning_curve`, :func:`gp_posterior_mean`, :class:`LearningCurve`.

Non-Gaussian features (:mod:`rgjax.nongaussian`, :mod:`rgjax.gaussianity`, :mod:`rgjax.toy`):
:func:`mse_reweighted`, :func:`functional_flow`, :func:`mode_diagnostics`,
:func:`gaussianity_sweep`, :class:`ToyProblem`, :func:`toy_monte_carlo`.

Optimisation (:mod:`rgjax.optimize`): :func:`predicted_mse` (differentiable end to end),
:func:`fit_kernel`, :func:`fit_curve`.

Compile cache (:mod:`rgjax.compile_cache`): :func:`enable_compile_cache` keeps JAX's compiled
programs on disk so the next process skips compiling them (the ``rgjax`` command does it).

Layout: this namespace is the core, the maths alone. The command-line jobs (``rgjax curve``,
``gaussianity``, ``toy``, ``optimize``) live in :mod:`rgjax.jobs`, one module each with a frozen
``Config`` and ``run(cfg, out)``; their figures in :mod:`rgjax.plotting`, which reads results
dictionaries only. Neither is imported here: imports go one way, core → jobs/plotting → CLI.
"""

from rgjax._validate import RgjaxWarning
from rgjax._version import __version__
from rgjax.compile_cache import enable as enable_compile_cache
from rgjax.datasets import Task, load_task
from rgjax.eigensolve import topk_eigh
from rgjax.empirical import LearningCurve, gp_posterior_mean, learning_curve
from rgjax.gaussianity import gaussianity_sweep, mode_diagnostics
from rgjax.kernels import (
    Abs,
    Conv,
    Dense,
    Elementwise,
    Erf,
    Flatten,
    GlobalAvgPool,
    GramOperator,
    Identity,
    Kernel,
    LeakyRelu,
    Relu,
    fc,
    from_kernel_fn,
    gram,
    gram_diagonal,
    gram_operator,
    serial,
)
from rgjax.nongaussian import functional_flow, mse_reweighted
from rgjax.optimize import fit_curve, fit_kernel, predicted_mse
from rgjax.rg import (
    Cutoff,
    cutoff,
    effective_ridge,
    eta_max,
    input_dependent_ridge,
    learnability,
    ridge_flow,
)
from rgjax.spectrum import Spectrum, from_eigenvalues, from_gram, from_matvec, powerlaw
from rgjax.tail import TailMeasure, tail_measure
from rgjax.theory import (
    Eigenlearning,
    eigenlearning,
    kappa,
    mse_ek,
    mse_rg,
    mse_spectral_bias,
)
from rgjax.toy import ToyProblem
from rgjax.toy import monte_carlo as toy_monte_carlo
from rgjax.truncation import truncation_error, truncation_valid

__all__ = [
    "__version__",
    "RgjaxWarning",
    # kernels
    "Kernel", "Dense", "Relu", "Erf", "LeakyRelu", "Abs", "Identity", "Elementwise", "Conv",
    "GlobalAvgPool", "Flatten", "serial", "fc", "gram", "gram_operator", "GramOperator",
    "gram_diagonal", "from_kernel_fn",
    # spectrum
    "Spectrum", "from_gram", "from_matvec", "from_eigenvalues", "powerlaw", "topk_eigh",
    # rg
    "Cutoff", "ridge_flow", "learnability", "cutoff", "effective_ridge", "eta_max",
    "input_dependent_ridge",
    # truncated spectra
    "TailMeasure", "tail_measure", "truncation_error", "truncation_valid",
    # theory
    "Eigenlearning", "mse_ek", "mse_rg", "mse_spectral_bias", "kappa", "eigenlearning",
    # data and experiment
    "Task", "load_task", "LearningCurve", "learning_curve", "gp_posterior_mean",
    # non-Gaussian features
    "mse_reweighted", "functional_flow", "mode_diagnostics", "gaussianity_sweep", "ToyProblem",
    "toy_monte_carlo",
    # optimisation
    "predicted_mse", "fit_kernel", "fit_curve",
    # compile cache
    "enable_compile_cache",
]
