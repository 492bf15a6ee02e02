"""The kernel spectrum on the data measure (docs/theory.md §1).

A pool of N inputs with targets y defines the uniform measure μ on the pool. For the Gram matrix
``K = Σ_k w_k v_k v_kᵀ`` (eigenvalues descending) rgjax fixes the normalisation

* operator eigenvalues ``λ_k = w_k / N``,
* features ``φ_k(x_i) = √N v_k[i]`` (orthonormal under μ),
* target coefficients ``y_k = v_kᵀ y / √N`` (so ``Σ_k y_k² = mean(y²)``).

A :class:`Spectrum` may hold only the top ``k`` modes: everything downstream obtains the tail mass
``Σ_{k>κ} λ_k`` from :attr:`Spectrum.trace` (the mean kernel diagonal) and the target power outside
the kept modes from :attr:`Spectrum.target_power`, so a truncated spectrum is a first-class object.

Three ways to get one from a pool:

* :func:`from_gram` with ``method="dense"``: float64 ``eigh`` of the whole Gram matrix (all N
  modes; ``O(N³)``). On a GPU, matrices above 2³¹ bytes are beyond dense ``eigh``: rgjax then warns
  and falls back to the top-k solver (:func:`dense_eigh_fits` makes the decision).
* :func:`from_gram` with ``method="topk"``: the top ``k`` modes by the block Krylov solver of
  :mod:`rgjax.eigensolve`, plus the trace.
* :func:`from_matvec`: the same from a matrix-free product ``V ↦ K V`` and the kernel diagonal, so
  the Gram matrix is never stored.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike, KeyLike
from rgjax._validate import as_float_array, check_int, concrete, warn
from rgjax.eigensolve import (
    DEFAULT_TOL,
    SolverOptions,
    SolverReport,
    as_auto_sharded,
    topk_eigh,
)
from rgjax.tail import (
    DEFAULT_PROBES,
    DEFAULT_STEPS,
    TailMeasure,
    check_tail_options,
    exact_tail,
    tail_measure,
)

__all__ = [
    "Spectrum",
    "from_gram",
    "from_matvec",
    "from_eigenvalues",
    "powerlaw",
    "dense_eigh_fits",
    "GPU_DENSE_EIGH_MAX_BYTES",
    "GPU_FALLBACK_K",
]

# Clipped negative eigenvalues above this fraction of the trace are more than round-off: warn.
_CLIP_WARN_FRACTION = 1e-8


@dataclass
class Spectrum:
    """Eigen-decomposition of a kernel on a pool, in rgjax's normalisation.

    Attributes:
      eigenvalues: ``(k,)`` operator eigenvalues ``λ_k = w_k/N``, descending, clipped at 0.
      target_coefficients: ``(k,)`` ``y_k = v_kᵀ y/√N``.
      trace: ``()`` ``Σ_k λ_k`` over *all* N modes, ``= tr(K)/N`` (mean kernel diagonal).
      target_power: ``()`` ``mean(y²) = Σ_k y_k²`` over all N modes.
      eigenvectors: ``(N, k)`` unit eigenvectors ``v_k`` of the Gram matrix, or ``None``.
      kernel_diagonal: ``(N,)`` ``K_ii``, or ``None``; needed for the input-dependent ridge of a
        truncated spectrum (docs/theory.md §5).
      clipped_mass: ``()`` total ``|λ|`` of negative round-off eigenvalues that were set to 0.
      n_pool: pool size N (static).
      solver: the top-k solver's :class:`~rgjax.eigensolve.SolverReport` (residuals, cycles,
        products, converged flag) for spectra from ``method="topk"`` or :func:`from_matvec`;
        ``None`` for dense and synthetic spectra.
      tail: the :class:`~rgjax.tail.TailMeasure` of the modes beyond the held ones (quadratures
        that every theory uses for them, docs/theory.md §8), or ``None``: then those modes count
        as unlearnable (their mass and target power only). ``from_gram(..., method="topk")``
        and :func:`from_matvec` compute it; :meth:`truncate` of a full spectrum keeps the
        dropped modes exactly.
    """

    eigenvalues: Array
    target_coefficients: Array
    trace: Array
    target_power: Array
    eigenvectors: Array | None = None
    kernel_diagonal: Array | None = None
    clipped_mass: Array | float = 0.0
    n_pool: int = field(static=True, default=0)
    solver: SolverReport | None = None
    tail: TailMeasure | None = None

    @property
    def n_modes(self) -> int:
        """Number of modes held (``k``)."""
        return int(self.eigenvalues.shape[-1])

    @property
    def is_truncated(self) -> bool:
        """True when fewer than ``n_pool`` modes are held."""
        return self.n_modes < self.n_pool

    @property
    def tail_mass(self) -> Array:
        """``Σ_{k > n_modes} λ_k``: eigenvalue mass beyond the held modes (exactly 0 when full)."""
        if not self.is_truncated:
            # trace − Σλ would only add round-off of size 1e-16·trace to every tail.
            return jnp.zeros((), self.eigenvalues.dtype)
        return jnp.maximum(self.trace - jnp.sum(self.eigenvalues), 0.0)

    @property
    def residual_power(self) -> Array:
        """``Σ_{k > n_modes} y_k²``: target power beyond the held modes (0 when full)."""
        if not self.is_truncated:
            return jnp.zeros((), self.eigenvalues.dtype)
        return jnp.maximum(self.target_power - jnp.sum(self.target_coefficients**2), 0.0)

    def features(self) -> Array:
        """``(N, k)`` features ``φ_k(x_i) = √N v_k[i]`` (orthonormal under the pool measure)."""
        if self.eigenvectors is None:
            raise ValueError(
                "this Spectrum holds no eigenvectors (built by from_eigenvalues); "
                "use from_gram(K, y) to get features."
            )
        return jnp.sqrt(float(self.n_pool)) * self.eigenvectors

    def truncate(self, k: int, *, tail: bool = True) -> Spectrum:
        """Keep the top ``k`` modes; trace and target power still describe the whole pool.

        With ``tail`` the dropped modes join the tail measure exactly (as nodes of weight
        ``y_j²`` and 1), so the theories of the truncated spectrum equal those of the original;
        ``tail=False`` drops any tail measure (the modes beyond ``k`` then count as unlearnable).
        """
        k = check_int(k, "k", 1, self.n_modes, "the number of modes held")
        vecs = None if self.eigenvectors is None else self.eigenvectors[:, :k]
        solver = self.solver
        if solver is not None:
            solver = dataclasses.replace(
                solver,
                residuals=solver.residuals[:k],
                relative_residuals=solver.relative_residuals[:k],
            )
        kept = self.tail if tail else None
        if tail and k < self.n_modes and (kept is not None or not self.is_truncated):
            kept = exact_tail(self.eigenvalues[k:], self.target_coefficients[k:] ** 2, kept)
        return dataclasses.replace(
            self,
            eigenvalues=self.eigenvalues[:k],
            target_coefficients=self.target_coefficients[:k],
            eigenvectors=vecs,
            solver=solver,
            tail=kept,
        )

    def __repr__(self) -> str:  # arrays can be 10^4 long: summarise instead
        lam = concrete(self.eigenvalues)
        head = "traced" if lam is None else f"λ_1={lam[0]:.3g}, λ_k={lam[-1]:.3g}"
        return (
            f"Spectrum(n_modes={self.n_modes}, n_pool={self.n_pool}, {head}, "
            f"dtype={self.eigenvalues.dtype})"
        )


def _as_gram(K: ArrayLike, y: ArrayLike) -> tuple[Array, Array]:
    """``K`` and ``y`` as floating jax arrays of shapes (N, N) and (N,), or a ValueError."""
    if isinstance(K, jax.Array):
        gram = as_auto_sharded(K)
    else:  # a host array goes to the device as is (jnp.asarray would compile a copy program)
        host = np.asarray(K)
        if not np.issubdtype(host.dtype, np.floating):
            host = host.astype(jnp.result_type(float))
        gram = jax.device_put(host)
    if not jnp.issubdtype(gram.dtype, jnp.floating):
        gram = gram.astype(jnp.result_type(float))
    target = as_float_array(jax.device_put(y) if isinstance(y, np.ndarray) else y, "y")
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"`K` must be a square (N, N) Gram matrix; got shape {gram.shape}.")
    if gram.shape[0] == 0:
        raise ValueError("`K` is empty (0 × 0): the pool needs at least one point.")
    if target.ndim != 1 or target.shape[0] != gram.shape[0]:
        raise ValueError(
            f"`y` must have shape (N,) = ({gram.shape[0]},) to match K; got {target.shape}. "
            "For multi-output targets call from_gram once per output."
        )
    return gram, target


def check_gram_values(K: Array, exact_symmetry: bool, psd: bool = False) -> None:
    """No NaN/Inf and symmetric to round-off (concrete K only); with ``psd``, no sign of an
    indefinite matrix either (:func:`_check_psd`).

    ``exact_symmetry=False`` checks symmetry with random probes, ``‖(K − Kᵀ)z‖_∞`` for four
    Gaussian ``z``, which reads K twice in its own layout instead of once transposed (the
    transposed read costs as much as the whole top-k solve at N ≈ 10⁴).
    """
    if not isinstance(K, Tracer):
        stats = _gram_stats(K) if exact_symmetry else _gram_stats_probe(K)
        bad, asym, scale = (float(a) for a in stats)
        if bad:
            raise ValueError(
                f"`K` contains {int(bad)} NaN/Inf value(s); clean or impute them before calling "
                "rgjax."
            )
        scale = scale or 1.0
        # Blocked Gram builders are symmetric to round-off; anything larger is a different matrix.
        if asym > 1e-8 * scale:
            what = "max |K - Kᵀ|" if exact_symmetry else "max |K - Kᵀ| ≈ ‖(K - Kᵀ)z‖_∞/10, random z"
            raise ValueError(
                f"`K` is not symmetric ({what} = {asym:.3g}, relative {asym / scale:.3g}); "
                "pass a kernel Gram matrix, or symmetrise it with (K + K.T) / 2 if the asymmetry "
                "is round-off."
            )
        if psd:
            _check_psd(K, scale)


def _check_psd(K: Array, scale: float) -> None:
    """Raise when ``K`` is clearly not positive semi-definite: a negative diagonal entry, or a
    negative ``zᵀKz`` for one of eight Gaussian probes (beyond round-off). A cheap certificate,
    not a proof of definiteness: it catches ``−K`` and strongly indefinite matrices."""
    low_diag, low_form, norm2 = (float(a) for a in _psd_probe(K))
    tol = 1e-8 * scale
    if low_diag < -tol or low_form < -tol * norm2:
        which = (f"a negative diagonal entry K_ii = {low_diag:.3g}" if low_diag < -tol else
                 f"zᵀKz = {low_form:.3g} < 0 for a random z")
        raise ValueError(
            f"`K` is not positive semi-definite ({which}); a Gram matrix of a kernel is. Check "
            "its sign and how it was built (exact GP regression with an indefinite K has no "
            "meaning: its errors would be arbitrary)."
        )


@jax.jit
def _psd_probe(K: Array) -> tuple[Array, Array, Array]:
    """(min K_ii, min_z zᵀKz, |z|² of that z) for eight fixed Gaussian z, where K lives."""
    z = jax.random.normal(jax.random.PRNGKey(7), (K.shape[0], 8), K.dtype)
    forms = jnp.sum(z * (K @ z), axis=0)
    j = jnp.argmin(forms)
    return jnp.min(jnp.diagonal(K)), forms[j], jnp.sum(z[:, j] ** 2)


@jax.jit
def _gram_stats(K: Array) -> tuple[Array, Array, Array]:
    """(number of non-finite entries, max |K − Kᵀ|, max |K|), computed where K lives."""
    finite = jnp.isfinite(K)
    Kf = jnp.where(finite, K, 0.0)
    return jnp.sum(~finite), jnp.max(jnp.abs(Kf - Kf.T)), jnp.max(jnp.abs(Kf))


@jax.jit
def _gram_stats_probe(K: Array) -> tuple[Array, Array, Array]:
    """As :func:`_gram_stats`, with the asymmetry estimated as ``‖(K − Kᵀ)z‖_∞ / 10``.

    For Gaussian ``z`` the entries of ``(K − Kᵀ)z`` are of the size of the row norms of
    ``K − Kᵀ`` (≥ its largest entry); the factor 10 and four probes make a miss of an asymmetric
    entry above the threshold very unlikely, while round-off (``≈ εN max|K|``) stays far below
    it for any N that fits in memory.
    """
    # No masked copy of K (N² more memory): with a NaN/Inf the count is > 0 and the caller
    # raises before looking at the other two numbers.
    z = jax.random.normal(jax.random.PRNGKey(0), (K.shape[0], 4), K.dtype)
    asym = jnp.max(jnp.abs(K @ z - K.T @ z)) / 10.0
    return jnp.sum(~jnp.isfinite(K)), asym, jnp.max(jnp.abs(K))


GPU_DENSE_EIGH_MAX_BYTES = 2**31
"""Dense ``eigh`` on GPUs (cuSOLVER) fails for matrices larger than this many bytes."""

GPU_FALLBACK_K = 2048
"""Modes computed when :func:`from_gram` falls back from dense to top-k without a given ``k``."""


def dense_eigh_fits(nbytes: int, platform: str) -> bool:
    """Whether a dense ``eigh`` of an ``nbytes`` matrix works on ``platform``.

    False exactly for GPUs (``platform`` ``"gpu"``, ``"cuda"`` or ``"rocm"``) and matrices above
    :data:`GPU_DENSE_EIGH_MAX_BYTES` (2³¹ bytes, i.e. N > 16,384 in float64): there
    :func:`from_gram` switches to the top-k solver. CPUs and TPUs are limited only by memory.
    """
    gpu = str(platform).lower() in ("gpu", "cuda", "rocm")
    return not (gpu and nbytes > GPU_DENSE_EIGH_MAX_BYTES)


def _platform_of(K: Array) -> str:
    """Platform of the device(s) holding ``K`` (the default backend for tracers)."""
    try:
        return next(iter(K.devices())).platform
    except Exception:  # tracers and arrays without committed devices
        return jax.default_backend()


def _check_k(k: int, n: int) -> int:
    return check_int(k, "k", 1, n, f"the number of modes, at most the pool size N={n}")


def from_gram(
    K: ArrayLike,
    y: ArrayLike,
    k: int | None = None,
    *,
    method: str = "dense",
    key: KeyLike = 0,
    tol: float = DEFAULT_TOL,
    solver_options: SolverOptions | None = None,
    tail_steps: int = DEFAULT_STEPS,
    tail_probes: int = DEFAULT_PROBES,
    allow_indefinite: bool = False,
) -> Spectrum:
    """Diagonalise a Gram matrix on the pool measure.

    Args:
      K: ``(N, N)`` symmetric PSD Gram matrix ``K(x_i, x_j)`` (for ``"topk"`` any sharding works).
      y: ``(N,)`` targets.
      k: keep only the top ``k`` modes (default: all N; required for ``"topk"``). The trace and
        target power still cover all N modes, so the tail enters every theory exactly through
        them.
      method: ``"dense"`` (float64 ``eigh`` of the whole matrix, then truncated to ``k``) or
        ``"topk"`` (the top ``k`` modes only, by :func:`rgjax.eigensolve.topk_eigh`: block
        Krylov, ``O(N² k)`` instead of ``O(N³)``; the solver's report is kept in
        ``spec.solver``). On a GPU, ``"dense"`` with a matrix above 2³¹ bytes falls back to
        ``"topk"`` with ``k`` (default :data:`GPU_FALLBACK_K`) and a
        :class:`~rgjax.RgjaxWarning`.
      key: ``"topk"`` only: seed of the random start block.
      tol: ``"topk"`` only: relative residual tolerance.
      solver_options: ``"topk"`` only: further keyword arguments of
        :func:`~rgjax.eigensolve.topk_eigh` (``block_size``, ``basis_size``, ``max_iter``).
      tail_steps: ``"topk"`` only: Lanczos steps of the tail measure (:mod:`rgjax.tail`), the
        quadrature through which every theory sees the modes beyond ``k``; 0 leaves it out
        (those modes then count as unlearnable). ``"dense"`` keeps the dropped modes exactly.
      tail_probes: ``"topk"`` only: Rademacher probes of the tail's unweighted sums (one block;
        their sampling error shrinks like ``1/√p``).
      allow_indefinite: clip negative eigenvalues beyond round-off to 0 with a warning, instead
        of raising (a kernel Gram matrix is PSD; negative mass means a wrong sign or float32).

    Returns:
      A :class:`Spectrum`. Negative round-off eigenvalues are clipped to 0; their total mass is
      stored in ``clipped_mass``. Beyond ``1e-8 × trace`` (more than round-off) it is an error,
      or with ``allow_indefinite`` a :class:`~rgjax.RgjaxWarning`.

    Differentiation. ``"dense"``: with respect to ``K`` and ``y``. On exactly degenerate
    eigenvalues (relative gap ≤ 1e-12) the eigenvector rotation inside the degenerate subspace is
    given zero derivative instead of NaN: gradients of the theories stay finite, and are exact
    for perturbations of K that do not mix the degenerate subspace (e.g. rescaling the kernel).
    ``"topk"``: exact derivatives of the eigenvalues, trace and target power; the eigenvectors —
    hence ``y_k`` and every theory's curve — get NaN derivatives (they would need the uncomputed
    modes). Differentiate through ``"dense"``, or the eigenvector-free paths of
    :mod:`rgjax.optimize`.

    Examples:
      >>> import numpy as np
      >>> from rgjax.spectrum import from_gram
      >>> x = np.linspace(-1.0, 1.0, 50)
      >>> K = np.exp(-((x[:, None] - x[None, :]) ** 2))  # an RBF Gram matrix, K_ii = 1
      >>> spec = from_gram(K, np.sin(3 * x))
      >>> spec.n_modes, spec.n_pool, spec.is_truncated
      (50, 50, False)
      >>> print(f"{float(spec.trace):.4f} {float(spec.eigenvalues[0]):.4f}")
      1.0000 0.6446
      >>> top = spec.truncate(5)  # the tail mass still comes from the trace
      >>> print(top.n_modes, f"{float(top.tail_mass):.4f}")
      5 0.0002
    """
    if method not in ("dense", "topk"):
        raise ValueError(f"unknown `method` {method!r}; available: 'dense', 'topk'.")
    K, y = _as_gram(K, y)
    n = K.shape[0]
    if k is not None:
        k = _check_k(k, n)
    check_tail_options(tail_steps, tail_probes)
    if method == "dense":
        nbytes = int(np.prod(K.shape)) * K.dtype.itemsize
        platform = _platform_of(K)
        if not dense_eigh_fits(nbytes, platform):
            k = min(n, GPU_FALLBACK_K) if k is None else k
            warn(
                f"dense eigh on {platform} fails for matrices above 2**31 bytes and K "
                f"({n}×{n}, {nbytes / 2**30:.1f} GiB) is larger: computing the top k={k} modes "
                "with method='topk' instead, plus the tail measure of the rest "
                f"({tail_steps} Lanczos steps, {tail_probes} probes). EK and the RG (where its "
                "cutoff lies inside the k modes) come out as from the full spectrum to ~1e-9 or "
                "better; "
                "the spectral bias to its probes' sampling error (typically 1e-5 to 1e-3): "
                "rgjax.truncation_error(spec, eta, sigma2, theory=...) gives the estimate per η. "
                "Pass method='topk' with your own k to choose the number of modes and silence "
                "this warning, or move K to the CPU for the full spectrum."
            )
            method = "topk"
    check_gram_values(K, exact_symmetry=method == "dense")
    if method == "topk":
        if k is None:
            raise ValueError(
                "method='topk' needs `k`, the number of modes to compute (e.g. k=256); the "
                "trace covers the rest. Use method='dense' for all N modes."
            )
        res = topk_eigh(K, k, key=key, tol=tol, **(solver_options or {}))
        spec = _assemble(
            res.eigenvalues, res.eigenvectors, y, n, diag=jnp.diag(K), solver=res.report
        )
        _report_clipping(spec, allow_indefinite)
        return _with_tail(spec, K, y, tail_steps, tail_probes, key)
    w, v, vt, diag = _dense_eigh(K)
    spec = _assemble(w, v, y, n, diag=diag, vt=vt)
    _report_clipping(spec, allow_indefinite)
    return spec if k is None else spec.truncate(k)


def from_matvec(
    matvec: Callable[[Array], Array],
    y: ArrayLike,
    k: int,
    *,
    diagonal: ArrayLike | None = None,
    trace: ArrayLike | None = None,
    key: KeyLike = 0,
    tol: float = DEFAULT_TOL,
    solver_options: SolverOptions | None = None,
    tail_steps: int = DEFAULT_STEPS,
    tail_probes: int = DEFAULT_PROBES,
) -> Spectrum:
    """Top-``k`` spectrum from a matrix-free Gram product, without storing the ``(N, N)`` matrix.

    Args:
      matvec: jax-traceable ``matvec(V) -> K @ V`` on ``(N, b)`` blocks, e.g.
        ``rgjax.kernels.gram_operator(kernel, x)`` or
        ``functools.partial(rgjax.kernels.gram_matvec, kernel, x)``: the array leaves of a
        callable pytree and the array arguments of a ``partial`` become jit operands (arrays a
        plain function closes over would be baked into the program as constants).
      y: ``(N,)`` targets (they fix N).
      k: number of modes, ``1 ≤ k ≤ N``.
      diagonal: ``(N,)`` kernel diagonal ``K(x_i, x_i)``: gives the trace (its mean) and is kept
        as ``kernel_diagonal`` for the input-dependent ridge of docs/theory.md §5.
      trace: instead of ``diagonal``: ``Σ_k λ_k = tr(K)/N``, the *mean* kernel diagonal (not
        ``tr(K)``). Pass at most one of ``diagonal`` and ``trace``; with neither, ``matvec`` must
        have a ``diagonal()`` method (as :class:`rgjax.kernels.GramOperator` has).
      key: seed of the random start block (as in :func:`from_gram`).
      tol: relative residual tolerance.
      solver_options: further keyword arguments of :func:`~rgjax.eigensolve.topk_eigh`.
      tail_steps, tail_probes: the tail measure, as in :func:`from_gram` (0 steps: none).

    Returns:
      A truncated :class:`Spectrum` (``k`` modes, ``n_pool = N``) with the solver's report in
      ``spec.solver``; eigenvalues clipped at 0 and reported like :func:`from_gram`.

    Raises ``ValueError`` when the trace is inconsistent with the computed eigenvalues (below
    ``Σ_{i≤k} λ_i``, or above ``N λ_1``, which is what passing ``tr(K)`` instead of ``tr(K)/N``
    usually gives).

    Differentiation: as :func:`from_gram` with ``method="topk"`` (eigenvalues exact through the
    array arguments of a ``functools.partial``; eigenvector-dependent quantities NaN).
    """
    y = as_float_array(y, "y")
    if y.ndim != 1:
        raise ValueError(
            f"`y` must have shape (N,); got {y.shape}. For multi-output targets call from_matvec "
            "once per output."
        )
    n = y.shape[0]
    k = _check_k(k, n)
    check_tail_options(tail_steps, tail_probes)
    if not callable(matvec) or isinstance(matvec, (jax.Array, np.ndarray)):
        raise TypeError(
            "`matvec` must be a callable V -> K @ V on (N, b) blocks; for a stored matrix use "
            f"from_gram(K, y, k, method='topk'). Got {type(matvec).__name__}."
        )
    # A matvec object with a diagonal() method (rgjax.kernels.GramOperator) gives the trace itself.
    diagonal_of: Callable[[], ArrayLike] | None = getattr(matvec, "diagonal", None)
    if diagonal is None and trace is None and callable(diagonal_of):
        diagonal = diagonal_of()
    if (diagonal is None) == (trace is None):
        raise ValueError(
            "pass exactly one of `diagonal` (the (N,) kernel diagonal K(x_i, x_i)) or `trace` "
            "(its mean, tr(K)/N): the tail mass beyond the top k modes needs it. "
            "rgjax.kernels.gram_diagonal(kernel, x) computes the diagonal."
        )
    diag = None
    if diagonal is not None:
        diag = as_float_array(diagonal, "diagonal")
        if diag.shape != (n,):
            raise ValueError(
                f"`diagonal` must have shape (N,) = ({n},) to match y; got {diag.shape}."
            )
    else:
        trace = as_float_array(trace, "trace")
        if trace.shape != ():
            raise ValueError(
                f"`trace` must be a scalar (tr(K)/N, the mean kernel diagonal); got shape "
                f"{trace.shape}."
            )
    res = topk_eigh(matvec, k, n=n, dtype=y.dtype, key=key, tol=tol, **(solver_options or {}))
    spec = _assemble(
        res.eigenvalues, res.eigenvectors, y, n, diag=diag, trace=trace, solver=res.report
    )
    _check_trace(spec)
    _report_clipping(spec)
    return _with_tail(spec, matvec, y, tail_steps, tail_probes, key)


def _with_tail(spec: Spectrum, operator: ArrayLike | Callable[[Array], Array], y: Array,
               steps: int, probes: int, key: KeyLike) -> Spectrum:
    """``spec`` with the tail measure of the modes beyond its ``k`` (none when ``steps`` is 0
    or fewer than two modes are left)."""
    if steps == 0 or spec.n_pool - spec.n_modes < 2 or spec.eigenvectors is None:
        return spec
    tail = tail_measure(operator, spec.eigenvectors, y, steps=steps, probes=probes, key=key,
                        eigenvalues=spec.eigenvalues)
    return dataclasses.replace(spec, tail=tail)


def _check_trace(spec: Spectrum) -> None:
    """The trace must lie between the sum of the top-k eigenvalues and ``N λ_1``."""
    tr, lam = concrete(spec.trace), concrete(spec.eigenvalues)
    if tr is None or lam is None:
        return
    tr, top, first = float(tr), float(np.sum(lam)), float(lam[0])
    slack = 1e-8 * max(abs(tr), top)
    if tr < top - slack:
        raise ValueError(
            f"the trace {tr:.6g} (mean kernel diagonal) is smaller than the sum of the top "
            f"{lam.shape[0]} eigenvalues λ_k = w_k/N, {top:.6g}: `diagonal`/`trace` does not "
            "belong to this matvec. Pass the diagonal K(x_i, x_i) of the same kernel and inputs."
        )
    if tr > spec.n_pool * first + slack:
        raise ValueError(
            f"the trace {tr:.6g} exceeds N·λ_1 = {spec.n_pool * first:.6g}, impossible for a PSD "
            "kernel: `trace` must be tr(K)/N (the mean kernel diagonal), not tr(K)."
        )


# Eigenvalues closer than this (relative to the largest) are treated as exactly degenerate.
_DEGENERATE_RTOL = 1e-12


@jax.custom_jvp
def _eigh_descending(K: Array) -> tuple[Array, Array]:
    w, v = jnp.linalg.eigh(K)
    return w[::-1], v[:, ::-1]


@_eigh_descending.defjvp
def _eigh_descending_jvp(primals, tangents):
    # Standard eigh derivative, dV = V (F ∘ Vᵀ dK V) with F_ij = 1/(w_j − w_i), except that the
    # rotation *inside* an exactly degenerate eigenspace (F_ij = ±inf, where plain eigh gives NaN)
    # is set to zero. Eigenvalue derivatives and anything invariant under such rotations
    # (traces, eigenvalue functions, y-weighted sums for perturbations that do not mix the
    # degenerate subspace) stay exact.
    (K,), (dK,) = primals, tangents
    w, v = _eigh_descending(K)
    a = v.T @ ((dK + dK.T) / 2) @ v
    gap = w[None, :] - w[:, None]
    tol = _DEGENERATE_RTOL * jnp.max(jnp.abs(w)) + jnp.finfo(w.dtype).tiny
    degenerate = jnp.abs(gap) <= tol
    f = jnp.where(degenerate, 0.0, 1.0 / jnp.where(degenerate, 1.0, gap))
    return (w, v), (jnp.diagonal(a), v @ (f * a))


@jax.jit
def _dense_eigh(K: Array) -> tuple[Array, Array, Array, Array]:
    """``(w, v, vᵀ, diag K)``: descending eigenpairs of ``K``, with ``vᵀ`` materialised for
    :func:`_assemble` (a product with a transpose folded into it sums in another order)."""
    w, v = _eigh_descending(K)
    return w, v, v.T, jnp.diag(K)


def _assemble(
    w: Array,
    v: Array,
    y: Array,
    n: int,
    *,
    diag: Array | None,
    trace: ArrayLike | None = None,
    solver: SolverReport | None = None,
    vt: Array | None = None,
) -> Spectrum:
    """Spectrum in rgjax's normalisation from Gram eigenpairs ``w`` (k,), ``v`` (N, k).

    The trace is ``trace`` when given, else the mean of the kernel diagonal ``diag`` (N,).
    ``vt`` is ``v.T`` when the caller already has it.
    """
    # √N travels as a value, not a constant, as in ``v.T @ y / jnp.sqrt(N)`` op by op (XLA turns
    # a division by a constant into a multiplication by its rounded reciprocal).
    root_n = np.sqrt(np.asarray(n, dtype=w.dtype))
    lam, coef, total, power, clipped = _assemble_arrays(w, v if vt is None else vt, y, root_n,
                                                        diag, trace, n=n, transposed=vt is not None)
    return Spectrum(
        eigenvalues=lam,
        target_coefficients=coef,
        trace=total,
        target_power=power,
        eigenvectors=v,
        kernel_diagonal=diag,
        clipped_mass=clipped,
        n_pool=n,
        solver=solver,
    )


@functools.partial(jax.jit, static_argnames=("n", "transposed"))
def _assemble_arrays(
    w: Array, v: Array, y: Array, root_n: Array, diag: Array | None, trace: ArrayLike | None,
    n: int, transposed: bool,
) -> tuple[Array, Array, Array, Array, Array]:
    """``(λ clipped at 0, y_k, trace, target power, clipped mass)`` in one compiled program.

    ``v`` is the ``(N, k)`` eigenvector matrix, or its transpose when ``transposed``.
    """
    vt = v if transposed else v.T
    lam = w / n
    clipped = jnp.sum(jnp.where(lam < 0, -lam, 0.0))
    if trace is not None:
        total = jnp.asarray(trace, lam.dtype)
    elif diag is not None:
        total = jnp.mean(diag)
    else:
        raise ValueError("the spectrum needs the kernel diagonal or the trace for its tail mass.")
    coef = vt @ y / root_n
    return jnp.maximum(lam, 0.0), coef, total, jnp.mean(y**2), clipped


def _report_clipping(spec: Spectrum, allow_indefinite: bool = False) -> None:
    """Negative eigenvalues beyond round-off: an error (every theory would be meaningless), or
    with ``allow_indefinite`` a warning (they are clipped to 0)."""
    clipped, tr = concrete(spec.clipped_mass), concrete(spec.trace)
    if clipped is None or tr is None:
        return
    if float(clipped) > _CLIP_WARN_FRACTION * abs(float(tr)):
        msg = (f"clipped negative eigenvalues of total mass {float(clipped):.3g} "
               f"({float(clipped) / float(tr):.2g} of the trace); the Gram matrix is not PSD "
               "beyond round-off: check the kernel, or build K in float64")
        if not allow_indefinite:
            raise ValueError(f"`K`: {msg}. Pass allow_indefinite=True to clip them to 0 anyway.")
        warn(msg + ".")


def from_eigenvalues(
    eigenvalues: ArrayLike,
    target_coefficients: ArrayLike,
    *,
    trace: ArrayLike | None = None,
    target_power: ArrayLike | None = None,
    n_pool: int | None = None,
) -> Spectrum:
    """Build a spectrum directly from ``λ_k`` and ``y_k`` (synthetic or population spectra).

    Args:
      eigenvalues: ``(k,)`` non-negative, sorted descending.
      target_coefficients: ``(k,)``.
      trace: total ``Σ λ`` over all modes (default: the sum of those given, i.e. no tail).
      target_power: total ``Σ y²`` (default: the sum of those given).
      n_pool: number of modes of the full problem (default: ``k``). Required when ``trace`` or
        ``target_power`` describe modes beyond those given (a truncated spectrum).
    """
    lam = as_float_array(eigenvalues, "eigenvalues")
    yk = as_float_array(target_coefficients, "target_coefficients")
    if lam.ndim == 1 and lam.shape[0] == 0:
        raise ValueError("`eigenvalues` is empty: a spectrum needs at least one mode.")
    if lam.ndim != 1 or yk.shape != lam.shape:
        raise ValueError(
            f"`eigenvalues` and `target_coefficients` must both have shape (k,); got "
            f"{lam.shape} and {yk.shape}."
        )
    lam_np = concrete(lam)
    if lam_np is not None:
        if np.any(lam_np < 0):
            raise ValueError("`eigenvalues` must be non-negative (clip round-off negatives first).")
        if np.any(np.diff(lam_np) > 0):
            raise ValueError("`eigenvalues` must be sorted in descending order.")
    y_np = concrete(yk)
    if lam_np is not None and y_np is not None:  # host sums: no eager programs to compile
        sum_lam, sum_y2 = jnp.asarray(np.sum(lam_np)), jnp.asarray(np.sum(y_np**2))
    else:
        sum_lam, sum_y2 = jnp.sum(lam), jnp.sum(yk**2)
    tr = sum_lam if trace is None else jnp.asarray(trace, dtype=lam.dtype)
    tp = sum_y2 if target_power is None else jnp.asarray(target_power, dtype=lam.dtype)
    if n_pool is None and (trace is not None or target_power is not None):
        raise ValueError(
            "pass `n_pool` (the total number of modes) together with `trace`/`target_power`, "
            "so that the spectrum knows it is truncated."
        )
    n = lam.shape[0] if n_pool is None else int(n_pool)
    if n < lam.shape[0]:
        raise ValueError(f"`n_pool`={n} is smaller than the number of modes {lam.shape[0]}.")
    return Spectrum(eigenvalues=lam, target_coefficients=yk, trace=tr, target_power=tp, n_pool=n)


def powerlaw(
    n_modes: int, alpha: float = 0.5, beta: float | None = None, *, normalize: bool = True
) -> Spectrum:
    """A power-law population spectrum: ``λ_k ∝ k^{-(1+α)}``, ``y_k² ∝ k^{-(1+β)}``.

    ``beta`` defaults to ``alpha``. With ``normalize`` both ``Σ λ_k`` and ``Σ y_k²`` equal 1.
    Useful for demos and tests.
    """
    n_modes = check_int(n_modes, "n_modes", 1)
    beta = alpha if beta is None else beta
    k = jnp.arange(1, n_modes + 1, dtype=jnp.result_type(float))
    lam = k ** (-(1.0 + alpha))
    y2 = k ** (-(1.0 + beta))
    if normalize:
        lam, y2 = lam / jnp.sum(lam), y2 / jnp.sum(y2)
    return from_eigenvalues(lam, jnp.sqrt(y2))
