"""Tests for rgjax.kernels: neural-tangents reference values, closed forms vs quadrature,
finite-width Monte Carlo, gradients, the blocked Gram builder, the kernel_fn adapter, validation."""

import collections
import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from jax.scipy.special import erf

from rgjax.kernels import (
    Abs,
    Conv,
    Dense,
    Elementwise,
    Erf,
    Flatten,
    GlobalAvgPool,
    Identity,
    LeakyRelu,
    Relu,
    fc,
    from_kernel_fn,
    gram,
    gram_diagonal,
    gram_matvec,
    gram_operator,
    serial,
)
from rgjax.kernels import _gram, _operator

_HERE = pathlib.Path(__file__).resolve().parent
# neural-tangents 0.6.5 values (see ../shared/reference/nt_reference.py); a copy vendored in
# tests/data/ wins, then the shared folder next to the repository.
REF_CANDIDATES = [
    _HERE / "data" / "nt_reference.txt",
    _HERE.parents[1] / "shared" / "reference" / "nt_reference.txt",
]
W_STD, B_STD = 1.5, 0.05


# ------------------------------------------------------------------------------------------
# neural-tangents reference values
# ------------------------------------------------------------------------------------------


def _reference_inputs():
    """Regenerate the inputs of nt_reference.py at full precision (the file prints 12 digits)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    x2 = rng.normal(size=(3, 4))
    img = rng.normal(size=(3, 4, 4, 2))
    return x, x2, img


def _parse_reference(path):
    """{section title: flat float array} from '## title' headers followed by printed numbers."""
    sections, title, lines = {}, None, []
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            if title is not None:
                sections[title] = lines
            title, lines = line[3:].strip(), []
        elif title is not None:
            lines.append(line)
    sections[title] = lines
    return {
        t: np.array([float(v) for v in re.sub(r"[\[\]]", " ", " ".join(ls)).split()])
        for t, ls in sections.items()
    }


@pytest.fixture(scope="module")
def reference():
    for path in REF_CANDIDATES:
        if path.exists():
            return _parse_reference(path)
    pytest.fail(f"neural-tangents reference file not found; looked in {REF_CANDIDATES}")


def _nngp_sections(reference):
    out = []
    for title, values in reference.items():
        m = re.search(r"NNGP .*shape=\((\d+), (\d+)\)", title)
        if m:
            out.append((title, values.reshape(int(m[1]), int(m[2]))))
    return out


def _kernel_for_title(title):
    """Rebuild the architecture named in a section title of nt_reference.txt."""
    m = re.match(r"\[Dense\(W_std=([\d.]+),b_std=([\d.]+)\)-(\w+)\]x(\d+)-Dense", title)
    if m:
        w, b, act, depth = float(m[1]), float(m[2]), m[3].lower(), int(m[4])
        return fc(depth, act, W_std=w, b_std=b)
    m = re.match(
        r"Conv\(3x3,stride1,padding=(\w+),W_std=([\d.]+),b_std=([\d.]+)\)-Relu-GlobalAvgPool", title
    )
    assert m, f"unrecognised reference architecture: {title}"
    pad, w, b = m[1], float(m[2]), float(m[3])
    return serial(Conv((3, 3), (1, 1), pad, w, b), Relu(), GlobalAvgPool(), Dense(w, b))


def test_reference_inputs_regenerate(reference):
    x, _, _ = _reference_inputs()
    np.testing.assert_allclose(reference["X"].reshape(5, 4), x, atol=1e-12)


def test_every_nngp_matrix_matches_neural_tangents(reference):
    x, x2, img = _reference_inputs()
    sections = _nngp_sections(reference)
    assert len(sections) == 10  # 4 MLPs × (K(X,X), K(X2,X)) + 2 Conv networks
    for title, expected in sections:
        kernel = _kernel_for_title(title)
        if "K(X2,X)" in title:
            got = kernel(x2, x)
        elif "K(IMG,IMG)" in title:
            got = kernel(img)
        else:
            assert "K(X,X)" in title
            got = kernel(x)
        assert got.shape == expected.shape, title
        np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-10, err_msg=title)


def test_reference_gradient_shared_hyperparameters(reference):
    x, _, _ = _reference_inputs()
    (title,) = [t for t in reference if t.startswith("[Dense-Relu]x2-Dense sum(NNGP")]
    val_ref, gw_ref, gb_ref = reference[title]

    def loss(w, b):  # kernel built inside the function: W_std, b_std are tracers
        return jnp.sum(serial(Dense(w, b), Relu(), Dense(w, b), Relu(), Dense(w, b))(x))

    val, (gw, gb) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(W_STD, B_STD)
    np.testing.assert_allclose([val, gw, gb], [val_ref, gw_ref, gb_ref], rtol=1e-11)


def test_grad_wrt_kernel_object_sums_to_shared_gradient(reference):
    """grad wrt the pytree gives one gradient per layer; their sum is the shared-parameter one."""
    x, _, _ = _reference_inputs()
    (title,) = [t for t in reference if t.startswith("[Dense-Relu]x2-Dense sum(NNGP")]
    _, gw_ref, gb_ref = reference[title]
    kernel = fc(2, "relu", W_STD, B_STD)
    g = jax.jit(jax.grad(lambda k: jnp.sum(k(x))))(kernel)
    assert type(g) is type(kernel)
    dense = [layer for layer in g.layers if isinstance(layer, Dense)]
    assert len(dense) == 3
    np.testing.assert_allclose(sum(float(d.W_std) for d in dense), gw_ref, rtol=1e-11)
    np.testing.assert_allclose(sum(float(d.b_std) for d in dense), gb_ref, rtol=1e-11)


# ------------------------------------------------------------------------------------------
# Gradients: finite differences, finiteness at the diagonal
# ------------------------------------------------------------------------------------------


def _fd_check(kernel, x, rtol=1e-6, h=1e-6):
    """Central finite differences over every leaf of the kernel pytree vs jax.grad."""
    weights = np.random.default_rng(3).normal(size=(x.shape[0], x.shape[0]))
    flat, unravel = ravel_pytree(kernel)

    @jax.jit
    def loss(theta):
        return jnp.sum(weights * unravel(theta)(x))

    grad = np.asarray(jax.jit(jax.grad(loss))(flat))
    fd = np.array(
        [(loss(flat.at[i].add(h)) - loss(flat.at[i].add(-h))) / (2 * h) for i in range(flat.size)]
    )
    np.testing.assert_allclose(grad, fd, rtol=rtol, atol=1e-8 * np.max(np.abs(fd)))
    return grad


@pytest.mark.parametrize(
    "kernel",
    [
        fc(2, "leaky_relu", 1.3, 0.2, alpha=0.3),
        fc(2, "erf", 1.2, 0.1),
        serial(
            Conv((3, 3), (2, 2), "SAME", 1.4, 0.1), Abs(),
            Conv((2, 2), (1, 1), "VALID", 0.9, 0.3), Relu(), GlobalAvgPool(), Dense(1.1, 0.2),
        ),
    ],
    ids=["leaky_relu", "erf", "conv"],
)
def test_gradient_matches_finite_differences(kernel):
    rng = np.random.default_rng(4)
    is_conv = isinstance(kernel.layers[0], Conv)
    x = rng.normal(size=(3, 5, 5, 2) if is_conv else (4, 3))
    grad = _fd_check(kernel, x)
    assert np.all(grad != 0)  # every leaf (incl. alpha) influences the kernel


@pytest.mark.parametrize(
    "act",
    [Relu(), Erf(), Abs(), LeakyRelu(0.1), Identity(), Elementwise(jnp.tanh, 8)],
    ids=["relu", "erf", "abs", "leaky", "identity", "tanh_quad"],
)
def test_gradient_finite_on_diagonal_duplicates_and_zero_inputs(act):
    """ρ = ±1 exactly (diagonal, duplicated, rescaled and negated points) and zero variance (a zero
    point before the first activation, whose Dense has b_std = 0) are where arccos, arcsin and
    √(1-ρ²) have infinite derivatives."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, 3))
    x[1] = x[0]  # duplicate: off-diagonal ρ = 1
    x[2] = 2.0 * x[0]  # rescaled: ρ = 1 with different variances
    x[3] = -x[0]  # ρ = -1
    x[4] = 0.0  # zero variance after Dense(w, 0)

    @jax.jit
    def loss(w, b):
        return jnp.sum(serial(Dense(w, 0.0), act, Dense(w, b), act, Dense(w, b))(x))

    val, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(1.3, 0.05)
    assert np.isfinite(val) and np.all(np.isfinite(grads))
    # the derivative through the clipped ρ is the exact one: compare with finite differences
    h = 1e-6
    fd = [(loss(1.3 + h, 0.05) - loss(1.3 - h, 0.05)) / (2 * h),
          (loss(1.3, 0.05 + h) - loss(1.3, 0.05 - h)) / (2 * h)]
    np.testing.assert_allclose(grads, fd, rtol=1e-5)


