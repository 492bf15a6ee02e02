"""Type aliases of rgjax's public signatures.

* :data:`ArrayLike` — anything ``jnp.asarray`` accepts: a JAX or numpy array, a Python or numpy
  scalar, a nested list. Training-set sizes ``eta``, ridges ``sigma2``, thresholds, Gram matrices.
* :data:`Scalar` — a single number, as a Python/numpy scalar or a 0-d array (it may be a tracer).
* :data:`KeyLike` — a PRNG seed: an ``int`` or a ``jax.random.key``/``PRNGKey`` array.
* :data:`Array` — what rgjax returns: a ``jax.Array``.
* :data:`Device` — one ``jax.Device`` (an accelerator or a CPU).
* :data:`PathLike` — a file or folder: a ``str`` or an ``os.PathLike``.
"""

from __future__ import annotations

import os
from typing import TypeAlias

import jax
import numpy as np
from jax.typing import ArrayLike

__all__ = ["Array", "ArrayLike", "Device", "KeyLike", "PathLike", "Scalar"]

Array: TypeAlias = jax.Array
Scalar: TypeAlias = float | int | np.number | jax.Array
KeyLike: TypeAlias = int | np.integer | jax.Array
PathLike: TypeAlias = str | os.PathLike[str]
# jax exports Device as a variable bound to the class, which type checkers reject in annotations.
Device: TypeAlias = jax.Device  # pyright: ignore[reportInvalidTypeForm]
