"""The GPU run behind ``benchmarks/gpu.sh``: dense eigh limits, top-k at N = 50k, the pipeline.

Each section is timed after a warm-up where that makes sense, recorded even when it fails (the
error message is the result: e.g. cuSOLVER's 2³¹-byte limit), and the JSON is rewritten after
every section so an interrupted run keeps what it measured. ``--smoke`` runs tiny sizes (any
backend) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import rgjax  # noqa: E402
from _common import save, timed  # noqa: E402


def powerlaw_inputs(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian inputs with a power-law covariance (a realistic, slowly decaying NNGP spectrum)."""
    scale = np.arange(1, d + 1) ** -0.6
    return np.random.default_rng(seed).standard_normal((n, d)) * scale


def kernel():
    return rgjax.fc(3, "relu", W_std=np.sqrt(2.0), b_std=0.1)


def device_gram(n: int, d: int) -> jax.Array:
    """The Gram matrix built on the accelerator (rows over all local devices)."""
    x = powerlaw_inputs(n, d)
    devs = jax.local_devices()
    while n % len(devs):  # row sharding needs N divisible by the device count
        devs = devs[:-1]
    return rgjax.gram(kernel(), x, devices=devs), x


def section(results: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as err:  # the failure is a measurement too
        results[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:500]}",
                         "traceback": traceback.format_exc()[-2000:]}
    results[name + "_wall_s"] = time.perf_counter() - t0
    print(f"[{name}] {results[name] if 'error' in results[name] else 'ok'} "
          f"({results[name + '_wall_s']:.1f} s)", flush=True)
    save("gpu", results)


def dense_eigh(sizes, d):
    out = []
    for n in sizes:
        row = {"n": n, "bytes": n * n * 8}
        try:
            K, _ = device_gram(n, d)
            K = jax.device_put(K, jax.local_devices()[0])
            f = jax.jit(jnp.linalg.eigh)
            t0 = time.perf_counter()
            jax.block_until_ready(f(K))
            row["first_call_s"] = time.perf_counter() - t0
            row["eigh_s"], _ = timed(lambda: f(K), warmup=False)
            del K
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        print(f"  eigh N={n}: {row}", flush=True)
        out.append(row)
    return out


def guard(n, d):
    """from_gram(method='dense') above 2³¹ bytes on a GPU: the top-k fallback, with its warning."""
    import warnings

    K, x = device_gram(n, d)
    y = np.sign(x[:, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        spec = rgjax.from_gram(K, y)
        jax.block_until_ready(spec.eigenvalues)
    return {"n": n, "s": time.perf_counter() - t0, "n_modes": spec.n_modes,
            "warnings": [str(w.message)[:300] for w in caught]}


def topk(n, d, k):
    K, x = device_gram(n, d)
    y = np.sign(x[:, 0])
    t0 = time.perf_counter()
    spec = rgjax.from_gram(K, y, k=k, method="topk")
    jax.block_until_ready(spec.eigenvalues)
    first = time.perf_counter() - t0
    again, _ = timed(lambda: rgjax.from_gram(K, y, k=k, method="topk").eigenvalues, warmup=False)
    etas = np.geomspace(10, n // 2, 20)
    sb = np.asarray(rgjax.mse_spectral_bias(spec, etas, 1e-8))
    return {"n": n, "k": k, "first_call_s": first, "topk_s": again, "lambda_1": float(spec.eigenvalues[0]),
            "lambda_k": float(spec.eigenvalues[-1]), "trace": float(spec.trace),
            "spectral_bias_at_eta": dict(zip([int(e) for e in etas], sb.tolist()))}


def pipeline(n, eigs, trials):
    rows = []
    for k in (eigs, None):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "rgjax.cli", "curve", "--task", "synthetic-powerlaw",
                   "--pool-size", str(n), "--trials", str(trials), "--no-plots", "--quiet",
                   "--out", tmp] + (["--eigs", str(k)] if k else [])
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True)
            res = json.loads((Path(tmp) / "results.json").read_text()) if p.returncode == 0 else None
        rows.append({"n": n, "eigs": k, "wall_s": time.perf_counter() - t0, "rc": p.returncode,
                     "timings": res and res["timings"], "fidelity": res and res["fidelity"],
                     "stderr": p.stderr[-1500:] if p.returncode else ""})
        print(f"  pipeline N={n} eigs={k}: {rows[-1]['wall_s']:.1f} s rc={p.returncode}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script anywhere")
    args = p.parse_args()
    d = 784
    if args.smoke:
        sizes, big, guard_n, k, pipe_n, trials = [256, 512], 1024, 512, 32, 600, 2
    else:
        sizes, big, guard_n, k, pipe_n, trials = [8000, 16000, 20000], 50_000, 20_000, 256, 10_000, 10
    results: dict = {"smoke": args.smoke, "devices": [str(dv) for dv in jax.devices()]}
    section(results, "dense_eigh", lambda: dense_eigh(sizes, d))
    section(results, "dense_guard", lambda: guard(guard_n, d))
    section(results, "topk", lambda: topk(big, d, k))
    section(results, "pipeline", lambda: pipeline(pipe_n, 512 if not args.smoke else 64, trials))


if __name__ == "__main__":
    main()
