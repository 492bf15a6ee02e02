"""Finished stages of a job kept in its results folder, so a rerun redoes nothing already done.

A job (``rgjax curve``, ``rgjax gaussianity``) runs expensive stages one after the other: the
Gram matrix, the spectrum, the theories. :class:`Stages` keeps each finished stage's value in
``DIR/stages/NAME.npz`` (the arrays) with ``DIR/stages/NAME.json`` beside it (the fingerprint of
everything that defines the value, rgjax's version included, the structure of the value, and a
SHA-256 checksum of both).
A rerun with the same fingerprint loads the value instead of computing it; a stage whose
fingerprint differs (other options) is recomputed and replaced; one whose checksum fails (a file
edited or cut short) is recomputed with a warning. Both files are written atomically, the JSON
last: a run killed while writing leaves the previous state or none, never a half-written one.

Values are nested dicts, lists and tuples of numbers, strings and arrays, and rgjax's pytree
dataclasses (a :class:`~rgjax.spectrum.Spectrum` with its solver report and tail measure).
Nothing is unpickled: classes are looked up by name in rgjax's own modules only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np

from rgjax._validate import warn
from rgjax._version import __version__
from rgjax.jobs._io import jsonable
from rgjax.store import writing

__all__ = ["STAGES_FOLDER", "Stages", "array_digest"]

#: The sub-folder of a results folder that holds the finished stages.
STAGES_FOLDER = "stages"
#: Values larger than this are not kept (a 16k-point Gram matrix is 2 GiB).
MAX_BYTES = 2**30

T = TypeVar("T")
Log = Callable[[str], Any]


def array_digest(*arrays: Any) -> str:
    """SHA-256 of arrays' shapes, dtypes and bytes (a dataset's fingerprint)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Stages:
    """The finished stages of one results folder.

    Args:
      folder: the job's results folder (``stages/`` is created inside when a stage is kept).
      log: receives one line per stage reused or recomputed.
    """

    def __init__(self, folder: str | os.PathLike[str], *, log: Log = print) -> None:
        self.folder = Path(folder) / STAGES_FOLDER
        self.log = log

    def run(self, name: str, fingerprint: Mapping[str, Any], compute: Callable[[], T]) -> T:
        """The stage's kept value when its fingerprint matches, else ``compute()`` (then kept)."""
        value = self.load(name, fingerprint)
        if value is not None:
            self.log(f"{name}: reused from {STAGES_FOLDER}/{name}.npz")
            return value  # type: ignore[no-any-return]
        value = compute()
        self.save(name, fingerprint, value)
        return value

    def load(self, name: str, fingerprint: Mapping[str, Any]) -> Any | None:
        """The value kept under ``name`` with this fingerprint, or None (none, other options,
        or damaged: then with a warning)."""
        return self._load(name, _fingerprint(fingerprint))

    def save(self, name: str, fingerprint: Mapping[str, Any], value: Any) -> None:
        """Keep ``value`` under ``name`` (a partial result too, e.g. a checkpoint); a failed
        write is a warning: the value is right, only its copy on disk is missing."""
        try:
            self._save(name, _fingerprint(fingerprint), value)
        except OSError as err:
            warn(f"{err}; the {name} stage is not kept, a rerun computes it again.")

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.npz", self.folder / f"{name}.json"

    def _load(self, name: str, fingerprint: Any) -> Any | None:
        npz, meta = self._paths(name)
        if not meta.exists():
            return None
        try:
            info = json.loads(meta.read_text())
            if info.get("fingerprint") != fingerprint:
                self.log(f"{name}: the kept stage is of other options (or another rgjax "
                         "version); recomputing it")
                return None
            blob = npz.read_bytes()
            if info.get("sha256") != _checksum(blob, info["tree"]):
                raise ValueError("checksum mismatch")
            with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
                return _decode(info["tree"], arrays)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            warn(f"the kept stage {str(npz)!r} is damaged ({err}); recomputing it.")
            return None

    def _save(self, name: str, fingerprint: Any, value: Any) -> None:
        arrays: dict[str, np.ndarray] = {}
        tree = _encode(value, arrays)
        size = sum(a.nbytes for a in arrays.values())
        if size > MAX_BYTES:
            self.log(f"{name}: not kept ({size / 2**30:.1f} GiB > {MAX_BYTES / 2**30:.0f} GiB); "
                     "a rerun computes it again")
            return
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        blob = buffer.getvalue()
        npz, meta = self._paths(name)
        with writing(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
            meta.unlink(missing_ok=True)  # the JSON is the commit mark: none while npz changes
        _write_atomic(npz, blob)
        info = {"fingerprint": fingerprint, "rgjax": __version__, "tree": tree,
                "sha256": _checksum(blob, tree)}
        _write_atomic(meta, json.dumps(info, indent=1, allow_nan=False).encode())


def _fingerprint(fingerprint: Mapping[str, Any]) -> Any:
    # The version too: a numerical change in rgjax must not be masked by an old stage.
    return jsonable({**fingerprint, "rgjax": __version__})


def _checksum(blob: bytes, tree: Any) -> str:
    h = hashlib.sha256(blob)
    h.update(json.dumps(tree, sort_keys=True).encode())
    return "sha256:" + h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    with writing(path):
        _write_bytes_atomic(path, data)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _encode(x: Any, arrays: dict[str, np.ndarray]) -> Any:
    """JSON structure of ``x``; its arrays go into ``arrays`` under the keys it names."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        cls = type(x)
        if not cls.__module__.startswith("rgjax."):
            raise TypeError(f"cannot keep a {cls.__qualname__} (not an rgjax class)")
        return {"__class__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(x, f.name), arrays)
                           for f in dataclasses.fields(x)}}
    if isinstance(x, Mapping):
        return {"__dict__": [[str(k), _encode(v, arrays)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return {"__tuple__" if isinstance(x, tuple) else "__list__":
                [_encode(v, arrays) for v in x]}
    if isinstance(x, (np.ndarray, jax.Array)):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(x)
        return {"__array__": key}
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return {"__float__": repr(x)}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot keep a value of type {type(x).__qualname__}")


def _decode(tree: Any, arrays: Any) -> Any:
    if isinstance(tree, list):
        raise ValueError("malformed stage structure")
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        return np.asarray(arrays[tree["__array__"]])
    if "__float__" in tree:
        return float(tree["__float__"])
    if "__dict__" in tree:
        return {k: _decode(v, arrays) for k, v in tree["__dict__"]}
    if "__list__" in tree:
        return [_decode(v, arrays) for v in tree["__list__"]]
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays) for v in tree["__tuple__"])
    if "__class__" in tree:
        cls = _rgjax_class(tree["__class__"])
        obj = object.__new__(cls)  # as a pytree unflattens: no validation of stored values
        for name, value in tree["fields"].items():
            object.__setattr__(obj, name, _decode(value, arrays))
        return obj
    raise ValueError("malformed stage structure")


def _rgjax_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if module != "rgjax" and not module.startswith("rgjax."):
        raise ValueError(f"{name!r} is not an rgjax class")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"{name!r} is not an rgjax dataclass")
    return cls