def test_vmap_over_hyperparameters():
    x = np.random.default_rng(6).normal(size=(4, 3))
    ws = jnp.array([0.5, 1.0, 2.0])
    batched = jax.vmap(lambda w: fc(2, "relu", w, 0.1)(x))(ws)
    for w, k in zip(ws, batched):
        np.testing.assert_allclose(k, fc(2, "relu", float(w), 0.1)(x), rtol=1e-13)


# ------------------------------------------------------------------------------------------
# Closed forms vs Gauss–Hermite quadrature
# ------------------------------------------------------------------------------------------


def _two_layer(act):
    return serial(Dense(1.3, 0.1), act, Dense(1.1, 0.2), act, Dense(0.9, 0.05))


def _quad_inputs():
    x = np.random.default_rng(7).normal(size=(6, 3))
    x[5] = -0.9 * x[4]  # strongly anti-correlated pair
    return x


@pytest.mark.parametrize(
    "closed,fn",
    [(Erf(), erf), (Identity(), lambda v: v)],
    ids=["erf", "identity"],
)
def test_quadrature_matches_smooth_closed_forms_tightly(closed, fn):
    """Smooth activations: 96² nodes reach round-off (tolerance 1e-12 absolute)."""
    x = _quad_inputs()
    exact = _two_layer(closed)(x)
    quad = _two_layer(Elementwise(fn, num_points=96))(x)
    np.testing.assert_allclose(quad, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "closed,fn",
    [
        (Relu(), jax.nn.relu),
        (Abs(), jnp.abs),
        (LeakyRelu(0.2), lambda v: jnp.where(v > 0, v, 0.2 * v)),
    ],
    ids=["relu", "abs", "leaky_relu"],
)
def test_quadrature_converges_to_kinked_closed_forms(closed, fn):
    """Kinks converge only algebraically under Gauss–Hermite (≈ 1/num_points). Measured worst
    relative errors (16 → 128 nodes per axis): ReLU 4.4e-2 → 5.4e-3, Abs 5.0e-2 → 6.0e-3,
    LeakyRelu(0.2) 7.4e-2 → 9.1e-3. Asserted: < 1.5e-2 at 128 nodes and a ≥ 5× reduction."""
    x = _quad_inputs()

    def one_layer(act):
        return serial(Dense(1.3, 0.1), act, Dense(1.1, 0.2))

    exact = np.asarray(one_layer(closed)(x))
    err = {
        q: np.max(np.abs(np.asarray(one_layer(Elementwise(fn, q))(x)) - exact) / np.abs(exact))
        for q in (16, 128)
    }
    assert err[128] < 1.5e-2
    assert err[128] < err[16] / 5


