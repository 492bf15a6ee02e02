"""The resumable results file of :func:`rgjax.empirical.learning_curve` (JSON lines).

Each line is one record: the trials of one training-set size η (all of them, or a run of
consecutive trials starting at ``"trial_start"``), stamped with the *fingerprint* of the
configuration that produced them::

    {"fingerprint": {"format": "rgjax.learning_curve/1", "n_pool": N, "trials": T,
                     "sigma2": σ², "key_impl": "threefry2x32", "key": [..],
                     "K_probes": [rms, p1..p4], "y_probes": [rms, p1..p4]},
     "eta": η, "mse_pool": [T floats], "mse_heldout": [T floats], "n_fallback": int,
     "seconds": float, "finished": unix time}

Records are appended and fsynced one at a time, so whatever is on disk survives a crash; a
truncated last line (a crash mid-write) is dropped on the next load. Each record carries a
``"checksum"`` (SHA-256 of its other fields): a record whose values were changed after it was
written is dropped with a warning, and its trials are computed again. Floats round-trip exactly
through JSON, so resumed trials are bit-identical to recomputed ones.

The fingerprint identifies the pool without hashing its bytes: *probes* ``uᵀ K v`` (and ``u·y``)
for fixed ±1/√N vectors, compared with a relative tolerance of 1e-9, so that a Gram matrix rebuilt
on another device, with different round-off, still matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._typing import Array, ArrayLike
from rgjax._validate import warn

__all__ = [
    "RESULTS_FORMAT",
    "check_options",
    "EtaResults",
    "append_record",
    "fingerprint",
    "writing",
    "fingerprint_diff",
    "load_results",
    "probes",
    "runs",
    "trial_records",
]

#: Value of the ``"format"`` field in the fingerprint of every results-file line.
RESULTS_FORMAT = "rgjax.learning_curve/1"

_PROBE_SEED = 20240506  # fixed: fingerprints must agree between runs and machines
_PROBE_RTOL = 1e-9  # fingerprint tolerance, relative to the array's scale

# Value of a fingerprint field that a file may lack (it was added later).
_FINGERPRINT_DEFAULTS = {"nested": False}

Record = dict[str, Any]  # one JSON object (a record, or a fingerprint)


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------


@jax.jit
def _probe_values(a: Array, u: Array, v: Array) -> Array:
    """[rms(a), u_c · a v_c for each c]; a (N,) or (N, N), u and v (count, N)."""
    vals = jnp.sum(u * (v @ a.T), axis=1) if a.ndim == 2 else u @ a
    return jnp.concatenate([jnp.sqrt(jnp.mean(a * a))[None], vals])


def probes(a: Array, count: int = 4) -> list[float]:
    """Scale-free summary of an (N,) or (N, N) array: rms and ``uᵀ a v`` for fixed ±1/√N vectors.

    Every entry of ``a`` enters the probes, which tolerate round-off (unlike a hash of the bytes),
    so a Gram matrix rebuilt on another device still matches.
    """
    n = a.shape[0]
    rng = np.random.default_rng(_PROBE_SEED)
    u, v = (rng.choice([-1.0, 1.0], size=(count, n)) / math.sqrt(n) for _ in range(2))
    return [float(x) for x in np.asarray(_probe_values(a, u.astype(a.dtype), v.astype(a.dtype)))]


def fingerprint(
    k: Array, y: Array, sigma2: float, trials: int, key: Array, nested: bool
) -> Record:
    """The configuration a results file belongs to: pool (probes), σ², trials, PRNG key, draws.

    Args:
      k: (N, N) Gram matrix of the pool.
      y: (N,) pool targets.
      sigma2: the ridge σ².
      trials: training sets per η.
      key: typed PRNG key of the draws.
      nested: whether the draws are nested (only then is ``"nested": true`` written, so files of
        independent-draw runs keep their original fingerprint).
    """
    fp = {
        "format": RESULTS_FORMAT,
        "n_pool": int(k.shape[0]),
        "trials": int(trials),
        "sigma2": float(sigma2),
        "key_impl": str(jax.random.key_impl(key)),
        "key": [int(x) for x in np.asarray(jax.random.key_data(key)).ravel()],
        "K_probes": probes(k),
        "y_probes": probes(y),
    }
    if nested:
        fp["nested"] = True
    return fp


def check_options(path: Path, sigma2: float, trials: int, nested: bool) -> None:
    """Raise at once when the results file at ``path`` holds other options' records (σ²,
    trials, draws): the check that :func:`load_results` makes later, after the Gram matrix and
    the spectrum, on what is known before them. A missing or unreadable file passes."""
    try:
        with open(path, "rb") as f:
            first = json.loads(f.readline())
        fp = first["fingerprint"]
        old = {"trials": int(fp["trials"]), "sigma2": float(fp["sigma2"]),
               "nested": bool(fp.get("nested", False))}
    except (OSError, ValueError, KeyError, TypeError):
        return
    new = {"trials": int(trials), "sigma2": float(sigma2), "nested": bool(nested)}
    diff = [f"{k} (file {old[k]!r}, now {new[k]!r})" for k in new if old[k] != new[k]]
    if diff:
        raise ValueError(
            f"`results_path` {str(path)!r} holds results of a different configuration "
            f"({', '.join(diff)}); pass overwrite=True (rgjax curve: --overwrite) to discard it "
            "and start fresh, or choose another results_path (--out)."
        )


def _same_probes(old: object, new: Sequence[float], n_pool: int) -> bool:
    if not (isinstance(old, list) and len(old) == len(new)):
        return False
    # Tolerance relative to the array's scale: the probes are bounded by N·rms.
    scale = max(abs(new[0]), abs(old[0]), 1e-300) * n_pool
    return all(abs(a - b) <= _PROBE_RTOL * scale for a, b in zip(old, new))


def fingerprint_diff(old: Record, new: Record) -> list[str]:
    """Names (with values where short) of the fingerprint fields that differ."""
    diffs = []
    for name in [*new, *(f for f in old if f not in new)]:
        value = new.get(name, _FINGERPRINT_DEFAULTS.get(name))
        other = old.get(name, _FINGERPRINT_DEFAULTS.get(name))
        if name.endswith("_probes"):
            if not _same_probes(other, value, new["n_pool"]):
                diffs.append(name.removesuffix("_probes") + " (values differ)")
        elif other != value:
            diffs.append(f"{name} (file {other!r}, now {value!r})")
    return diffs


# --------------------------------------------------------------------------------------------
# Per-η results
# --------------------------------------------------------------------------------------------


class EtaResults:
    """Per-trial results of one η gathered from records (full or partial); filled in place.

    pool, held: (T,) pool and held-out MSE per trial (NaN where missing); have: (T,) bool, which
    trials are present; n_fallback: trials solved by the eigh fallback. A mutable accumulator,
    not a result: :func:`rgjax.empirical.learning_curve` turns it into a ``LearningCurve``.
    """

    __slots__ = ("pool", "held", "have", "n_fallback")

    def __init__(self, trials: int) -> None:
        self.pool = np.full(trials, np.nan)
        self.held = np.full(trials, np.nan)
        self.have = np.zeros(trials, bool)
        self.n_fallback = 0

    @classmethod
    def empty(cls, trials: int) -> EtaResults:
        """No trial present yet."""
        return cls(trials)

    def add(self, start: int, pool: ArrayLike, held: ArrayLike, n_fallback: int) -> None:
        """Trials ``start..start+len(pool)-1``; trials already present keep their first value."""
        pool, held = np.asarray(pool, dtype=np.float64), np.asarray(held, dtype=np.float64)
        sel = np.arange(start, start + len(pool))
        new = ~self.have[sel]
        if not new.any():
            return
        self.pool[sel[new]] = pool[new]
        self.held[sel[new]] = held[new]
        self.have[sel[new]] = True
        self.n_fallback += int(n_fallback)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load_results(
    path: Path, fingerprint: Record, trials: int, overwrite: bool
) -> dict[int, EtaResults]:
    """Trials already in a results file, keyed by η. Repairs a truncated last line.

    Raises ``ValueError`` on a fingerprint mismatch (unless ``overwrite``, which empties the file)
    or on a corrupt line that is not the last one.
    """
    if not path.exists():
        return {}
    if overwrite:
        path.write_bytes(b"")
        return {}
    done: dict[int, EtaResults] = {}
    kept: list[bytes] = []
    lines = _complete_lines(path)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        eta, start, rec = _parse_record(path, lineno, line, fingerprint, trials)
        if not _checksum_ok(rec):
            warn(f"`results_path` {str(path)!r}: line {lineno} (η = {eta}) fails its checksum "
                 "(its values were changed after it was written): dropped, its trials will be "
                 "computed again.")
            continue
        kept.append(line)
        done.setdefault(eta, EtaResults.empty(trials)).add(
            start, rec["mse_pool"], rec["mse_heldout"], int(rec["n_fallback"])
        )
    if len(kept) < sum(1 for line in lines if line.strip()):
        _rewrite(path, kept)
    return done


def _checksum(record: Record) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _checksum_ok(record: Record) -> bool:
    """True when the record matches its checksum (records written before checksums: True)."""
    return "checksum" not in record or record["checksum"] == _checksum(record)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace the file by ``lines`` atomically (the bad records out)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    os.replace(tmp, path)


def _complete_lines(path: Path) -> list[bytes]:
    """The file's complete lines; a partial last line (a crash mid-write) is cut from the file
    so that appends start on a clean line."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return data[:end].splitlines()


