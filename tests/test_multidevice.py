"""Multi-device tests on 8 forced CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8).

The device count is fixed when jax starts, so each group of checks runs once in a child process
(``_helpers.run_with_devices``) that prints one JSON line; the tests below read its fields.
"""

import json

import pytest

from _helpers import run_with_devices

# ------------------------------------------------------------------------------------------
# Kernels: row-sharded Gram matrices and sharded matrix-free products
# ------------------------------------------------------------------------------------------

_KERNEL_CHILD = r'''
import json
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from rgjax.kernels import fc, gram, gram_matvec, gram_operator

assert jax.device_count() == 8
res = {}
rng = np.random.default_rng(0)
W, B, DEPTH = 1.4, 0.1, 2
kernel = fc(DEPTH, "relu", W, B)


def numpy_relu(x):  # independent arc-cosine recursion, whole matrix at once
    k = W**2 * (x @ x.T) / x.shape[1] + B**2
    for _ in range(DEPTH):
        d = np.sqrt(np.diag(k))
        norm = np.outer(d, d)
        t = np.arccos(np.clip(k / norm, -1, 1))
        k = W**2 * norm * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi) + B**2
    return k


# N divisible by 8 with per-device rows that the tiles do not divide (48: 6 rows, tiles of 4)
# and with one row tile per device (40 / block 16: 5 rows, 3 column tiles of 14, 13, 13)
for n, block in [(48, 4), (40, 16)]:
    x = rng.normal(size=(n, 5))
    host = gram(kernel, x, block_size=block)
    K = gram(kernel, x, block_size=block, devices=jax.devices())
    Kn = np.asarray(K)
    shards = sorted(K.addressable_shards, key=lambda s: s.index[0].start)
    res[f"gram_{n}"] = {
        "max_diff_host": float(np.max(np.abs(Kn - host))),
        "max_diff_numpy": float(np.max(np.abs(Kn - numpy_relu(x)))),
        "scale": float(np.max(np.abs(host))),
        "asymmetry": float(np.max(np.abs(Kn - Kn.T))),
        "spec": [str(a) for a in K.sharding.spec],
        "n_devices": len({s.device.id for s in shards}),
        "shard_shapes": sorted({tuple(s.data.shape) for s in shards}),
        "shards_are_rows": all(
            np.array_equal(np.asarray(s.data), Kn[s.index]) and s.index[1] == slice(None)
            for s in shards
        ),
    }
    if n == 48:  # linalg accepts the row-sharded matrix (Auto mesh axis)
        w = np.asarray(jnp.linalg.eigh(K)[0])
        res[f"gram_{n}"]["eigh_diff"] = float(np.max(np.abs(w - np.linalg.eigvalsh(host))))

# N not divisible by the number of devices: a clear error naming the fixes
try:
    gram(kernel, rng.normal(size=(37, 5)), devices=8)
    res["indivisible_error"] = ""
except ValueError as e:
    res["indivisible_error"] = str(e)

# a user sharding on a 2-D mesh: rows over one axis or over both
axis_types = (jax.sharding.AxisType.Auto,) * 2 if hasattr(jax.sharding, "AxisType") else None
mesh = jax.make_mesh((2, 4), ("a", "b"), **({"axis_types": axis_types} if axis_types else {}))
x = rng.normal(size=(40, 5))
host = gram(kernel, x, block_size=16)
for name, spec in [("a", P("a")), ("ab", P(("a", "b"), None))]:
    K = gram(kernel, x, block_size=16, sharding=NamedSharding(mesh, spec))
    res[f"mesh_{name}"] = {
        "max_diff": float(np.max(np.abs(np.asarray(K) - host))),
        "same_sharding": K.sharding.is_equivalent_to(NamedSharding(mesh, spec), 2),
    }

# sharded matrix-free products, any N (37: tiles dealt round-robin, partial sums psum-ed)
x = rng.normal(size=(37, 5))
host = gram(kernel, x, block_size=8)
V = rng.normal(size=(37, 3))
op = gram_operator(kernel, x, block_size=8, devices=8)
out = op(V)
res["matvec"] = {
    "max_diff": float(np.max(np.abs(np.asarray(out) - host @ V))),
    "scale": float(np.max(np.abs(host @ V))),
    "jit_diff": float(np.max(np.abs(np.asarray(jax.jit(lambda o, v: o(v))(op, V)) - host @ V))),
    "fn_diff": float(np.max(np.abs(np.asarray(gram_matvec(kernel, x, V, 8, devices=8))
                                   - np.asarray(out)))),
    "trace_diff": float(abs(op.trace() - np.trace(host))),
}

# the tail measure of a top-k spectrum on a row-sharded K equals the one-device result
import rgjax
x = rng.normal(size=(48, 5))
y = np.sign(x[:, 0])
one = rgjax.from_gram(gram(kernel, x), y, 6, method="topk", tail_steps=8)
many = rgjax.from_gram(gram(kernel, x, devices=jax.devices()), y, 6, method="topk", tail_steps=8)
eta = np.array([2.0, 10.0, 24.0])
res["tail"] = {
    name: float(np.max(np.abs(np.asarray(f(many)) / np.asarray(f(one)) - 1)))
    for name, f in (("ek", lambda s: rgjax.mse_ek(s, eta, 1e-3)),
                    ("sb", lambda s: rgjax.mse_spectral_bias(s, eta, 1e-8)))
}
print(json.dumps(res))
'''


@pytest.fixture(scope="module")
def kernel_results():
    return json.loads(run_with_devices(_KERNEL_CHILD, n_devices=8).strip().splitlines()[-1])


@pytest.mark.parametrize("n", [48, 40])
def test_row_sharded_gram_matches_single_device(kernel_results, n):
    r = kernel_results[f"gram_{n}"]
    assert r["max_diff_host"] <= 1e-14 * r["scale"]
    assert r["max_diff_numpy"] <= 1e-13 * r["scale"]
    assert r["asymmetry"] <= 1e-14 * r["scale"]
    assert r.get("eigh_diff", 0.0) <= 1e-12 * r["scale"]


@pytest.mark.parametrize("n", [48, 40])
def test_row_sharded_gram_layout(kernel_results, n):
    r = kernel_results[f"gram_{n}"]
    assert r["spec"][0] == "rows" and all(s == "None" for s in r["spec"][1:])
    assert r["n_devices"] == 8
    assert r["shard_shapes"] == [[n // 8, n]]
    assert r["shards_are_rows"]


def test_indivisible_n_raises_with_fixes(kernel_results):
    msg = kernel_results["indivisible_error"]
    assert "N=37" in msg and "8 row shards" in msg and "x[:32]" in msg


@pytest.mark.parametrize("name", ["a", "ab"])
def test_user_sharding_on_2d_mesh(kernel_results, name):
    r = kernel_results[f"mesh_{name}"]
    assert r["max_diff"] <= 1e-14 and r["same_sharding"]


def test_tail_measure_on_a_row_sharded_gram(kernel_results):
    tail = kernel_results["tail"]
    assert tail["ek"] < 1e-10 and tail["sb"] < 1e-10, tail


def test_sharded_matvec_any_n(kernel_results):
    r = kernel_results["matvec"]
    tol = 1e-14 * r["scale"]
    for key in ("max_diff", "jit_diff"):
        assert r[key] <= tol, (key, r[key], tol)
    assert r["fn_diff"] == 0.0  # gram_matvec(devices=8) is the same compiled product
    assert r["trace_diff"] <= 1e-12