def test_leaky_relu_limits():
    x = np.random.default_rng(8).normal(size=(4, 3))
    np.testing.assert_allclose(_two_layer(LeakyRelu(0.0))(x), _two_layer(Relu())(x), rtol=1e-14)
    np.testing.assert_allclose(_two_layer(LeakyRelu(1.0))(x), _two_layer(Identity())(x), rtol=1e-14)
    np.testing.assert_allclose(_two_layer(LeakyRelu(-1.0))(x), _two_layer(Abs())(x), rtol=1e-14)


def test_distinct_layer_types_never_share_a_compiled_kernel():
    """Regression: jax.tree_util.register_dataclass treedefs of different field-less classes
    compare equal, and jit's cache then (sometimes) ran Abs's kernel for Identity."""
    assert jax.tree.structure(Abs()) != jax.tree.structure(Identity())
    assert jax.tree.structure(Relu()) != jax.tree.structure(Erf())
    x = np.random.default_rng(9).normal(size=(4, 3))
    linear = 1.1**2 * (1.3**2 * x @ x.T / 3 + 0.1**2) + 0.2**2
    for act in (Abs(), Relu(), Erf(), Identity()):
        got = serial(Dense(1.3, 0.1), act, Dense(1.1, 0.2))(x)
    np.testing.assert_allclose(got, linear, rtol=1e-13)


# ------------------------------------------------------------------------------------------
# Finite-width Monte Carlo
# ------------------------------------------------------------------------------------------


def _assert_within_se(samples, expected, n_se=5.0, max_rel_se=0.02):
    """``samples``: (seeds, n1, n2) unbiased (or O(1/width)-biased) estimates of ``expected``."""
    samples = np.asarray(samples)
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    expected = np.asarray(expected)
    # the test must be sensitive: the standard error is small compared with the kernel scale
    assert np.max(se) < max_rel_se * np.max(np.abs(expected))
    z = np.abs(mean - expected) / se
    assert np.all(z < n_se), f"max deviation {np.max(z):.1f} standard errors"


