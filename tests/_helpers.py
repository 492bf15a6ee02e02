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
