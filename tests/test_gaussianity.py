"""Feature-mode Gaussianity diagnostics (docs/theory.md §6): the fits against asymptotic theory and
scipy, the report and crossover rule, a real bundled pool, the ``rgjax gaussianity`` job and its
figures, and named errors for bad inputs.

Shapes are shared between tests on purpose: the jitted diagnostics core compiles once per
(N, column bucket), which dominates the runtime on 2 cores.
"""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats as st

from rgjax import datasets, gaussianity as gs, kernels, plotting, spectrum
from rgjax.gaussianity import (
    GaussianityReport,
    cauchy_loglik,
    crossover,
    excess_kurtosis,
    fit_cauchy,
    fit_gaussian,
    gaussian_loglik,
    ks_statistic,
    mode_diagnostics,
)
from rgjax.jobs.gaussianity import GaussianityConfig
from rgjax.jobs.gaussianity import run as run_gaussianity

N_SYN = 20_000
# (family, loc, scale) of the four synthetic columns: two Gaussian, then two Cauchy.
COLUMNS = (("gaussian", 0.3, 1.7), ("gaussian", -1.0, 0.5), ("cauchy", 1.5, 0.7),
           ("cauchy", -2.0, 3.0))
FIGURES = ("gaussianity_pair.png", "gaussianity_tails.png", "gaussianity_sweep.png")


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    rng = np.random.default_rng(1234)
    cols = [rng.normal(m, s, N_SYN) if fam == "gaussian" else m + s * rng.standard_cauchy(N_SYN)
            for fam, m, s in COLUMNS]
    return np.stack(cols, axis=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def real_spec(tmp_path_factory):
    """Bundled MNIST 0-1, 200 points, the `rgjax curve` default kernel."""
    task = datasets.load_task("mnist-0-1", source="bundled", pool_size=200, verbose=False,
                              cache_dir=tmp_path_factory.mktemp("cache"))
    K = kernels.gram(kernels.fc(2, "relu", W_std=math.sqrt(2.0), b_std=0.1), task.x)
    return spectrum.from_gram(K, task.y)


def _scipy_cauchy_fit(x):
    # scipy's generic fit uses Nelder-Mead at loose default tolerances: tighten them so that the
    # reference is accurate to well below the 1e-5 being tested.
    def opt(func, x0, args=(), disp=0):
        return scipy.optimize.fmin(func, x0, args=args, xtol=1e-11, ftol=1e-13, disp=0,
                                   maxiter=20_000, maxfun=40_000)

    return st.cauchy.fit(x, optimizer=opt)


# ------------------------------------------------------------------------------------------------
# fits


def test_fits_recover_parameters_within_standard_errors(synthetic):
    mean, std = map(np.asarray, fit_gaussian(synthetic))
    loc, scale = map(np.asarray, fit_cauchy(synthetic))
    for j, (fam, m, s) in enumerate(COLUMNS):
        if fam == "gaussian":
            # SE(mean) = σ/√N, SE(std) = σ/√(2N)
            assert abs(mean[j] - m) < 4 * s / math.sqrt(N_SYN)
            assert abs(std[j] - s) < 4 * s / math.sqrt(2 * N_SYN)
        else:
            # Cauchy MLE: Fisher information 1/(2s²) per point for loc and for scale
            se = s * math.sqrt(2.0 / N_SYN)
            assert abs(loc[j] - m) < 4 * se
            assert abs(scale[j] - s) < 4 * se
    # 1-D input gives scalars equal to the column-wise result
    l0, s0 = fit_cauchy(synthetic[:, 2])
    assert np.ndim(l0) == 0 and float(l0) == pytest.approx(loc[2], rel=1e-10)
    assert float(s0) == pytest.approx(scale[2], rel=1e-10)


def test_cauchy_mle_matches_scipy(synthetic):
    loc, scale = map(np.asarray, fit_cauchy(synthetic))
    for j in (0, 2, 3):  # a Gaussian sample too: the MLE is defined for any sample
        ref_loc, ref_scale = _scipy_cauchy_fit(synthetic[:, j])
        assert abs(loc[j] - ref_loc) <= 1e-5 * ref_scale
        assert scale[j] == pytest.approx(ref_scale, rel=1e-5)
        # ours is the maximum: never below scipy's likelihood
        ours = st.cauchy.logpdf(synthetic[:, j], loc[j], scale[j]).mean()
        theirs = st.cauchy.logpdf(synthetic[:, j], ref_loc, ref_scale).mean()
        assert ours >= theirs - 1e-12


def test_loglik_ks_and_kurtosis_match_scipy(synthetic):
    mean, std = fit_gaussian(synthetic)
    loc, scale = fit_cauchy(synthetic)
    llg = np.asarray(gaussian_loglik(synthetic, mean, std))
    llc = np.asarray(cauchy_loglik(synthetic, loc, scale))
    ksg = np.asarray(ks_statistic(synthetic, "gaussian", mean, std))
    ksc = np.asarray(ks_statistic(synthetic, "cauchy", loc, scale))
    kurt = np.asarray(excess_kurtosis(synthetic))
    for j in range(len(COLUMNS)):
        x = synthetic[:, j]
        m, s, c, g = float(mean[j]), float(std[j]), float(loc[j]), float(scale[j])
        assert llg[j] == pytest.approx(st.norm.logpdf(x, m, s).mean(), rel=1e-12)
        assert llc[j] == pytest.approx(st.cauchy.logpdf(x, c, g).mean(), rel=1e-12)
        assert ksg[j] == pytest.approx(st.kstest(x, "norm", args=(m, s)).statistic, rel=1e-10)
        assert ksc[j] == pytest.approx(st.kstest(x, "cauchy", args=(c, g)).statistic, rel=1e-10)
        assert kurt[j] == pytest.approx(st.kurtosis(x), rel=1e-10)
    sd0 = float(fit_gaussian(synthetic[:, 0])[1])
    assert sd0 == pytest.approx(np.std(synthetic[:, 0]), rel=1e-12)


def _spectrum_from_columns(cols: np.ndarray) -> spectrum.Spectrum:
    """A Spectrum whose eigenvectors are the (unit-normalised) given columns — not orthogonal,
    which the diagnostics do not need."""
    n, m = cols.shape
    v = cols / np.linalg.norm(cols, axis=0)
    lam = 1.0 / np.arange(1, m + 1)
    return spectrum.Spectrum(eigenvalues=jnp.asarray(lam), target_coefficients=jnp.zeros(m),
                             trace=jnp.asarray(lam.sum()), target_power=jnp.asarray(1.0),
                             eigenvectors=jnp.asarray(v), n_pool=n)


def test_report_better_and_crossover_on_constructed_spectrum(synthetic):
    # Low modes Gaussian, high modes Cauchy: the crossover is mode 3.
    spec = _spectrum_from_columns(synthetic)
    rep = mode_diagnostics(spec, [1, 2, 3, 4])
    assert rep.better == ("gaussian", "gaussian", "cauchy", "cauchy")
    assert crossover(rep) == 3
    assert crossover(rep.to_dict()) == 3
    np.testing.assert_allclose(rep.mean_square, 1.0, rtol=1e-12)
    assert rep.cauchy_converged.all() and rep.n_points == N_SYN
    # the report is the per-function numbers on the feature values φ = √N v
    phi = np.sqrt(N_SYN) * np.asarray(spec.eigenvectors)
    np.testing.assert_allclose(rep.cauchy_loc, fit_cauchy(phi)[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rep.ks_gauss, ks_statistic(phi, "gaussian", *fit_gaussian(phi)),
                               rtol=1e-12)
    np.testing.assert_allclose(rep.loglik_difference, rep.loglik_cauchy - rep.loglik_gauss)
    # order of modes is kept; JSON round trip
    rev = mode_diagnostics(spec, [4, 1])
    assert rev.modes.tolist() == [4, 1] and rev.better == ("cauchy", "gaussian")
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert set(d) >= {f.name for f in dataclasses.fields(GaussianityReport)} | {"better"}


def _report(modes, diff) -> dict:
    modes = list(modes)
    return {"modes": modes, "loglik_gauss": [0.0] * len(modes), "loglik_cauchy": list(diff)}


def test_report_is_a_pytree_of_its_fourteen_arrays(synthetic):
    rep = mode_diagnostics(_spectrum_from_columns(synthetic), [1, 2, 3, 4])
    leaves, treedef = jax.tree_util.tree_flatten(rep)
    assert len(leaves) == 14 and all(np.shape(leaf) == (4,) for leaf in leaves)
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert back.n_points == N_SYN and back.better == rep.better  # n_points is static
    assert gs.subset(rep, [3, 1]).modes.tolist() == [3, 1]


def test_crossover_rule():
    k = [1, 2, 4, 8, 16, 32]
    assert crossover(_report(k, [-1, 0.2, -0.1, -0.3, 0.1, 0.5])) == 16  # isolated low win ignored
    assert crossover(_report(k, [-1] * 6)) is None
    assert crossover(_report(k, [0.1] * 6)) == 1
    assert crossover(_report(k, [-1, -1, 1, 1, 1, -0.01])) is None  # last mode Gaussian-better
    assert crossover(_report(k, [-1, -1, 0.0, 1, 1, 1])) == 8  # a tie is not "Cauchy better"
    assert crossover(_report([32, 1, 8, 2], [1, -1, 1, -1])) == 8  # unsorted input
    assert crossover(_report([], [])) is None


# ------------------------------------------------------------------------------------------------
# real pool and pipeline


def test_mode_diagnostics_on_real_pool(real_spec):
    rep = gs.gaussianity_sweep(real_spec, n_points=40)
    assert rep.modes[0] == 1 and rep.modes[-1] == 200 and np.all(np.diff(rep.modes) > 0)
    np.testing.assert_allclose(rep.mean_square, 1.0, rtol=1e-10)
    assert rep.cauchy_converged.all()
    for name in ("gauss_std", "cauchy_scale", "ks_gauss", "ks_cauchy", "excess_kurtosis"):
        assert np.all(np.isfinite(getattr(rep, name)))
    assert np.all(rep.excess_kurtosis >= -2.0)  # holds for every sample
    np.testing.assert_allclose(rep.eigenvalues, np.asarray(real_spec.eigenvalues)[rep.modes - 1])
    # the most localised top-end mode is heavy-tailed
    assert rep.excess_kurtosis[-1] > 3.0
    # refinement adds every mode between the swept crossover and the swept mode below it
    ref = gs.refine_sweep(real_spec, rep)
    assert set(rep.modes) <= set(ref.modes) and np.all(np.diff(ref.modes) > 0)
    kc = crossover(rep)
    if kc is not None and kc > 1:
        k_prev = rep.modes[rep.modes < kc].max()
        assert set(range(k_prev + 1, kc)) <= set(ref.modes)
        assert k_prev < crossover(ref) <= kc


def test_run_gaussianity_end_to_end(tmp_path):
    out = tmp_path / "g"
    lines = []
    res = run_gaussianity(GaussianityConfig(task="mnist-0-1", source="bundled", pool_size=200),
                          out, progress=False, log=lines.append)
    assert "crossover" in "\n".join(lines)
    path = out / "gaussianity.json"
    disk = json.loads(path.read_text())
    assert disk == res
    for key in ("config", "versions", "seed", "task", "spectrum", "conventions", "sweep",
                "refined", "crossover", "crossover_sweep", "first_cauchy_better", "pair", "tails",
                "timings"):
        assert key in disk, key
    assert disk["task"]["n_pool"] == 200 and disk["config"]["modes_pair"] == [2, 3]
    assert disk["tails"]["modes"] == list(gs.default_high_modes(200))
    assert len(disk["pair"]["features"]) == 2 and len(disk["pair"]["features"][0]) == 200
    assert len(disk["pair"]["targets"]) == 200
    assert len(disk["tails"]["features"]) == len(disk["tails"]["modes"])
    for block in ("sweep", "pair", "tails"):
        b = disk[block]
        for f in ("gauss_mean", "gauss_std", "cauchy_loc", "cauchy_scale", "loglik_gauss",
                  "loglik_cauchy", "ks_gauss", "ks_cauchy", "excess_kurtosis", "better",
                  "loglik_difference", "mean_square", "eigenvalues"):
            assert len(b[f]) == len(b["modes"]), (block, f)
    assert disk["crossover"] == crossover(disk["refined"])
    assert disk["crossover_sweep"] == crossover(disk["sweep"])
    # the stored feature values are the φ of the stored modes (mean square 1)
    phi = np.asarray(disk["tails"]["features"])
    np.testing.assert_allclose(np.mean(phi**2, axis=1), 1.0, rtol=1e-10)
    for f in FIGURES:
        assert (out / f).stat().st_size > 10_000
    # the figures redraw from the JSON alone
    redo = plotting.save_gaussianity_figures(json.loads(path.read_text()), tmp_path / "redo")
    assert sorted(p.name for p in redo.values()) == sorted(FIGURES)
    assert all(p.stat().st_size > 10_000 for p in redo.values())


def test_figures_tolerate_missing_parts():
    # a results dict without features / refinement / crossover still draws
    res = {"sweep": _report([1, 2, 4], [-0.1, -0.2, -0.3]), "crossover": None}
    res["sweep"].update(ks_gauss=[0.1] * 3, ks_cauchy=[0.2] * 3, excess_kurtosis=[0.0, 1.0, -1.0])
    for fn in (plotting.plot_gaussianity_pair, plotting.plot_gaussianity_tails,
               plotting.plot_gaussianity_sweep):
        assert fn(res) is not None
        assert fn({}) is not None


# ------------------------------------------------------------------------------------------------
# errors


def test_bad_inputs_raise_named_errors(synthetic, tmp_path):
    spec = _spectrum_from_columns(synthetic)
    with pytest.raises(ValueError, match=r"out of range.*1-based.*\[1, 4\]"):
        mode_diagnostics(spec, [0, 1])
    with pytest.raises(ValueError, match="out of range"):
        mode_diagnostics(spec, 5)
    with pytest.raises(ValueError, match="integer mode numbers"):
        mode_diagnostics(spec, [1.5])
    with pytest.raises(ValueError, match="empty"):
        mode_diagnostics(spec, [])
    with pytest.raises(ValueError, match="no eigenvectors"):
        mode_diagnostics(spectrum.powerlaw(50), [1])
    with pytest.raises(TypeError, match="Spectrum"):
        mode_diagnostics(np.eye(3), [1])
    with pytest.raises(ValueError, match="too few points"):
        mode_diagnostics(_spectrum_from_columns(synthetic[:5]), [1])
    with pytest.raises(ValueError, match="too few points"):
        fit_cauchy(np.arange(5.0))
    with pytest.raises(ValueError, match="constant"):
        fit_gaussian(np.ones((20, 2)))
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, m\)"):
        fit_cauchy(np.zeros((10, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussian(np.r_[np.arange(10.0), np.nan])
    with pytest.raises(ValueError, match="family"):
        ks_statistic(synthetic[:, 0], "laplace", 0.0, 1.0)
    with pytest.raises(ValueError, match="n_points"):
        gs.sweep_modes(100, 1)
    # the pipeline validates mode numbers before building the kernel
    with pytest.raises(ValueError, match="modes_pair"):
        run_gaussianity(GaussianityConfig(task="mnist-0-1", source="bundled", pool_size=40,
                                          modes_pair=(0, 1)), tmp_path, log=lambda s: None)
    with pytest.raises(ValueError, match="high_modes"):
        run_gaussianity(GaussianityConfig(task="mnist-0-1", source="bundled", pool_size=40,
                                          high_modes=(10, 41)), tmp_path, log=lambda s: None)
    with pytest.raises(ValueError, match="modes_pair"):
        run_gaussianity(GaussianityConfig(task="mnist-0-1", source="bundled", pool_size=40,
                                          modes_pair=(1, 2, 3)), tmp_path, log=lambda s: None)
