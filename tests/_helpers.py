"""Small shared fixtures for the tests (random PSD kernels, power-law spectra)."""

import numpy as np


def rbf_gram(n: int, d: int = 3, seed: int = 0, lengthscale: float = 1.5):
    """A well-behaved PSD Gram matrix from an RBF kernel on Gaussian inputs, and targets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    sq = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    K = np.exp(-sq / (2 * lengthscale**2))
    y = np.sign(x[:, 0] + 0.3 * x[:, 1] ** 2 - 0.2)
    return K, y


def powerlaw_arrays(n_modes: int, alpha: float = 0.5, beta: float = 0.5):
    k = np.arange(1, n_modes + 1, dtype=float)
    lam = k ** (-(1 + alpha))
    y2 = k ** (-(1 + beta))
    return lam / lam.sum(), np.sqrt(y2 / y2.sum())


def run_with_devices(code: str, n_devices: int = 8, timeout: float = 600) -> str:
    """Run ``code`` in a fresh Python with ``n_devices`` forced host (CPU) devices; return stdout.

    The device count must be fixed before jax is imported, hence the subprocess. The child runs
    in float64 and fails the calling test (with its stderr) if it exits non-zero.
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_ENABLE_X64"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )
    if out.returncode != 0:
        raise AssertionError(f"child process failed (rc={out.returncode}):\n{out.stderr[-6000:]}")
    return out.stdout
