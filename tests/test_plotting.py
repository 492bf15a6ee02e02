"""Tests of rgjax.plotting on a small, internally consistent synthetic results dictionary."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from rgjax import plotting

FUNCS = {
    "learning_curves": plotting.plot_learning_curves,
    "threshold_sweep": plotting.plot_threshold_sweep,
    "ridge_flow": plotting.plot_ridge_flow,
    "spectrum": plotting.plot_spectrum,
}

# ----------------------------------------------------------------------------------------------
# fixture builder: the theories of docs/theory.md §§2–4 in plain numpy on a power-law spectrum


def _tail(lam):
    """t_k = Σ_{j>k} λ_j for k = 0..n (t_0 = trace)."""
    return np.concatenate([[lam.sum()], lam.sum() - np.cumsum(lam)]).clip(min=0)


def _rg(eta, lam, y2, s2, T, dof):
    """(mse, κ*, σ²_eff, crossing found) of the paper's RG or of the §3b corrected RG."""
    n = lam.size
    t = _tail(lam)
    k = np.arange(1, n + 1)
    ridge = s2 + t[1:]
    if dof:
        frac = 1 - (k - 1) / eta
        ridge = np.where(frac > 0, ridge / np.where(frac > 0, frac, 1), np.inf)
    L = eta * lam / (eta * lam + ridge)
    below = np.flatnonzero(L < T)
    if below.size == 0:
        return math.nan, n, math.nan, False
    kstar = int(below[0])  # (first 1-based k with L < T) − 1
    s2eff = s2 + t[kstar]
    pref = 1.0
    if dof:
        if kstar >= eta:
            return math.nan, kstar, math.nan, False
        pref = 1 / (1 - kstar / eta)
        s2eff = s2eff * pref
    mse = pref * np.sum((s2eff / (s2eff + eta * lam)) ** 2 * y2)
    return float(mse), kstar, float(s2eff), True


