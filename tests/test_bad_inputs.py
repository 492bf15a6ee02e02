"""A catalogue of bad inputs: each gets one clear error naming the argument, never a silently
wrong number. One parametrised table per surface (API, command line)."""

import math

import jax
import numpy as np
import pytest

import rgjax
from rgjax import cli
from rgjax.jobs import curve as curve_job
from rgjax.jobs.curve import CurveConfig
from rgjax.jobs.toy import ToyConfig

SPEC = rgjax.powerlaw(200)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
K = np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, axis=-1))
Y = np.sign(X[:, 0])
A = RNG.normal(size=(40, 40))


def _curve(k, **kw):
    return rgjax.learning_curve(k, Y, [5, 10], 1e-3, trials=2, key=0, progress=False, **kw)


#: (name, call, error type, text the message must contain)
API_CASES = [
    ("negative noise", lambda: rgjax.mse_spectral_bias(SPEC, 10.0, 1e-3, noise=-1.0),
     ValueError, "`noise`"),
    ("NaN noise", lambda: rgjax.mse_spectral_bias(SPEC, 10.0, 1e-3, noise=math.nan),
     ValueError, "`noise`"),
    ("negative noise, eigenlearning", lambda: rgjax.eigenlearning(SPEC, 10.0, 1e-3, noise=-0.5),
     ValueError, "`noise`"),
    ("negative temperature", lambda: rgjax.mse_rg(SPEC, 10.0, 1e-3, temperature=-0.1),
     ValueError, "`temperature`"),
    ("zero temperature", lambda: rgjax.mse_rg(SPEC, 10.0, 1e-3, temperature=0.0),
     ValueError, "`temperature`"),
    ("NaN temperature", lambda: rgjax.effective_ridge(SPEC, 10.0, 1e-3, temperature=math.nan),
     ValueError, "`temperature`"),
    ("text temperature", lambda: rgjax.effective_ridge(SPEC, 10.0, 1e-3, temperature="0.1"),
     ValueError, "`temperature`"),
    ("negative K in learning_curve", lambda: _curve(-K), ValueError, "positive semi-definite"),
    ("indefinite K in learning_curve", lambda: _curve((A + A.T) / 2), ValueError,
     "positive semi-definite"),
    ("asymmetric K in learning_curve", lambda: _curve(K + np.triu(np.full_like(K, 1e-3), 1)),
     ValueError, "not symmetric"),
    ("indefinite K in from_gram", lambda: rgjax.from_gram((A + A.T) / 2, Y), ValueError,
     "allow_indefinite"),
    ("negative K in from_gram", lambda: rgjax.from_gram(-K, Y), ValueError, "not PSD"),
    ("fractional eta in learning_curve", lambda: rgjax.learning_curve(
        K, Y, [5.5], 1e-3, trials=2, key=0, progress=False), ValueError, "`etas`"),
    ("eta as text", lambda: rgjax.mse_rg(SPEC, "10", 1e-3), ValueError, "`eta`"),
    ("eta as a list of text", lambda: rgjax.mse_ek(SPEC, ["5", "10"], 1e-3), ValueError, "`eta`"),
    ("eta as bools", lambda: rgjax.kappa(SPEC, [True], 1e-3), ValueError, "`eta`"),
    ("tail steps 1", lambda: rgjax.from_gram(K, Y, 5, method="topk", tail_steps=1), ValueError,
     "`tail_steps`"),
    ("tail probes 1", lambda: rgjax.from_gram(K, Y, 5, method="topk", tail_probes=1),
     ValueError, "`tail_probes`"),
    ("unknown truncation theory", lambda: rgjax.truncation_valid(SPEC.truncate(50), 10.0, 1e-3,
                                                                 theory="gp"), ValueError,
     "`theory`"),
    ("negative rtol", lambda: rgjax.truncation_valid(SPEC.truncate(50), 10.0, 1e-3, rtol=-1.0),
     ValueError, "`rtol`"),
    ("fractional etas in the curve config", lambda: CurveConfig(etas=(5.5, 10)), ValueError,
     "`etas`"),
    ("zero eta in the curve config", lambda: CurveConfig(etas=(0, 10)), ValueError, "`etas`"),
    ("empty etas in the curve config", lambda: CurveConfig(etas=()), ValueError, "`etas`"),
    ("empty spectrum", lambda: rgjax.from_eigenvalues([], []), ValueError, "`eigenvalues`"),
    ("empty Gram matrix", lambda: rgjax.from_gram(np.zeros((0, 0)), []), ValueError, "`K`"),
    ("zero lambda_1 in the toy", lambda: ToyConfig(lambda_1=0.0), ValueError, "`lambda_1`"),
    # the arguments every theory shares
    ("zero sigma2", lambda: rgjax.mse_ek(SPEC, 5.0, 0.0), ValueError, "`sigma2`"),
    ("negative sigma2", lambda: rgjax.mse_rg(SPEC, 5.0, -1e-3), ValueError, "`sigma2`"),
    ("NaN sigma2", lambda: rgjax.mse_spectral_bias(SPEC, 5.0, math.nan), ValueError, "`sigma2`"),
    ("threshold 0", lambda: rgjax.mse_rg(SPEC, 5.0, 1e-3, 0.0), ValueError, "`threshold`"),
    ("threshold 1", lambda: rgjax.cutoff(SPEC, 5.0, 1e-3, 1.0), ValueError, "`threshold`"),
    ("NaN threshold", lambda: rgjax.effective_ridge(SPEC, 5.0, 1e-3, math.nan), ValueError,
     "`threshold`"),
    ("negative eta", lambda: rgjax.kappa(SPEC, -5.0, 1e-3), ValueError, "`eta`"),
    ("infinite eta", lambda: rgjax.mse_ek(SPEC, math.inf, 1e-3), ValueError, "`eta`"),
    ("not a spectrum", lambda: rgjax.mse_ek(np.ones(5), 5.0, 1e-3), TypeError, "`spec`"),
    # spectra
    ("mismatched spectrum arrays", lambda: rgjax.from_eigenvalues([1.0, 0.5], [1.0]), ValueError,
     "`eigenvalues`"),
    ("NaN eigenvalue", lambda: rgjax.from_eigenvalues([1.0, math.nan], [1.0, 0.0]), ValueError,
     "`eigenvalues`"),
    ("y of the wrong length", lambda: rgjax.from_gram(K, np.ones(39)), ValueError, "`y`"),
    ("NaN in K", lambda: rgjax.from_gram(np.full((3, 3), math.nan), np.ones(3)), ValueError,
     "`K`"),
    ("k above N", lambda: rgjax.from_gram(K, Y, k=41), ValueError, "`k`"),
    ("unknown method", lambda: rgjax.from_gram(K, Y, method="lanczos"), ValueError, "`method`"),
    ("top-k without k", lambda: rgjax.from_gram(K, Y, method="topk"), ValueError, "`k`"),
    ("powerlaw of no modes", lambda: rgjax.powerlaw(0), ValueError, "`n_modes`"),
    ("kappa beyond the modes", lambda: rgjax.input_dependent_ridge(rgjax.from_gram(K, Y), 1e-3,
                                                                   41), ValueError, "`kappa`"),
    ("input-dependent ridge without eigenvectors",
     lambda: rgjax.input_dependent_ridge(SPEC, 1e-3, 3), ValueError, "eigenvectors"),
    # exact GP regression
    ("eta at the pool size", lambda: rgjax.learning_curve(K, Y, [40], 1e-3, trials=2, key=0,
                                                          progress=False), ValueError, "`etas`"),
    ("one trial", lambda: rgjax.learning_curve(K, Y, [3], 1e-3, trials=1, key=0, progress=False),
     ValueError, "`trials`"),
    ("negative ridge in GP regression", lambda: rgjax.learning_curve(
        K, Y, [3], -1.0, trials=2, key=0, progress=False), ValueError, "`sigma2`"),
    ("nested as text", lambda: rgjax.learning_curve(K, Y, [3], 1e-3, trials=2, key=0,
                                                    progress=False, nested="yes"), ValueError,
     "`nested`"),
    ("NaN targets", lambda: rgjax.learning_curve(K, np.full(40, math.nan), [3], 1e-3, trials=2,
                                                 key=0, progress=False), ValueError, "`y`"),
    ("posterior with mismatched targets", lambda: rgjax.gp_posterior_mean(
        np.eye(3), np.ones(4), np.ones((2, 3)), 1e-3), ValueError, "`y_train`"),
    # kernels and job configurations
    ("negative depth", lambda: rgjax.fc(-1, "relu"), ValueError, "`depth`"),
    ("unknown activation", lambda: rgjax.fc(2, "sigmoidx"), ValueError, "`activation`"),
    ("one trial per eta", lambda: CurveConfig(trials=1), ValueError, "`trials`"),
    ("threshold 0 in the sweep", lambda: CurveConfig(thresholds=(0.0, 0.5)), ValueError,
     "threshold"),
    ("negative ridge in the curve job", lambda: CurveConfig(sigma2=-1.0), ValueError,
     "`sigma2`"),
    ("zero modes", lambda: CurveConfig(eigs=0), ValueError, "`eigs`"),
    ("negative lambda_>", lambda: ToyConfig(lambdas_greater=(-0.1,)), ValueError,
     "`lambdas_greater`"),
    ("negative Hermite degree", lambda: ToyConfig(target_degree=-1), ValueError,
     "`target_degree`"),
    ("unknown theory for the error", lambda: rgjax.truncation_error(SPEC.truncate(50), 5.0, 1e-3,
                                                                    theory="x"), ValueError,
     "`theory`"),
    ("negative rtol", lambda: rgjax.truncation_valid(SPEC.truncate(50), 5.0, 1e-3, rtol=-1.0),
     ValueError, "`rtol`"),
    # spectra
    ("mismatched spectrum lengths", lambda: rgjax.from_eigenvalues([1.0, 0.5], [1.0]), ValueError,
     "`target_coefficients`"),
    ("NaN eigenvalue", lambda: rgjax.from_eigenvalues([1.0, math.nan], [1.0, 1.0]), ValueError,
     "`eigenvalues`"),
    ("negative eigenvalue", lambda: rgjax.from_eigenvalues([1.0, -0.5], [1.0, 1.0]), ValueError,
     "non-negative"),
    ("2-D eigenvalues", lambda: rgjax.from_eigenvalues(np.ones((2, 2)), np.ones((2, 2))),
     ValueError, "shape (k,)"),
    ("non-square K", lambda: rgjax.from_gram(np.ones((3, 4)), np.ones(3)), ValueError, "square"),
    ("NaN in K", lambda: rgjax.from_gram(np.where(np.eye(40) > 0, math.nan, K), Y), ValueError,
     "NaN"),
    ("targets of another length", lambda: rgjax.from_gram(K, Y[:-1]), ValueError, "`y`"),
    ("k above the pool size", lambda: rgjax.from_gram(K, Y, 50, method="topk"), ValueError,
     "`k`"),
    ("k zero", lambda: rgjax.from_gram(K, Y, 0, method="topk"), ValueError, "`k`"),
    ("unknown eigensolver", lambda: rgjax.from_gram(K, Y, method="lanczos"), ValueError,
     "`method`"),
    ("a matrix for a matvec", lambda: rgjax.from_matvec(K, Y, 5), TypeError, "`matvec`"),
    ("truncate to 0 modes", lambda: SPEC.truncate(0), ValueError, "`k`"),
    ("truncate to more modes than held", lambda: SPEC.truncate(500), ValueError, "`k`"),
    ("empty power law", lambda: rgjax.powerlaw(0), ValueError, "`n_modes`"),
    ("tail: eigenvectors of another pool", lambda: rgjax.tail.tail_measure(K, np.eye(39, 5), Y),
     ValueError, "`eigenvectors`"),
    ("tail: targets of another pool", lambda: rgjax.tail.tail_measure(K, np.eye(40, 5), Y[:-1]),
     ValueError, "`y`"),
    ("tail: steps as text", lambda: rgjax.tail.tail_measure(K, np.eye(40, 5), Y, steps="many"),
     ValueError, "`tail_steps`"),
    # theory arguments
    ("negative ridge", lambda: rgjax.mse_ek(SPEC, 10.0, -1.0), ValueError, "`sigma2`"),
    ("NaN ridge", lambda: rgjax.mse_rg(SPEC, 10.0, math.nan), ValueError, "`sigma2`"),
    ("threshold 1", lambda: rgjax.mse_rg(SPEC, 10.0, 1e-3, 1.0), ValueError, "`threshold`"),
    ("NaN threshold", lambda: rgjax.cutoff(SPEC, 10.0, 1e-3, math.nan), ValueError,
     "`threshold`"),
    ("threshold 2 for eta_max", lambda: rgjax.eta_max(SPEC, 1e-3, 2.0), ValueError,
     "`threshold`"),
    ("negative eta", lambda: rgjax.mse_ek(SPEC, -3.0, 1e-3), ValueError, "`eta`"),
    ("infinite eta", lambda: rgjax.mse_spectral_bias(SPEC, math.inf, 1e-3), ValueError, "`eta`"),
    ("NaN eta", lambda: rgjax.kappa(SPEC, math.nan, 1e-3), ValueError, "`eta`"),
    ("negative ridge in the flow", lambda: rgjax.ridge_flow(SPEC, -1.0), ValueError, "`sigma2`"),
    ("negative ridge in the posterior", lambda: rgjax.gp_posterior_mean(
        np.eye(3), np.ones(3), np.ones((2, 3)), -1.0), ValueError, "`sigma2`"),
    # kernels, data and exact GP regression
    ("negative weight std", lambda: rgjax.gram(rgjax.fc(1, "relu", W_std=-1.0), X,
                                               progress=False), ValueError, "`W_std`"),
    ("NaN bias std", lambda: rgjax.gram(rgjax.fc(1, "relu", b_std=math.nan), X, progress=False),
     ValueError, "`b_std`"),
    ("1-D inputs", lambda: rgjax.gram(rgjax.fc(1, "relu"), np.ones(5), progress=False),
     ValueError, "`x`"),
    ("NaN inputs", lambda: rgjax.gram(rgjax.fc(1, "relu"), np.full((4, 2), math.nan),
                                      progress=False), ValueError, "`x`"),
    ("unknown digit", lambda: rgjax.load_task("mnist-0-x"), ValueError, "mnist"),
    ("empty pool", lambda: rgjax.load_task("synthetic-powerlaw", pool_size=0), ValueError,
     "`pool_size`"),
    ("non-square K in GP regression", lambda: rgjax.learning_curve(
        K[:, :-1], Y, [5], 1e-3, trials=2, key=0, progress=False), ValueError, "`K`"),
    ("targets of another length in GP regression", lambda: rgjax.learning_curve(
        K, Y[:-1], [5], 1e-3, trials=2, key=0, progress=False), ValueError, "`y`"),
    ("no eta in GP regression", lambda: rgjax.learning_curve(
        K, Y, [], 1e-3, trials=2, key=0, progress=False), ValueError, "`etas`"),
    ("negative weight std in the curve job", lambda: CurveConfig(W_std=-1.0), ValueError,
     "`W_std`"),
    ("NaN bias std in the curve job", lambda: CurveConfig(b_std=math.nan), ValueError,
     "`b_std`"),
    ("zero default etas", lambda: CurveConfig(n_etas=0), ValueError, "`n_etas`"),
    ("zero tile edge", lambda: CurveConfig(block_size=0), ValueError, "`block_size`"),
]