def _parse_record(
    path: Path, lineno: int, line: bytes, fingerprint: Record, trials: int
) -> tuple[int, int, Record]:
    """``(η, first trial, record)`` of one line, checked against ``fingerprint`` and ``trials``."""
    try:
        rec = json.loads(line)
        eta = int(rec["eta"])
        start = int(rec.get("trial_start", 0))
        count = len(rec["mse_pool"])
        ok = len(rec["mse_heldout"]) == count and (
            count == trials if "trial_start" not in rec else 0 < count <= trials - start
        ) and start >= 0
        int(rec["n_fallback"])
        fp = rec["fingerprint"]
        if not isinstance(fp, dict):
            raise TypeError("its fingerprint is not a JSON object")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"`results_path` {str(path)!r}: line {lineno} is not a learning-curve record "
            f"({err}); fix or remove the file, or pass overwrite=True to start fresh."
        ) from None
    diff = fingerprint_diff(fp, fingerprint)
    if diff:
        raise ValueError(
            f"`results_path` {str(path)!r} holds results of a different configuration "
            f"(line {lineno} differs in: {', '.join(diff)}); pass overwrite=True (rgjax curve: "
            "--overwrite) to discard it and start fresh, or choose another results_path (--out)."
        )
    if not ok:
        what = (f"{trials} trials" if "trial_start" not in rec
                else f"trials {start}..{start + count - 1} of 0..{trials - 1}")
        raise ValueError(
            f"`results_path` {str(path)!r}: line {lineno} does not hold {what} "
            "(mse_pool and mse_heldout must list one value per trial)."
        )
    return eta, start, rec


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers in sorted ``ids``, as (first index, stop index) into
    ``ids``."""
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    bounds = np.concatenate([[0], breaks, [len(ids)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def trial_records(
    fingerprint: Record | None,
    eta: int,
    trials: int,
    ids: np.ndarray,
    pool: np.ndarray,
    held: np.ndarray,
    fallback: np.ndarray,
    seconds: float,
) -> list[tuple[int, Record]]:
    """``(first trial, record)`` for each run of consecutive trial ``ids`` of η.

    ``pool``, ``held``, ``fallback`` are aligned with ``ids``; a record of fewer than ``trials``
    trials carries its first trial as ``"trial_start"``. The caller adds ``"finished"`` (the
    unix time) just before writing each record.
    """
    out = []
    for a, b in runs(ids):
        record: Record = {"fingerprint": fingerprint, "eta": eta}
        if b - a < trials:
            record["trial_start"] = int(ids[a])
        record.update({
            "mse_pool": pool[a:b].tolist(),
            "mse_heldout": held[a:b].tolist(),
            "n_fallback": int(np.count_nonzero(fallback[a:b])),
            "seconds": seconds,
        })  # fmt: skip
        out.append((int(ids[a]), record))
    return out


def append_record(path: Path, record: Record) -> None:
    """Append one JSON line and force it to disk: what is on disk survives any later crash."""
    record = {**record, "checksum": _checksum(record)}
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    with writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a failed write (a full disk, a read-only folder) into one error that names the file
    and the fix; what was written before stays valid."""
    try:
        yield
    except OSError as err:
        why = err.strerror or str(err) or type(err).__name__
        raise OSError(err.errno, f"could not write {str(path)!r} ({why}): free disk space or "
                      "make the folder writable, or pass another --out, then rerun; what was "
                      "finished before is kept") from err