def _spectral_bias(eta, lam, y2, s2):
    """Canatar et al. E_g with ε² = 0; κ by bisection in log κ."""
    lo, hi = math.log(1e-30), math.log(1e3)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        kap = math.exp(mid)
        g = s2 / kap + np.sum(lam / (eta * lam + kap)) - 1
        lo, hi = (mid, hi) if g > 0 else (lo, mid)
    kap = math.exp(0.5 * (lo + hi))
    gamma = np.sum(eta * lam**2 / (eta * lam + kap) ** 2)
    return float(np.sum(kap**2 * y2 / (eta * lam + kap) ** 2) / (1 - gamma))


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def make_results(n=300, n_eta=12, n_na=3, thresholds=(0.3, 0.5, 0.7), main=0.5, sigma2=1e-8,
                 seed=0):
    """A results dict of the `rgjax curve` schema for a power-law spectrum λ_k ∝ k^-1.5.

    The paper's RG at the main threshold is forced not applicable (null) at the last ``n_na`` η,
    with η_max between the last applicable η and the first one beyond; other thresholds keep
    their own natural applicability. Empirical = spectral bias × small noise.
    """
    rng = np.random.default_rng(seed)
    k = np.arange(1, n + 1, dtype=float)
    lam = k**-1.5
    lam /= lam.sum()
    y2 = k**-1.3
    y2 /= y2.sum()
    etas = np.unique(np.round(np.geomspace(4, n / 2, n_eta)).astype(int)).astype(float)
    assert etas.size == n_eta
    ek = [float(np.sum((sigma2 / (sigma2 + e * lam)) ** 2 * y2)) for e in etas]
    sb = np.array([_spectral_bias(e, lam, y2, sigma2) for e in etas])
    emp = sb * np.exp(rng.normal(0, 0.05, etas.size))
    se = 0.05 * emp
    theory = {"ek": ek, "spectral_bias": list(sb), "rg": {}, "rg_dof": {}}
    for T in thresholds:
        key = f"{T:g}"
        for name, dof in (("rg", False), ("rg_dof", True)):
            out = [_rg(e, lam, y2, sigma2, T, dof) for e in etas]
            mse = np.array([o[0] for o in out])
            kap = np.array([o[1] for o in out], dtype=float)
            s2e = np.array([o[2] for o in out])
            app = np.array([o[3] for o in out])
            if name == "rg" and T == main and n_na:
                app[-n_na:] = False
            mse[~app] = np.nan
            s2e[~app] = np.nan
            last = np.flatnonzero(app)
            beyond = np.flatnonzero(~app)
            eta_max = (math.sqrt(etas[last[-1]] * etas[beyond[beyond > last[-1]][0]])
                       if beyond.size and last.size and (beyond > last[-1]).any()
                       else float(etas[-1]) if last.size else math.nan)
            theory[name][key] = {"mse": list(mse), "kappa": list(kap), "sigma2_eff": list(s2e),
                                 "applicable": list(app), "eta_max": eta_max}
    kap_grid = np.unique(np.round(np.geomspace(1, n, 40)).astype(int))
    tail = _tail(lam)
    main_key = f"{main:g}"

    def fidelity(th):
        th = np.asarray(th, dtype=float)
        m = np.isfinite(th) & (th > 0)
        return float(np.mean(np.abs(np.log(th[m] / emp[m]))))

    def slope(y):
        y = np.asarray(y, dtype=float)
        m = np.isfinite(y) & (y > 0)
        return float(np.polyfit(np.log(etas[m]), np.log(y[m]), 1)[0])

    curves = {"empirical": emp, "ek": ek, "rg": theory["rg"][main_key]["mse"],
              "rg_dof": theory["rg_dof"][main_key]["mse"], "spectral_bias": sb}
    results = {
        "config": {"task": "synthetic-powerlaw", "source": "test", "activation": "relu",
                   "depth": 2, "W_std": 1.414, "b_std": 0.1, "sigma2": sigma2,
                   "thresholds": list(thresholds), "threshold": main, "trials": 20, "seed": seed},
        "task": {"name": "synthetic-powerlaw", "source": "test", "n_pool": n, "dim": 10,
                 "class_counts": {"0": n // 2, "1": n - n // 2}},
        "spectrum": {"eigenvalues": list(lam), "target_coefficients_sq": list(y2),
                     "trace": float(lam.sum()), "target_power": float(y2.sum()), "n_modes": n,
                     "n_pool": n, "clipped_mass": 0.0},
        "etas": list(etas),
        "empirical": {"mse_pool": list(emp), "mse_pool_se": list(se),
                      "mse_heldout": list(emp * 1.1), "mse_heldout_se": list(se * 1.2),
                      "trials": 20},
        "theory": theory,
        "ridge_flow": {"kappa": [int(x) for x in kap_grid],
                       "sigma2": [float(sigma2 + tail[x]) for x in kap_grid]},
        "fidelity": {k: fidelity(v) for k, v in curves.items() if k != "empirical"},
        "slopes": {k: slope(v) for k, v in curves.items()},
    }
    return _nan_to_none(results)


@pytest.fixture(scope="module")
def results():
    return make_results()


def _check_png(path, min_px=300):
    assert path.exists() and path.stat().st_size > 1000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_px and img.shape[1] >= min_px
    assert np.ptp(img[..., :3]) > 0  # not a blank image


def _legend_labels(ax):
    """Labels of the Axes' legend, or of its Figure's legends when the Axes has none."""
    legs = [ax.get_legend()] if ax.get_legend() is not None else list(ax.figure.legends)
    return [t.get_text() for leg in legs for t in leg.get_texts()]


def _line(ax, gid):
    lines = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(lines) == 1, [ln.get_gid() for ln in ax.get_lines()]
    return lines[0]


# ----------------------------------------------------------------------------------------------


def test_fixture_is_pure_json(results):
    text = json.dumps(results, allow_nan=False)
    assert json.loads(text) == results
    rg = results["theory"]["rg"]["0.5"]
    assert rg["mse"][-3:] == [None, None, None] and all(v is not None for v in rg["mse"][:-3])


@pytest.mark.parametrize("name", list(FUNCS))
def test_returns_figure_and_writes_png(results, tmp_path, name):
    path = tmp_path / "sub" / f"{name}.png"
    fig = FUNCS[name](results, path)
    assert isinstance(fig, Figure)
    _check_png(path)


@pytest.mark.parametrize("name", list(FUNCS))
def test_no_path_writes_nothing(results, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert isinstance(FUNCS[name](results), Figure)
    assert list(tmp_path.iterdir()) == []


def test_save_curve_figures_writes_four_files_from_json_text(results, tmp_path):
    loaded = json.loads(json.dumps(results))  # pure JSON data: lists, None for NaN
    out = plotting.save_curve_figures(loaded, tmp_path / "figs")
    assert set(out) == {"learning_curves", "threshold_sweep", "ridge_flow", "spectrum"}
    for name, p in out.items():
        assert p.name == f"{name}.png" and p.parent == tmp_path / "figs"
        _check_png(p)


def test_not_applicable_range_is_marked_and_not_drawn(results):
    fig = plotting.plot_learning_curves(results)
    ax = fig.axes[0]
    etas = np.array(results["etas"])
    eta_max = results["theory"]["rg"]["0.5"]["eta_max"]
    assert etas[-4] < eta_max < etas[-3]
    spans = [p for p in ax.patches if p.get_gid() == "rg_not_applicable"]
    assert len(spans) == 1
    x0 = spans[0].get_window_extent()  # in display units; compare via data transform
    x_left = ax.transData.inverted().transform((x0.x0, 0))[0]
    assert x_left == pytest.approx(eta_max, rel=1e-6)
    labels = [t for t in ax.texts if t.get_gid() == "rg_not_applicable_label"]
    assert len(labels) == 1 and "RG n/a" in labels[0].get_text()
    assert "no mode below T" in labels[0].get_text()
    x, y = _line(ax, "rg").get_data()
    y = np.asarray(y, dtype=float)
    assert np.all(~np.isfinite(y[np.asarray(x) > eta_max]))
    assert np.isfinite(y[np.asarray(x) < eta_max]).all()
    # EK is still drawn everywhere (it is its own curve, not a stand-in for RG)
    assert np.isfinite(np.asarray(_line(ax, "ek").get_data()[1], dtype=float)).all()


def test_legend_labels_name_rgjax_and_show_fidelity(results):
    ax = plotting.plot_learning_curves(results).axes[0]
    labels = _legend_labels(ax)
    dof = [s for s in labels if "learned-mode" in s]
    assert len(dof) == 1 and "rgjax" in dof[0]
    paper = [s for s in labels if s.startswith("RG, paper")]
    assert len(paper) == 1 and "rgjax" not in paper[0]
    for key, val in results["fidelity"].items():
        assert any(plotting.LABELS[key].long in s and f"[{val:.2f}]" in s for s in labels), key
    assert any("empirical" in s for s in labels)


def test_ek_far_below_is_noted(results):
    ax = plotting.plot_learning_curves(results).axes[0]
    notes = [t.get_text() for t in ax.texts if t.get_gid() == "ek_note"]
    assert len(notes) == 1 and "off-scale" in notes[0]  # σ² = 1e-8: EK ~ 1e-14
    lo = ax.get_ylim()[0]
    emp_min = min(results["empirical"]["mse_pool"])
    assert lo >= 1e-3 * emp_min  # the y range is not squashed by EK
    ax = plotting.plot_learning_curves(results, ek_floor_decades=None).axes[0]
    assert ax.get_ylim()[0] <= min(results["theory"]["ek"])
    assert not [t for t in ax.texts if t.get_gid() == "ek_note"]


def test_threshold_sweep_masks_each_threshold(results):
    fig = plotting.plot_threshold_sweep(results)
    left, right = fig.axes[:2]
    etas = np.array(results["etas"])
    for key, block in results["theory"]["rg"].items():
        x, y = _line(left, f"rg:{key}").get_data()
        bad = ~np.array(block["applicable"], dtype=bool)
        assert not np.isfinite(np.asarray(y, dtype=float)[bad]).any()
        _line(right, f"rg_dof:{key}")
    marks = [ln for ln in left.get_lines() if (ln.get_gid() or "").startswith("rg_eta_max:")]
    assert "rg_eta_max:0.5" in {ln.get_gid() for ln in marks}
    m = _line(left, "rg_eta_max:0.5")
    assert m.get_xdata()[0] == pytest.approx(results["theory"]["rg"]["0.5"]["eta_max"])
    assert etas[0] < m.get_xdata()[0] < etas[-1]
    assert any("rgjax" in s for s in _legend_labels(right) + [right.get_title()])


def test_ridge_flow_marks_stopping_points(results):
    ax = plotting.plot_ridge_flow(results, n_points=5).axes[0]
    stops = [ln for ln in ax.get_lines() if ln.get_gid() == "stop"]
    assert len(stops) == 5
    block = results["theory"]["rg"]["0.5"]
    pairs = {(k, s) for k, s, a in zip(block["kappa"], block["sigma2_eff"], block["applicable"])
             if a}
    for ln in stops:
        assert (float(ln.get_xdata()[0]), float(ln.get_ydata()[0])) in pairs
    # the stopping points lie on the flow σ²(κ) = σ² + t_κ
    lam = np.array(results["spectrum"]["eigenvalues"])
    for ln in stops:
        kap = int(ln.get_xdata()[0])
        assert ln.get_ydata()[0] == pytest.approx(1e-8 + lam[kap:].sum(), rel=1e-9)
    _line(ax, "bare_ridge")
    assert any(t.get_text().startswith("η = ") for t in ax.texts)


def test_spectrum_fit_recovers_exponent(results):
    slope, _, (lo, hi) = plotting.fit_power_law(results["spectrum"]["eigenvalues"])
    assert slope == pytest.approx(-1.5, abs=1e-9) and 2 <= lo < hi <= 300
    assert math.isnan(plotting.fit_power_law([1.0, 0.5])[0])
    fig = plotting.plot_spectrum(results)
    assert any("-1.50" in s for s in _legend_labels(fig.axes[0]))
    y = _line(fig.axes[1], "target_power").get_ydata()
    assert y[-1] == pytest.approx(1.0) and np.all(np.diff(y) >= 0)


def _with_nans(results):
    """JSON nulls replaced by float NaN, and a few more holes punched in."""
    r = copy.deepcopy(results)

    def conv(x):
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [math.nan if v is None else conv(v) for v in x]
        return x

    r = conv(r)
    r["empirical"]["mse_pool"][2] = None
    r["empirical"]["mse_pool_se"][3] = math.nan
    r["theory"]["spectral_bias"][0] = None
    r["theory"]["rg"]["0.5"]["applicable"][1] = None
    r["theory"]["rg"]["0.3"]["eta_max"] = None
    r["fidelity"]["ek"] = None
    r["spectrum"]["eigenvalues"][-1] = None
    return r


@pytest.mark.parametrize("name", list(FUNCS))
def test_nan_and_none_entries_do_not_raise(results, tmp_path, name):
    path = tmp_path / f"{name}.png"
    FUNCS[name](_with_nans(results), path)
    _check_png(path)


def test_nan_fidelity_is_left_out_of_label(results):
    labels = _legend_labels(plotting.plot_learning_curves(_with_nans(results)).axes[0])
    ek = [s for s in labels if s.startswith(plotting.LABELS["ek"].long)]
    assert ek == [plotting.LABELS["ek"].long]


def _variants(results):
    no_emp = copy.deepcopy(results)
    del no_emp["empirical"]
    one_t = copy.deepcopy(results)
    for name in ("rg", "rg_dof"):
        one_t["theory"][name] = {"0.5": one_t["theory"][name]["0.5"]}
    one_t["config"]["thresholds"] = [0.5]
    other_main = copy.deepcopy(results)
    other_main["config"]["threshold"] = 0.42  # not a key: nearest one is used
    no_flow = copy.deepcopy(results)
    for k in ("ridge_flow", "fidelity", "slopes", "task"):
        del no_flow[k]
    no_theory = {k: v for k, v in results.items() if k != "theory"}
    minimal = {"etas": results["etas"], "theory": {"ek": results["theory"]["ek"]}}
    return {"no_empirical": no_emp, "one_threshold": one_t, "other_main": other_main,
            "no_flow": no_flow, "no_theory": no_theory, "minimal": minimal, "empty": {}}


# which figures each variant exercises (rendering is the slow part, so only the relevant ones)
_VARIANT_FIGS = {
    "no_empirical": ("learning_curves", "threshold_sweep"),
    "one_threshold": ("learning_curves", "threshold_sweep"),
    "other_main": ("learning_curves", "ridge_flow"),
    "no_flow": ("learning_curves", "ridge_flow"),
    "no_theory": tuple(FUNCS),
    "minimal": tuple(FUNCS),
    "empty": tuple(FUNCS),
}


@pytest.mark.parametrize("variant", list(_VARIANT_FIGS))
def test_missing_optional_parts_still_plot(results, tmp_path, variant):
    r = _variants(results)[variant]
    for name, fn in FUNCS.items():
        if name in _VARIANT_FIGS[variant]:
            fn(r, tmp_path / f"{name}.png")
            _check_png(tmp_path / f"{name}.png", min_px=200)
        else:
            assert isinstance(fn(r), Figure)
    if variant == "empty":
        assert sorted(plotting.save_curve_figures(r, tmp_path / "all")) == sorted(FUNCS)


def test_missing_parts_behaviour(results):
    v = _variants(results)
    ax = plotting.plot_learning_curves(v["no_empirical"]).axes[0]
    assert not any("empirical" in s for s in _legend_labels(ax))
    assert any("rgjax" in s for s in _legend_labels(ax))
    fig = plotting.plot_threshold_sweep(v["one_threshold"])
    assert len([ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "rg:0.5"]) == 1
    # ridge flow falls back to the spectrum
    ax = plotting.plot_ridge_flow(v["no_flow"]).axes[0]
    x, y = _line(ax, "flow").get_data()
    assert len(x) == 300 and y[0] == pytest.approx(1e-8 + sum(results["spectrum"]["eigenvalues"][1:]))
    # the nearest threshold is used when config.threshold is not a key
    assert "T = 0.5" in plotting.plot_ridge_flow(v["other_main"]).axes[0].get_title()


def test_draws_into_given_axes(results):
    fig = Figure()
    ax = fig.add_subplot()
    assert plotting.plot_learning_curves(results, ax=ax) is fig
    fig2 = Figure()
    axs = fig2.subplots(1, 2)
    assert plotting.plot_spectrum(results, ax=axs) is fig2
    assert plotting.plot_threshold_sweep(results, ax=list(axs)) is fig2
    fig3 = Figure()
    one = fig3.add_subplot()
    assert plotting.plot_threshold_sweep(results, ax=one) is fig3
    assert len(fig3.axes) == 1
    assert any(ln.get_gid() == "rg_dof:0.5" for ln in one.get_lines())


def test_import_leaves_pyplot_and_backend_alone():
    # (matplotlib.get_backend() itself may import pyplot, so read the raw rcParams entry)
    code = ("import matplotlib, sys; get = lambda: dict.__getitem__(matplotlib.rcParams, 'backend'); "
            "b = get(); import rgjax.plotting; "
            "assert 'matplotlib.pyplot' not in sys.modules; assert get() == b")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_functional_rg_figure(tmp_path):
    import matplotlib.image as mpimg

    from rgjax.plotting import plot_functional_rg, save_curve_figures

    res = make_results()
    t = "0.5"
    n = len(res["etas"])
    res["theory"]["rg_reweighted"] = {t: {"mse": [0.5 * (i + 1) ** -0.6 for i in range(n)]}}
    kap = [0, 1, 3, 10, 30, 100]
    res["functional_flow"] = {
        "kappa": kap,
        "mean": [1.0 / (k + 1) for k in kap],
        "quantiles": [[0.5 / (k + 1), 0.8 / (k + 1), 1.0 / (k + 1), 1.2 / (k + 1), 1.6 / (k + 1)] for k in kap],
        "levels": [0.05, 0.25, 0.5, 0.75, 0.95],
        "cv": [0.3] * len(kap),
    }
    fig = plot_functional_rg(json.loads(json.dumps(res)), tmp_path / "f.png")
    ax1, ax2 = fig.axes[:2]
    assert {ln.get_gid() for ln in ax1.lines} >= {"rg", "rg_reweighted"}
    assert any(ln.get_gid() == "flow_mean" for ln in ax2.lines)
    assert len(ax2.collections) == 2  # two quantile bands
    assert mpimg.imread(tmp_path / "f.png").shape[0] > 300
    written = save_curve_figures(res, tmp_path / "all")
    assert "functional_rg" in written and written["functional_rg"].exists()
    # results without the non-Gaussian parts: no functional figure
    plain = make_results()
    assert "functional_rg" not in save_curve_figures(plain, tmp_path / "plain")


def test_module_defines_each_name_once():
    # the figure sections were written separately and merged: no helper may shadow another,
    # neither within a module of the package nor between the modules that import each other
    import ast
    import pathlib

    import rgjax.plotting

    for path in sorted(pathlib.Path(rgjax.plotting.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                 and not any(getattr(d, "id", None) == "overload" for d in n.decorator_list)]
        names += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                  if isinstance(t, ast.Name)]
        names += [t.target.id for t in tree.body
                  if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)]
        imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom)
                    for a in n.names}
        dupes = {n for n in names if names.count(n) > 1 or n in imported}
        assert not dupes, (path.name, dupes)