def _mlp_readout_kernel(x, act, depth, width, w, b, rng):
    """Finite-width MLP, standard-normal weights, NTK scaling; returns the exact covariance of the
    (random) output layer given the hidden features: w² φ φᵀ/width + b²."""
    d = x.shape[1]
    h = w * x @ rng.standard_normal((d, width)) / np.sqrt(d) + b * rng.standard_normal(width)
    for _ in range(depth - 1):
        a = act(h)
        weights = rng.standard_normal((width, width))
        h = w * a @ weights / np.sqrt(width) + b * rng.standard_normal(width)
    a = act(h)
    return w**2 * a @ a.T / width + b**2


_NP_ACTS = {
    "relu": (lambda v: np.maximum(v, 0), Relu()),
    "erf": (lambda v: np.asarray(erf(v)), Erf()),
    "abs": (np.abs, Abs()),
    "leaky_relu": (lambda v: np.where(v > 0, v, 0.3 * v), LeakyRelu(0.3)),
    "tanh": (np.tanh, Elementwise(jnp.tanh, 48)),
}


@pytest.mark.parametrize("name", list(_NP_ACTS))
def test_one_hidden_layer_monte_carlo(name):
    """One hidden layer: the readout covariance averaged over seeds is unbiased for the NNGP."""
    act_np, act = _NP_ACTS[name]
    x = np.random.default_rng(10).normal(size=(6, 4))
    rng = np.random.default_rng(11)
    samples = [_mlp_readout_kernel(x, act_np, 1, 4000, 1.4, 0.2, rng) for _ in range(40)]
    _assert_within_se(samples, serial(Dense(1.4, 0.2), act, Dense(1.4, 0.2))(x))


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_deep_monte_carlo(name):
    """Depth 2: the finite-width bias is O(1/width) ≈ 1e-3, far below the statistical error."""
    act_np, _ = _NP_ACTS[name]
    x = np.random.default_rng(12).normal(size=(5, 4))
    rng = np.random.default_rng(13)
    samples = [_mlp_readout_kernel(x, act_np, 2, 1200, 1.4, 0.2, rng) for _ in range(20)]
    _assert_within_se(samples, fc(2, name, 1.4, 0.2)(x), max_rel_se=0.03)


@pytest.mark.parametrize(
    "filter_shape,strides,padding",
    [((3, 3), (1, 1), "SAME"), ((3, 3), (1, 1), "VALID"), ((3, 2), (2, 2), "SAME")],
)
def test_conv_monte_carlo(filter_shape, strides, padding):
    """Conv-Relu-GlobalAvgPool-Dense with finitely many channels, forward pass by lax.conv
    (an independent implementation of padding and strides; the strided SAME case on 6×5 images
    pads asymmetrically, 0 before and 1 after, on both axes)."""
    w, b, channels = 1.4, 0.2, 3000
    img = np.random.default_rng(14).normal(size=(3, 6, 5, 2))
    rng = np.random.default_rng(15)
    fan_in = filter_shape[0] * filter_shape[1] * img.shape[-1]
    samples = []
    for _ in range(30):
        filt = rng.standard_normal((*filter_shape, img.shape[-1], channels))
        h = jax.lax.conv_general_dilated(
            img, filt, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        h = w * np.asarray(h) / np.sqrt(fan_in) + b * rng.standard_normal(channels)
        g = np.maximum(h, 0).mean(axis=(1, 2))
        samples.append(w**2 * g @ g.T / channels + b**2)
    conv = Conv(filter_shape, strides, padding, w, b)
    kernel = serial(conv, Relu(), GlobalAvgPool(), Dense(w, b))
    _assert_within_se(samples, kernel(img))


def test_flatten_is_the_fully_connected_kernel_of_flattened_images():
    img = np.random.default_rng(16).normal(size=(4, 3, 3, 2))
    flat = img.reshape(4, -1)
    np.testing.assert_allclose(Flatten()(img), flat @ flat.T / flat.shape[1], rtol=1e-13)
    np.testing.assert_allclose(
        serial(Flatten(), Dense(1.2, 0.3), Relu(), Dense())(img),
        serial(Dense(1.2, 0.3), Relu(), Dense())(flat),
        rtol=1e-13,
    )


def test_conv_without_pooling_returns_spatial_covariance():
    img = np.random.default_rng(17).normal(size=(2, 4, 3, 2))
    k = serial(Conv((3, 3), padding="VALID"), Relu())(img, img[:1])
    assert k.shape == (2, 1, 2, 1, 2, 1)
    # a 1x1 Conv is a per-position Dense
    k1 = Conv((1, 1), W_std=1.3, b_std=0.2)(img)
    k0 = jnp.einsum("ihwc,jklc->ijhwkl", img, img) / 2
    np.testing.assert_allclose(k1, 1.3**2 * k0 + 0.2**2, rtol=1e-13)


# ------------------------------------------------------------------------------------------
# Gram matrices
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel,shape,block",
    [
        (fc(2, "relu", 1.5, 0.05), (37, 5), 8),
        (fc(1, "erf", 1.2, 0.0), (37, 5), 37),
        (fc(3, "abs", 1.0, 0.1), (20, 3), 100),
        (serial(Conv((3, 3), (1, 1), "SAME", 1.5, 0.05), Relu(), GlobalAvgPool(), Dense(1.5, 0.05)),
         (11, 4, 4, 1), 4),
    ],
    ids=["relu_block8", "erf_one_block", "abs_block_gt_n", "conv_block4"],
)
def test_gram_matches_kernel_symmetric_psd(kernel, shape, block):
    x = np.random.default_rng(18).normal(size=shape)
    K = gram(kernel, x, block_size=block)
    assert isinstance(K, np.ndarray) and K.shape == (shape[0], shape[0]) and K.dtype == np.float64
    np.testing.assert_allclose(K, np.asarray(kernel(x, x)), rtol=0, atol=1e-12)
    assert np.array_equal(K, K.T)  # mirrored tiles: exactly symmetric
    eig = np.linalg.eigvalsh(K)
    assert eig[0] >= -1e-10 * np.trace(K)