@pytest.mark.parametrize("name, call, error, text", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_one_clear_error(name, call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value), (name, str(info.value))


def test_unsorted_and_repeated_etas_pair_every_curve_with_its_eta():
    # The empirical curve is always sorted: the config sorts the grid once, so the theories use
    # the same order (a silent mispairing before).
    assert CurveConfig(etas=(40, 5, 10, 5)).etas == (5, 10, 40)


def test_negative_noise_never_gives_a_negative_mse():
    # the check runs on concrete values; traced values are the caller's responsibility
    ok = float(rgjax.mse_spectral_bias(SPEC, 10.0, 1e-3, noise=0.0))
    assert ok > 0
    assert np.isfinite(float(jax.jit(lambda n: rgjax.mse_spectral_bias(SPEC, 10.0, 1e-3, n))(0.1)))


#: (name, argv, text the one-line error must contain)
CLI_CASES = [
    ("fractional etas", ["curve", "--etas", "5.5,10.7"], "expected comma-separated integers"),
    ("empty etas", ["curve", "--etas", ""], "at least one"),
    ("text etas", ["curve", "--etas", "5,x"], "expected comma-separated integers"),
    ("empty thresholds", ["curve", "--thresholds", ","], "at least one"),
    ("zero eta", ["curve", "--etas", "0,5"], "`etas`"),
    ("tiny pool with the default grid", ["curve", "--task", "synthetic-powerlaw", "--pool-size",
                                         "5"], "too few for the default η grid"),
    ("etas beyond a given pool", ["curve", "--task", "synthetic-powerlaw", "--pool-size", "20",
                                  "--etas", "5,25"], "for a pool of N = 20"),
    ("toy without the kept mode", ["toy", "--lambda-1", "0"], "`lambda_1`"),
    ("empty demo pool", ["demo", "--pool-size", "0"], "`--pool-size`"),
    ("unknown task", ["curve", "--task", "mnist-0-x"], "unknown mnist class"),
    ("unknown activation", ["curve", "--activation", "sigmoidx"], "`activation`"),
    ("negative ridge", ["curve", "--sigma2", "-1"], "`sigma2`"),
    ("one trial", ["curve", "--trials", "1"], "`trials`"),
    ("zero modes", ["curve", "--eigs", "0"], "`eigs`"),
    ("negative pool size", ["curve", "--pool-size", "-5"], "`pool_size`"),
    ("threshold above 1", ["curve", "--threshold", "1.5"], "strictly inside (0, 1)"),
    ("negative depth", ["curve", "--depth", "-1"], "`depth`"),
    ("negative weight std", ["curve", "--W-std", "-1"], "`W_std`"),
    ("NaN bias std", ["curve", "--b-std", "nan"], "`b_std`"),
    ("unknown source", ["curve", "--source", "web"], "invalid choice"),
    ("ridge as text", ["curve", "--sigma2", "abc"], "invalid float value"),
    ("tiny pool for the diagnostics", ["gaussianity", "--task", "synthetic-powerlaw",
                                       "--pool-size", "3"], "too few points"),
    ("one point in the sweep", ["gaussianity", "--n-points", "1"], "`n_points`"),
    ("one toy data set", ["toy", "--m", "1"], "`m`"),
    ("negative kept eigenvalue", ["toy", "--lambda-1", "-1"], "`lambda_1`"),
    ("unknown bench stage", ["bench", "--stages", "nope"], "unknown stage 'nope'"),
    ("bench pool too small", ["bench", "--sizes", "0"], "`sizes`"),
    ("zero optimisation steps", ["optimize", "--steps", "0"], "`steps`"),
]


@pytest.mark.parametrize("name, argv, text", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_exit_2(name, argv, text, tmp_path, capsys):
    try:  # argparse exits; errors found in the configuration are returned
        extra = [] if argv[0] == "demo" else ["--out", str(tmp_path / "run")]
        extra += [] if argv[0] in ("demo", "bench") else ["--quiet"]
        code = cli.main([*argv, *extra])
    except SystemExit as info:
        code = info.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and text in err[-1] and "Traceback" not in "\n".join(err), err
    assert not (tmp_path / "run").exists()  # nothing created by a failed start


@pytest.mark.parametrize("argv, text", [(["curve", "--out", "FILE"], "is a file, not a folder"),
                                        (["plot", "EMPTY"], "no results.json")])
def test_cli_bad_folder_is_one_line_exit_2(argv, text, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = [{"FILE": str(tmp_path / "file"), "EMPTY": str(tmp_path / "empty")}.get(a, a)
            for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0]


def test_other_options_in_the_same_folder_name_the_overwrite_flag(tmp_path, capsys, monkeypatch):
    base = ["curve", "--task", "synthetic-powerlaw", "--pool-size", "60", "--etas", "5,10",
            "--trials", "2", "--out", str(tmp_path), "--quiet", "--no-plots"]
    assert cli.main([*base, "--sigma2", "1e-3"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:  # found before the pool, the kernel and the spectrum
        m.setattr(curve_job, "build_pool", lambda *a, **k: pytest.fail("built the pool"))
        assert cli.main([*base, "--sigma2", "1e-2"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "sigma2" in err and "Traceback" not in err
    assert cli.main([*base, "--sigma2", "1e-2", "--overwrite"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "--sigma2", "1e-2"]) == 0  # the same options again: resumes


@pytest.mark.parametrize("text, match", [("{bad", "is not valid JSON"),
                                          ('{"kind": "toy", "x": 1}', "not a results file")])
def test_plot_on_a_corrupt_or_foreign_results_file_names_it(text, match, tmp_path, capsys):
    (tmp_path / "toy.json").write_text(text)
    assert cli.main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert match in err and "toy.json" in err and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("command, says", [("toy", "resume"), ("curve", "resume"),
                                           ("optimize", "nothing was saved")])
def test_an_interrupted_job_says_what_is_true(command, says, tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    real = cli._jobs()
    jobs = {k: (v._replace(run=interrupt) if k == command else v) for k, v in real.items()}
    monkeypatch.setattr(cli, "_jobs", lambda: jobs)
    code = cli.main([command, "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 130 and says in capsys.readouterr().err