def test_labels_table_and_figures_table():
    labels = plotting.LABELS
    assert all(isinstance(v, plotting.Label) for v in labels.values())
    assert {k: v.short for k, v in labels.items() if k in
            ("ek", "rg", "rg_dof", "spectral_bias", "rg_reweighted")} == {
        "ek": "EK (bare ridge)", "rg": "RG (paper)", "rg_dof": "RG+dof (rgjax §3b)",
        "spectral_bias": "spectral bias", "rg_reweighted": "RG, input-dep. ridge"}
    assert "not in paper" in labels["rg_dof"].long and "rgjax" in labels["rg_dof"].short
    assert plotting.FIGURES == {
        "results.json": plotting.save_curve_figures,
        "gaussianity.json": plotting.save_gaussianity_figures,
        "toy.json": plotting.save_toy_figures,
        "optimize.json": plotting.save_optimize_figures,
        "bench.json": plotting.save_bench_figures,
    }


@pytest.mark.parametrize("name, files", [
    ("gaussianity.json", {"gaussianity_pair", "gaussianity_tails", "gaussianity_sweep"}),
    ("toy.json", {"toy"}),
    ("optimize.json", {"optimize_loss", "optimize_mse"}),
    ("bench.json", {"bench"}),
])
def test_writers_draw_empty_results(tmp_path, name, files):
    written = plotting.FIGURES[name]({}, str(tmp_path / "out"))
    assert set(written) == files
    for key, p in written.items():
        assert p == tmp_path / "out" / f"{key}.png" and p.stat().st_size > 1000