def test_gram_compiles_one_tile_shape():
    """The last block is padded, so a block size that does not divide N compiles one tile."""
    kernel = fc(1, "abs", 0.7, 0.3)  # with d = 7: a tile shape no other test compiles
    x = np.random.default_rng(23).normal(size=(23, 7))
    before = _gram.gram_tile._cache_size()
    K = gram(kernel, x, block_size=5, progress=True)
    assert _gram.gram_tile._cache_size() == before + 1
    np.testing.assert_allclose(K, kernel(x), rtol=0, atol=1e-12)


def test_gram_psd_on_larger_pool():
    x = np.random.default_rng(19).normal(size=(300, 10))
    K = gram(fc(2, "relu", 1.5, 0.05), x, block_size=128)
    eig = np.linalg.eigvalsh(K)
    assert eig[0] >= -1e-10 * np.trace(K)


def _numpy_relu_nngp(x, depth, w_std, b_std):
    """Independent numpy arc-cosine recursion of [Dense, Relu] x depth + Dense (whole matrix)."""
    w2, b2 = w_std**2, b_std**2
    k = w2 * (x @ x.T) / x.shape[1] + b2
    for _ in range(depth):
        d = np.sqrt(np.diag(k))
        norm = np.outer(d, d)
        theta = np.arccos(np.clip(k / norm, -1.0, 1.0))
        k = w2 * norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi) + b2
    return k


@pytest.mark.parametrize("block", [7, 512])
def test_gram_matches_numpy_recursion_any_block(block):
    """Blocks that do not divide N (the last block is shifted back to end at N) or exceed N."""
    x = np.random.default_rng(30).normal(size=(37, 6))
    K = gram(fc(3, "relu", 1.4, 0.1), x, block_size=block)
    np.testing.assert_allclose(K, _numpy_relu_nngp(x, 3, 1.4, 0.1), rtol=1e-13, atol=1e-13)
    assert np.array_equal(K, K.T)


def test_gram_numpy_and_jax_inputs_give_identical_matrices():
    """A numpy x is passed block by block on CPU, a jax x is sliced on the device: same tiles."""
    x = np.random.default_rng(31).normal(size=(29, 5))
    kernel = fc(2, "erf", 1.3, 0.2)
    assert np.array_equal(gram(kernel, x, block_size=8), gram(kernel, jnp.asarray(x), block_size=8))


def test_gram_single_device_array():
    """devices=1 returns a jax.Array on one device with the numbers of the host path."""
    x = np.random.default_rng(32).normal(size=(21, 4))
    kernel = fc(2, "relu", 1.5, 0.05)
    K = gram(kernel, x, block_size=8, devices=1)
    assert isinstance(K, jax.Array) and K.shape == (21, 21) and K.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(K), gram(kernel, x, block_size=8), rtol=0, atol=1e-14)
    K2 = gram(kernel, x, block_size=8, devices=jax.devices()[:1])
    np.testing.assert_array_equal(np.asarray(K2), np.asarray(K))


_OPERATOR_CASES = [
    (fc(2, "relu", 1.5, 0.05), (37, 5), 8),
    (serial(Conv((3, 3), (1, 1), "SAME", 1.5, 0.05), Relu(), GlobalAvgPool(), Dense(1.5, 0.05)),
     (11, 4, 4, 1), 64),
]


@pytest.mark.parametrize("kernel,shape,block", _OPERATOR_CASES, ids=["relu", "conv_block_gt_n"])
def test_gram_matvec_and_diagonal_match_dense(kernel, shape, block):
    rng = np.random.default_rng(33)
    x = rng.normal(size=shape)
    K = np.asarray(kernel(x))  # the direct (unblocked) kernel evaluation
    V = rng.normal(size=(shape[0], 3))
    scale = np.abs(K).sum(axis=1).max() * np.abs(V).max()
    out = gram_matvec(kernel, x, V, block_size=block)
    assert out.shape == V.shape
    np.testing.assert_allclose(out, K @ V, rtol=0, atol=1e-14 * scale)
    diag = gram_diagonal(kernel, x)
    assert diag.shape == (shape[0],)
    np.testing.assert_allclose(diag, np.diag(K), rtol=1e-14, atol=0)


def test_gram_operator_for_eigensolvers():
    """The operator is a callable (N, b) -> (N, b), a pytree usable inside jit, compiled once."""
    rng = np.random.default_rng(34)
    x = rng.normal(size=(30, 4))
    kernel = fc(2, "relu", 1.5, 0.05)
    K = gram(kernel, x)
    op = gram_operator(kernel, x, block_size=7)
    assert op.shape == (30, 30) and op.dtype == jnp.float64
    np.testing.assert_allclose(op.trace(), np.trace(K), rtol=1e-14)
    np.testing.assert_allclose(op.diagonal(), np.diag(K), rtol=1e-14)
    V = rng.normal(size=(30, 2))
    before = _operator.tiled_matvec._cache_size()
    first = op(V)
    np.testing.assert_array_equal(op.matvec(V + 0.0), first)
    assert _operator.tiled_matvec._cache_size() == before + 1
    np.testing.assert_allclose(first, K @ V, atol=1e-13)

    @jax.jit
    def rayleigh(op, v):  # a solver step: the operator passes through jit as a pytree
        return v.T @ op(v)

    np.testing.assert_allclose(rayleigh(op, V), V.T @ K @ V, rtol=1e-12)
    partial = functools.partial(gram_matvec, kernel, x, block_size=7)
    np.testing.assert_array_equal(partial(V), first)
    v1 = op(V[:, 0])  # a vector in, a vector out
    assert v1.shape == (30,)
    np.testing.assert_allclose(v1, K @ V[:, 0], atol=1e-13)


def test_gram_functions_with_kernel_fn_adapter():
    x = np.random.default_rng(35).normal(size=(13, 3))
    kern = fc(1, "relu", 1.2, 0.1)
    wrapped = from_kernel_fn(lambda a, b, get: kern(a, b))
    K = np.asarray(kern(x))
    V = np.random.default_rng(36).normal(size=(13, 2))
    np.testing.assert_allclose(gram(wrapped, x, block_size=4), K, atol=1e-14)
    np.testing.assert_allclose(gram_matvec(wrapped, x, V, block_size=4), K @ V, atol=1e-13)
    np.testing.assert_allclose(gram_diagonal(wrapped, x), np.diag(K), rtol=1e-14)