def test_every_figure_function_takes_path_and_ax():
    import inspect

    for name in plotting.__all__:
        if not name.startswith("plot_"):
            continue
        params = inspect.signature(getattr(plotting, name)).parameters
        assert list(params)[:3] == ["results", "path", "ax"], name
        assert params["path"].default is None and params["ax"].default is None
        assert params["ax"].kind is inspect.Parameter.KEYWORD_ONLY


def test_gaussianity_pair_draws_into_given_axes():
    rng = np.random.default_rng(0)
    res = {"pair": {"features": rng.normal(size=(2, 200)).tolist(), "modes": [1, 2],
                    "gauss_mean": [0.0, 0.0], "gauss_std": [1.0, 1.0]}}
    fig = Figure()
    axs = fig.subplots(2, 2).ravel()
    assert plotting.plot_gaussianity_pair(res, ax=[axs[2], axs[0], axs[3], axs[1]]) is fig
    assert len(axs[2].collections) == 1 and axs[0].patches and axs[1].texts
    one = Figure().add_subplot()
    assert plotting.plot_gaussianity_pair(res, ax=one) is one.figure
    assert len(plotting.plot_gaussianity_pair({}).axes) == 3  # no data: no empty corner


def test_imports_only_numpy_matplotlib_and_itself():
    import ast
    import pathlib

    import rgjax.plotting

    for path in pathlib.Path(rgjax.plotting.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert (top in sys.stdlib_module_names or top in ("numpy", "matplotlib")
                        or mod.startswith("rgjax.plotting")), (path.name, mod)