def test_gram_device_and_operator_arguments_raise_clear_errors():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    kernel, x = fc(1), np.ones((4, 2))
    mesh = Mesh(jax.devices()[:1], ("r",))
    with pytest.raises(ValueError, match="either `devices` or `sharding`"):
        gram(kernel, x, devices=1, sharding=NamedSharding(mesh, PartitionSpec("r")))
    with pytest.raises(ValueError, match=r"`devices`=0 must lie in \[1, "):
        gram(kernel, x, devices=0)
    with pytest.raises(ValueError, match="`devices` must be a non-empty sequence of jax devices"):
        gram(kernel, x, devices=["cpu"])
    with pytest.raises(ValueError, match="the same device more than once"):
        gram(kernel, x, devices=jax.devices()[:1] * 2)
    with pytest.raises(ValueError, match="`sharding` must be a jax.sharding.NamedSharding"):
        gram(kernel, x, sharding="rows")
    with pytest.raises(ValueError, match="must split the rows"):
        gram(kernel, x, sharding=NamedSharding(mesh, PartitionSpec(None, "r")))
    with pytest.raises(ValueError, match="Mesh of devices; got a mesh of type AbstractMesh"):
        gram(kernel, x, sharding=NamedSharding(mesh.abstract_mesh, PartitionSpec("r")))
    with pytest.raises(ValueError, match="ends on spatial layers"):
        gram(serial(Conv(), Relu()), np.ones((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="ends on spatial layers"):
        gram_operator(serial(Conv(), Relu()), np.ones((2, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"`V` must have shape \(N,\) or \(N, b\) with N = 4"):
        gram_matvec(kernel, x, np.ones((3, 2)))
    with pytest.raises(ValueError, match="`V` contains 1 NaN/Inf"):
        gram_matvec(kernel, x, np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"`block_size` must be an integer >= 1 \(the tile edge\)"):
        gram_operator(kernel, x, block_size=1.5)
    with pytest.raises(ValueError, match="`x` contains 1 NaN/Inf"):
        gram_diagonal(kernel, np.array([[1.0, np.inf]]))
    with pytest.raises(TypeError, match="from_kernel_fn"):
        gram_matvec(lambda a, b: a @ b.T, x, np.ones(4))


def test_kernel_symmetric_and_cross_consistent():
    rng = np.random.default_rng(20)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    k = fc(2, "erf", 1.3, 0.1)
    np.testing.assert_allclose(k(x), k(x).T, atol=1e-15)
    np.testing.assert_allclose(k(x, y), k(y, x).T, atol=1e-15)
    np.testing.assert_allclose(k(x, y), k(np.vstack([x, y]))[:6, 6:], atol=1e-14)


# ------------------------------------------------------------------------------------------
# neural-tangents adapter
# ------------------------------------------------------------------------------------------


def test_from_kernel_fn_round_trip():
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(4, 3))
    native = fc(2, "relu", 1.5, 0.05)
    calls = []

    def kernel_fn(x1, x2=None, get=None):  # neural-tangents signature
        calls.append(get)
        return native(x1, x2)

    adapted = from_kernel_fn(kernel_fn)
    np.testing.assert_allclose(adapted(x, y), native(x, y), rtol=1e-14)
    np.testing.assert_allclose(adapted(x), native(x), rtol=1e-14)
    np.testing.assert_allclose(gram(adapted, x, 4), gram(native, x, 4), rtol=1e-14)
    assert set(calls) == {"nngp"}
    np.testing.assert_allclose(jax.jit(lambda a: adapted(a))(x), native(x), rtol=1e-14)

    # a kernel_fn returning a neural-tangents Kernel-like object with an `nngp` field
    Out = collections.namedtuple("Out", ["nngp", "ntk"])
    adapted2 = from_kernel_fn(lambda x1, x2, get: Out(native(x1, x2), None))
    np.testing.assert_allclose(adapted2(x, y), native(x, y), rtol=1e-14)


# ------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    k = fc(1)
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"`x2` has feature shape \(3,\) but `x1` has \(4,\)"):
        k(x, np.ones((2, 3)))
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="`x1` contains 1 NaN/Inf"):
        k(bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="`x2` contains 1 NaN/Inf"):
        k(x, bad)
    with pytest.raises(ValueError, match=r"`x1` must have shape \(n, d\) or \(n, H, W, C\)"):
        k(np.ones(4))
    with pytest.raises(ValueError, match=r"`x1` must have shape .*ndim=3"):
        k(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="Conv needs image inputs"):
        serial(Conv(), Relu())(x)
    with pytest.raises(ValueError, match="GlobalAvgPool needs image inputs"):
        GlobalAvgPool()(x)
    with pytest.raises(ValueError, match="`x` contains 1 NaN/Inf"):
        gram(k, bad)
    with pytest.raises(ValueError, match="`x` must have shape"):
        gram(k, np.ones(3))


@pytest.mark.parametrize(
    "kernel,match",
    [
        (fc(1, W_std=-1.0), r"`W_std` of Dense must be finite and >= 0; got -1.0"),
        (fc(1, b_std=float("nan")), r"`b_std` of Dense must be finite and >= 0"),
        (fc(1, b_std=jnp.array(-0.1)), r"`b_std` of Dense must be finite and >= 0"),
        (fc(1, "leaky_relu", alpha=float("inf")), r"`alpha` of LeakyRelu must be finite"),
        (serial(Conv(W_std=float("inf")), GlobalAvgPool()), r"`W_std` of Conv must be finite"),
        (fc(1, W_std=np.array([1.0, 2.0])), r"`W_std` of Dense must be a scalar"),
    ],
)
def test_bad_hyperparameters_raise(kernel, match):
    x = np.ones((2, 3, 3, 1)) if isinstance(kernel.layers[0], Conv) else np.ones((2, 3))
    with pytest.raises(ValueError, match=match):
        kernel(x)
    with pytest.raises(ValueError, match=match):
        gram(kernel, x)


def test_bad_construction_arguments():
    names = r"\['abs', 'erf', 'identity', 'leaky_relu', 'relu'\]"
    with pytest.raises(ValueError, match=r"unknown `activation` 'gelu'; valid names are " + names):
        fc(2, "gelu")
    with pytest.raises(ValueError, match="`depth` must be an integer >= 0"):
        fc(-1)
    with pytest.raises(ValueError, match="`padding` of Conv must be 'SAME' or 'VALID'"):
        Conv(padding="FULL")
    with pytest.raises(ValueError, match="`filter_shape` of Conv"):
        Conv(filter_shape=(0, 3))
    with pytest.raises(ValueError, match="padding='VALID' needs inputs at least 3 wide"):
        serial(Conv((3, 3), padding="VALID"), GlobalAvgPool())(np.ones((1, 2, 2, 1)))
    num_points = r"`num_points` must be an integer >= 1 \(Gauss–Hermite nodes of Elementwise\)"
    with pytest.raises(ValueError, match=num_points):
        Elementwise(jnp.tanh, 0)
    with pytest.raises(ValueError, match=num_points):
        Elementwise(jnp.tanh, 2.5)
    with pytest.raises(TypeError, match="serial"):
        serial(Dense(), jnp.tanh)
    with pytest.raises(TypeError, match="from_kernel_fn"):
        gram(lambda a, b: a @ b.T, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"`block_size` must be an integer >= 1 \(the tile edge\)"):
        gram(fc(1), np.ones((3, 2)), block_size=0)


def test_integral_float_counts_are_accepted():
    """Counts go through rgjax._validate.check_int: 2.0 is 2, booleans and fractions are not."""
    x = np.random.default_rng(24).normal(size=(3, 2))
    np.testing.assert_array_equal(fc(2.0)(x), fc(2)(x))
    assert Elementwise(jnp.tanh, 8.0).num_points == 8
    np.testing.assert_array_equal(gram(fc(1), x, block_size=2.0), gram(fc(1), x, block_size=2))
    with pytest.raises(ValueError, match="`depth` must be an integer >= 0"):
        fc(True)
    with pytest.raises(ValueError, match="`depth` must be an integer >= 0"):
        fc(1.5)


def test_layers_are_house_pytrees_with_static_configuration():
    """Hyper-parameters are leaves; filter shapes, padding, callables and node counts are static
    (in the tree definition), and unflattening rebuilds the layer without re-validating."""
    conv = Conv((3, 2), (2, 1), "valid", 1.3, 0.2)
    leaves, treedef = jax.tree.flatten(conv)
    assert [float(v) for v in leaves] == [1.3, 0.2]
    assert treedef != jax.tree.structure(Conv((3, 3), (2, 1), "VALID", 1.3, 0.2))
    rebuilt = jax.tree.unflatten(treedef, [object(), object()])  # placeholders: no validation
    assert (rebuilt.filter_shape, rebuilt.strides, rebuilt.padding) == ((3, 2), (2, 1), "VALID")
    quad = Elementwise(jnp.tanh, 8)
    assert jax.tree.leaves(quad) == []
    assert jax.tree.structure(quad) != jax.tree.structure(Elementwise(jnp.tanh, 9))
    op = gram_operator(fc(1, "relu", 1.5, 0.1), np.ones((4, 2)), block_size=3)
    assert len(jax.tree.leaves(op)) == 2 * 2 + 1  # two Dense layers' (W_std, b_std), and x
    assert jax.tree.unflatten(jax.tree.structure(op), jax.tree.leaves(op)).block_size == 3


def test_callable_activation_and_layer_instance_in_fc():
    x = np.random.default_rng(22).normal(size=(3, 2))
    np.testing.assert_allclose(fc(1, erf, num_points=96)(x), fc(1, "erf")(x), atol=1e-12)
    by_layer, by_name = fc(2, LeakyRelu(0.2))(x), fc(2, "leaky_relu", alpha=0.2)(x)
    np.testing.assert_allclose(by_layer, by_name, rtol=1e-14)


# ------------------------------------------------------------------------------------------
# Property test on shapes
# ------------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    n1=st.integers(1, 6),
    n2=st.integers(1, 6),
    d=st.integers(1, 5),
    depth=st.integers(0, 2),
    act=st.sampled_from(["relu", "erf", "abs"]),
    seed=st.integers(0, 2**16),
)
def test_shapes_property(n1, n2, d, depth, act, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(n1, d)), rng.normal(size=(n2, d))
    k = fc(depth, act, 1.2, 0.1)
    out = np.asarray(k(x1, x2))
    assert out.shape == (n1, n2) and np.all(np.isfinite(out))
    assert np.asarray(k(x1)).shape == (n1, n1)
